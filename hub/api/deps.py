"""Request dependencies: the hub, a database session, the current user and their scope."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Header, HTTPException, Path, Query, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.engine import Result
from sqlalchemy.orm import ORMExecuteState, Session

from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub
from ringwatch.hub.crud import Actor
from ringwatch.hub.roles import Role, Scope, scope_of

TOKEN_URL = "/api/v1/login/access-token"
oauth2 = OAuth2PasswordBearer(tokenUrl=TOKEN_URL)


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]


def get_session(hub: HubDep) -> Iterator[Session]:
    with hub.sessions() as session:
        if hub.engine.dialect.name == "sqlite":
            sqlite_request_session(session)
        yield session


def sqlite_request_session(session: Session) -> None:
    """Make a request's read-then-write safe next to a busy ingest on SQLite.

    In WAL mode a connection whose read is still open (a SELECT whose cursor was not read
    to the end: pysqlite keeps it, and so a read snapshot) cannot upgrade to writing once
    another connection has committed: SQLite answers "database is locked" at once, the busy
    timeout never applies (GET /incidents/{id} and its audit entry failed so). So every ORM
    read of a request is buffered and its cursor closed at once; the request's first write
    then starts a fresh transaction, which waits for the write lock (the busy timeout).
    No BEGIN IMMEDIATE: a request that writes through a second session (the zone editor
    does) would wait on its own lock."""
    sa.event.listen(session, "do_orm_execute", _buffered)


def _buffered(state: ORMExecuteState) -> Result[Any] | None:
    if not state.is_select:
        return None
    return state.invoke_statement().freeze()()


SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str, Depends(oauth2)]

_UNAUTHORISED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="could not validate credentials",
    headers={"WWW-Authenticate": "Bearer"},
)


def get_current_user(session: SessionDep, hub: HubDep, token: TokenDep) -> t.User:
    username = hub.tokens.subject(token, hub.clock())
    if username is None:
        raise _UNAUTHORISED
    user = session.scalar(sa.select(t.User).where(t.User.username == username))
    if user is None or not user.active:
        raise _UNAUTHORISED
    return user


CurrentUser = Annotated[t.User, Depends(get_current_user)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The current user with what they may see, and how the audit log names them."""

    user: t.User
    role: Role
    scope: Scope

    @property
    def actor(self) -> Actor:
        return Actor(self.user.username, self.role.value)


def get_caller(session: SessionDep, user: CurrentUser) -> Caller:
    return Caller(user, Role(user.role), scope_of(session, user))


CallerDep = Annotated[Caller, Depends(get_caller)]


def require(*roles: Role) -> Callable[[Caller], Caller]:
    """A dependency that lets only ``roles`` through (403 otherwise)."""
    allowed = frozenset(roles)

    def check(caller: CallerDep) -> Caller:
        if caller.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"role {caller.role.value} may not do this"
            )
        return caller

    return check


Reason = Annotated[
    str | None,
    Header(alias="X-Reason", max_length=500, description="Why (kept in the audit log)."),
]


def forbidden(what: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, f"not in your scope: {what}")


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


# Bounds for every integer and text parameter: out of range is a 422, never a database
# overflow (a 500) nor an unbounded read (``limit=-1``).
MAX_ROW_ID = 2**63 - 1  # BIGINT / SQLite INTEGER
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id.")]
RowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="A row id.")]
AfterId = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="Rows after this id.")]
Limit = Annotated[int, Query(ge=1, le=5000, description="At most this many rows (1-5000).")]
Filter = Annotated[str | None, Query(max_length=200, description="Exact match.")]


def last_event_id(header: str | None) -> int | None:
    """An SSE ``Last-Event-ID`` as a row id, or None when absent or not a row id."""
    if header is None or not header.isdigit() or len(header) > 19:
        return None
    value = int(header)
    return value if value <= MAX_ROW_ID else None
