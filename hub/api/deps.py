"""Request dependencies: the hub, a database session, the current user and their scope."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

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
        yield session


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
