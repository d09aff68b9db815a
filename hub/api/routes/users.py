"""Users (admin only), and the caller's own record."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import Caller, CurrentUser, HubDep, SessionDep, require
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import UserCreate, UserPublic

router = APIRouter(prefix="/users", tags=["users"])
Admin = Annotated[Caller, Depends(require(Role.ADMIN))]
Reader = Annotated[Caller, Depends(require(Role.ADMIN, Role.AUDITOR))]


def public(session: Session, user: t.User) -> UserPublic:
    refs = session.execute(
        sa.select(t.UserScope.kind, t.UserScope.ref).where(t.UserScope.user_id == user.id)
    ).all()
    by_kind = {kind: [r for k, r in refs if k == kind] for kind in ("station", "manager", "site")}
    return UserPublic(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=Role(user.role),
        active=user.active,
        stations=by_kind["station"],
        managers=by_kind["manager"],
        sites=by_kind["site"],
    )


@router.get("/me")
def read_me(session: SessionDep, user: CurrentUser) -> UserPublic:
    return public(session, user)


@router.get("")
def list_users(session: SessionDep, caller: Reader) -> list[UserPublic]:
    return [public(session, u) for u in session.scalars(sa.select(t.User).order_by(t.User.id))]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user(session: SessionDep, hub: HubDep, caller: Admin, body: UserCreate) -> UserPublic:
    now = hub.clock()
    try:
        user = crud.create_user(session, body, now)
        crud.audit(session, caller.actor, "create", "user", user.id, now, role=body.role.value)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "user name already taken") from None
    return public(session, user)
