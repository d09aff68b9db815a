"""Passwords (argon2), API tokens (JWT, HS256) and login throttling."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError

from ringwatch.hub.tables import LoginThrottleEntry as Entry

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


class SharedLoginThrottle:
    """:class:`LoginThrottle`'s rules kept in the database (table ``login_throttle``), so
    every hub worker on it sees the same failures and locks: 5 failures of one user name
    within ``window`` lock it for ``lockout``, 20 from one address lock that address.
    The window is fixed (it starts at a key's first failure after the last one expired),
    not sliding. Rows whose window and lock are over are deleted as failures come in."""

    def __init__(
        self,
        sessions: Any,
        max_user_failures: int = 5,
        max_client_failures: int = 20,
        window: dt.timedelta = dt.timedelta(minutes=15),
        lockout: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.sessions = sessions
        self.max_user_failures = max_user_failures
        self.max_client_failures = max_client_failures
        self.window = window
        self.lockout = lockout

    def retry_after(self, username: str, client: str, now: dt.datetime) -> float | None:
        """Seconds until ``username`` from ``client`` may try again, or None (go ahead)."""
        keys = LoginThrottle._keys(username, client)
        with self.sessions.begin() as session:
            ends = session.scalars(
                sa.select(Entry.locked_until).where(
                    Entry.key.in_(keys), Entry.locked_until.is_not(None)
                )
            ).all()
        until = max(ends, default=None)
        if until is None or until <= now:
            return None
        return float((until - now).total_seconds())

    def failed(self, username: str, client: str, now: dt.datetime) -> None:
        limits = (self.max_user_failures, self.max_client_failures)
        with self.sessions.begin() as session:
            session.execute(
                sa.delete(Entry).where(
                    Entry.window_start <= now - self.window,
                    sa.or_(Entry.locked_until.is_(None), Entry.locked_until <= now),
                    Entry.key.not_in(LoginThrottle._keys(username, client)),
                )
            )
            for key, limit in zip(LoginThrottle._keys(username, client), limits, strict=True):
                entry = self._entry(session, key, now)
                if entry.window_start <= now - self.window:
                    entry.failures, entry.window_start = 0, now
                entry.failures += 1
                if entry.failures >= limit:
                    entry.locked_until = now + self.lockout
                    entry.failures, entry.window_start = 0, now

    def succeeded(self, username: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                sa.update(Entry).where(Entry.key == f"user:{username}").values(failures=0)
            )

    @staticmethod
    def _entry(session: Any, key: str, now: dt.datetime) -> Any:
        """The row of ``key``, locked for this transaction (PostgreSQL: ``FOR UPDATE``, so
        two workers counting the same failure wait for each other), made if missing."""
        entry = session.get(Entry, key, with_for_update=True)
        if entry is None:
            try:
                with session.begin_nested():
                    session.add(Entry(key=key, failures=0, window_start=now, locked_until=None))
            except IntegrityError:  # another worker made it first
                pass
            entry = session.get(Entry, key, with_for_update=True, populate_existing=True)
        return entry
