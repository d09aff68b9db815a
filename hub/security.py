"""Passwords (argon2), API tokens (JWT, HS256) and login throttling."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field

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
        same one that issued it), or None (expired, forged or malformed). PyJWT's own time
        checks use the wall clock, so they are off: its ``iat`` check refused a token
        issued by a worker whose clock is a moment ahead (or by the injected clock)."""
        try:
            # The times are checked here against the injected clock, not by PyJWT against
            # the wall clock (PyJWT >= 2.10 refuses an "iat" ahead of it).
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return None
        exp, sub = claims.get("exp"), claims.get("sub")
        if not isinstance(exp, int | float) or now.timestamp() >= exp:
            return None
        return sub if isinstance(sub, str) else None


# A hash of a random password, verified when the user name is unknown, so an unknown user
# takes as long to refuse as a wrong password (no user enumeration by timing).
_DUMMY_HASH: list[str] = []


def verify_or_waste(password: str, hashed: str | None) -> bool:
    """:func:`verify_password`, or the same work against a dummy hash when ``hashed`` is
    None (unknown or inactive user); False then."""
    if hashed is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(_hasher.hash(secrets.token_urlsafe(16)))
        verify_password(password, _DUMMY_HASH[0])
        return False
    return verify_password(password, hashed)


@dataclass
class LoginThrottle:
    """Failed logins per user name and per client address, in a sliding window.

    After ``max_user_failures`` failures for one user name within ``window``, that name is
    locked for ``lockout`` (even the right password is refused: a guesser learns nothing);
    after ``max_client_failures`` from one address, that address is. In memory, per hub
    process (a restart clears it); the times come from the hub's clock."""

    max_user_failures: int = 5
    max_client_failures: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)
    lockout: dt.timedelta = dt.timedelta(minutes=5)
    _failures: dict[str, deque[dt.datetime]] = field(default_factory=dict)
    _locked: dict[str, dt.datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, username: str, client: str, now: dt.datetime) -> float | None:
        """Seconds until ``username`` from ``client`` may try again, or None (go ahead)."""
        with self._lock:
            ends = [self._locked[k] for k in self._keys(username, client) if k in self._locked]
            until = max(ends, default=None)
            if until is None or until <= now:
                return None
            return (until - now).total_seconds()

    def failed(self, username: str, client: str, now: dt.datetime) -> None:
        with self._lock:
            for key, limit in zip(
                self._keys(username, client),
                (self.max_user_failures, self.max_client_failures),
                strict=True,
            ):
                times = self._failures.setdefault(key, deque())
                times.append(now)
                while times and times[0] <= now - self.window:
                    times.popleft()
                if len(times) >= limit:
                    self._locked[key] = now + self.lockout
                    times.clear()
            if len(self._failures) > 100_000:  # bounded memory under a spray of names
                self._failures.clear()

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username}", None)

    @staticmethod
    def _keys(username: str, client: str) -> tuple[str, str]:
        return f"user:{username}", f"client:{client}"
