"""Liveness of the hub: database, migration, broker and ingest counters (no login needed)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from ringwatch.hub.api.deps import HubDep, SessionDep
from ringwatch.hub.db import current_revision
from ringwatch.hub.schemas import HealthPublic, IngestStatus, WorkerPublic
from ringwatch.hub.workers import workers_view

router = APIRouter(tags=["health"])


@router.get("/health")
def health(session: SessionDep, hub: HubDep) -> HealthPublic:
    workers: list[WorkerPublic] = []
    try:
        session.execute(sa.text("select 1"))
        database = "ok"
        revision = current_revision(hub.engine)
        workers = [WorkerPublic(**w) for w in workers_view(session, hub.clock())]
    except SQLAlchemyError as exc:
        database, revision = f"error: {type(exc).__name__}", None
    ingest = IngestStatus(
        running=hub.worker is not None and hub.worker.running,
        connected=hub.ingest_connected,
        broker_refused=next(
            (k.refused for k in (hub.link, hub.zone_link) if k and k.refused), None
        ),
        **hub.stats.snapshot(),
    )
    ok = database == "ok" and (hub.worker is None or ingest.connected)
    return HealthPublic(
        status="ok" if ok else "degraded",
        database=database,
        migration=revision,
        broker_url=hub.broker_url,
        ingest=ingest,
        workers=workers,
    )
