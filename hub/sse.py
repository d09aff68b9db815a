"""The dashboards' live stream: server-sent events of every routed alert.

Each alert the router writes has an ``sse`` delivery row; the stream polls those rows after
the last id it sent, so every hub worker's incidents reach every dashboard (they share the
database), and a browser's ``EventSource`` that reconnects with ``Last-Event-ID`` resumes
exactly where it stopped. Each user sees only the sites in their scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import sqlalchemy as sa

from ringwatch.hub.db import SessionFactory
from ringwatch.hub.incident_tables import Delivery, Incident
from ringwatch.hub.routing import Channel

BATCH = 200


@dataclass(frozen=True, slots=True)
class StreamItem:
    id: int
    event: str
    data: dict[str, Any]


def read_after(
    sessions: SessionFactory,
    after_id: int,
    sites: frozenset[str] | None,
    kinds: frozenset[str] | None = None,
) -> list[StreamItem]:
    """The alerts after ``after_id`` that a user seeing ``sites`` and incident ``kinds``
    (None: all) may see."""
    query = (
        sa.select(Delivery.id, Delivery.reason, Delivery.payload)
        .where(Delivery.channel == Channel.SSE.value, Delivery.id > after_id)
        .order_by(Delivery.id)
        .limit(BATCH)
    )
    if sites is not None or kinds is not None:
        query = query.join(Incident, Incident.id == Delivery.incident_id)
    if sites is not None:
        query = query.where(Incident.site_id.in_(sites))
    if kinds is not None:
        query = query.where(Incident.kind.in_(kinds))
    with sessions() as session:
        return [StreamItem(i, reason, payload) for i, reason, payload in session.execute(query)]


def last_id(sessions: SessionFactory) -> int:
    """The newest alert's id (a new stream without Last-Event-ID starts after it)."""
    with sessions() as session:
        value = session.scalar(
            sa.select(sa.func.max(Delivery.id)).where(Delivery.channel == Channel.SSE.value)
        )
        return int(value or 0)


async def alert_stream(
    sessions: SessionFactory,
    after_id: int,
    sites: frozenset[str] | None,
    kinds: frozenset[str] | None = None,
    poll_s: float = 0.5,
    stopped: Callable[[], bool] = lambda: False,
) -> AsyncIterator[dict[str, Any]]:
    """sse-starlette events (``id``, ``event``, ``data``) for each new alert, forever."""
    import json

    cursor = after_id
    while not stopped():
        items = await anyio.to_thread.run_sync(read_after, sessions, cursor, sites, kinds)
        for item in items:
            cursor = item.id
            yield {"id": str(item.id), "event": "incident", "data": json.dumps(item.data)}
        if len(items) < BATCH:
            await asyncio.sleep(poll_s)
