"""OAuth2 password flow: user name + password -> a JWT access token.

Unknown users cost the same argon2 work as a wrong password (no enumeration by timing) and
get the same answer; repeated failures lock the name, or the client address, for a while
(429 with Retry-After: :class:`~ringwatch.hub.security.LoginThrottle`). Refusals are
audited."""

from __future__ import annotations

import math
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import HubDep, SessionDep
from ringwatch.hub.schemas import Token
from ringwatch.hub.security import verify_or_waste

router = APIRouter(tags=["login"])
INCORRECT = "incorrect user name or password"


@router.post("/login/access-token")
def login_access_token(
    session: SessionDep,
    hub: HubDep,
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    now = hub.clock()
    client = request.client.host if request.client is not None else "unknown"
    name = form.username[:100]
    wait = hub.login_throttle.retry_after(name, client, now)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    user = session.scalar(sa.select(t.User).where(t.User.username == name))
    known = user is not None and user.active
    if not verify_or_waste(form.password, user.password_hash if known and user else None):
        hub.login_throttle.failed(name, client, now)
        crud.audit(session, crud.Actor(name, "unknown"), "login_failed", "user", None, now)
        session.commit()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INCORRECT)
    assert user is not None
    hub.login_throttle.succeeded(name)
    crud.audit(session, crud.Actor(user.username, user.role), "login", "user", user.id, now)
    session.commit()
    return Token(access_token=hub.tokens.issue(user.username, now))
