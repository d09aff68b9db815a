"""OAuth2 password flow: user name + password -> a JWT access token."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import HubDep, SessionDep
from ringwatch.hub.schemas import Token
from ringwatch.hub.security import verify_password

router = APIRouter(tags=["login"])


@router.post("/login/access-token")
def login_access_token(
    session: SessionDep, hub: HubDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    user = session.scalar(sa.select(t.User).where(t.User.username == form.username))
    if user is None or not user.active or not verify_password(form.password, user.password_hash):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "incorrect user name or password")
    now = hub.clock()
    crud.audit(session, crud.Actor(user.username, user.role), "login", "user", user.id, now)
    session.commit()
    return Token(access_token=hub.tokens.issue(user.username, now))
