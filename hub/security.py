"""Passwords (argon2) and API tokens (JWT, HS256)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"
TOKEN_MINUTES = 8 * 60
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, hashed: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class TokenCodec:
    """Makes and reads access tokens signed with the hub's JWT secret."""

    secret: str
    minutes: int = TOKEN_MINUTES

    @property
    def key(self) -> bytes:
        # HS256 wants a 32-byte key; the configured secret may be shorter (min 8 chars).
        return hashlib.sha256(b"ringwatch hub jwt v1\0" + self.secret.encode()).digest()

    def issue(self, username: str, now: dt.datetime) -> str:
        claims = {"sub": username, "iat": now, "exp": now + dt.timedelta(minutes=self.minutes)}
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def subject(self, token: str, now: dt.datetime) -> str | None:
        """The user name in a token that is valid at ``now`` (the hub's injected clock, the
        same one that issued it), or None (expired, forged or malformed)."""
        try:
            claims = jwt.decode(
                token, self.key, algorithms=[ALGORITHM], options={"verify_exp": False}
            )
        except jwt.PyJWTError:
            return None
        exp, sub = claims.get("exp"), claims.get("sub")
        if not isinstance(exp, int | float) or now.timestamp() >= exp:
            return None
        return sub if isinstance(sub, str) else None
