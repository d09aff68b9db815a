"""Liveness of the hub. Without login: ``{"status": "ok" | "degraded"}`` only (a scanner
learns nothing about the broker or the counters); with the token of an admin, technician
or auditor: database, migration, broker and ingest counters too."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.exc import SQLAlchemyError

from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import TOKEN_URL, HubDep, SessionDep
from ringwatch.hub.app import Hub
from ringwatch.hub.db import current_revision
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import HealthPublic, HealthStatus, IngestStatus, WorkerPublic
from ringwatch.hub.workers import workers_view

router = APIRouter(tags=["health"])
optional_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
DETAIL_ROLES = frozenset({Role.ADMIN, Role.TECHNICIAN, Role.AUDITOR})


@router.get("/health")
def health(
    session: SessionDep,
    hub: HubDep,
    token: Annotated[str | None, Depends(optional_token)] = None,
) -> HealthPublic | HealthStatus:
    workers: list[WorkerPublic] = []
    try:
        session.execute(sa.text("select 1"))
        database = "ok"
        revision = current_revision(hub.engine)
        workers = [WorkerPublic(**w) for w in workers_view(session, hub.clock())]
    except SQLAlchemyError as exc:
        database, revision = f"error: {type(exc).__name__}", None
    ingest = _ingest(hub)
    ok = database == "ok" and (hub.worker is None or ingest.connected)
    status = "ok" if ok else "degraded"
    if not _may_see_details(session, hub, token):
        return HealthStatus(status=status)
    return HealthPublic(
        status=status,
        database=database,
        migration=revision,
        broker_url=hub.broker_url,
        ingest=ingest,
        workers=workers,
    )


def _ingest(hub: Hub) -> IngestStatus:
    return IngestStatus(
        running=hub.worker is not None and hub.worker.running,
        connected=hub.ingest_connected,
        broker_refused=next(
            (k.refused for k in (hub.link, hub.zone_link) if k and k.refused), None
        ),
        quarantines=hub.flood.quarantined if hub.flood is not None else 0,
        flood_guard=_guard_state(hub),
        **hub.stats.snapshot(),
    )


def _guard_state(hub: Hub) -> str | None:
    guard = hub.flood.guard if hub.flood is not None else None
    if guard is None:
        return None
    client = guard.client
    if client.connected:
        return "connected"
    return client.fatal_error or "not connected"


def _may_see_details(session: SessionDep, hub: Hub, token: str | None) -> bool:
    username = None if token is None else hub.tokens.subject(token, hub.clock())
    if username is None:
        return False
    try:
        user = session.scalar(sa.select(t.User).where(t.User.username == username))
    except SQLAlchemyError:
        return False
    return user is not None and user.active and Role(user.role) in DETAIL_ROLES
