"""Re-raising a shed that is still burning after its incident was closed.

The edge fuses fire on camera with the bays' readings and sends a shed event only when its
verdict changes (start, a level change, end). So once an officer or manager closes the
incident while the fire clip still loops, or a bay still reads 95 °C, the hub hears nothing
more: the edge's verdict has not changed. :class:`ShedWatch` (run from the timer tick)
looks at each shed camera whose newest incident is closed: if the edge's latest shed event
there is not an ``end``, the condition persists, and ``grace`` after the close a new
incident is opened from that event (routed as new, timers from now), audited as ``reraise``
on the closed one."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.messages import Event
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.stages import IncidentKind

WATCH = Actor("hub-shed-watch", "system")
LOOKBACK = dt.timedelta(hours=6)


class EventSink(Protocol):
    def on_event(self, session: Session, event: Event, now: dt.datetime) -> None: ...


class ShedWatch:
    """Re-raises persisting shed conditions ``grace`` after their incident closed."""

    def __init__(self, grace: dt.timedelta) -> None:
        self.grace = grace

    def check(self, session: Session, sink: EventSink, now: dt.datetime) -> list[str]:
        """Open new incidents where needed; returns the ids of the closed ones re-raised."""
        if not self.grace:
            return []
        raised = []
        for incident in self._newest_closed(session, now):
            last = self._last_event(session, incident)
            if last is None or last.phase == "end":
                continue
            again = Event.model_validate(
                {**last.payload, "captured_at": now.isoformat(), "phase": "update"}
            )
            crud.audit(session, WATCH, "reraise", "incident", incident.id, now, None, event=last.id)
            sink.on_event(session, again, now)
            raised.append(incident.id)
        return raised

    def _newest_closed(self, session: Session, now: dt.datetime) -> list[Incident]:
        newest = (
            sa.select(Incident.site_id, Incident.camera_id, sa.func.max(Incident.created_at))
            .where(Incident.kind == IncidentKind.SHED.value, Incident.created_at >= now - LOOKBACK)
            .group_by(Incident.site_id, Incident.camera_id)
        )
        found = []
        for site, camera, created in session.execute(newest):
            row = session.scalar(
                sa.select(Incident).where(
                    Incident.kind == IncidentKind.SHED.value,
                    Incident.site_id == site,
                    Incident.camera_id == camera,
                    Incident.created_at == created,
                )
            )
            closed = row is not None and row.status == "closed" and row.closed_at is not None
            if closed and row is not None and row.closed_at <= now - self.grace:  # type: ignore[operator]
                found.append(row)
        return found

    @staticmethod
    def _last_event(session: Session, incident: Incident) -> t.Event | None:
        return session.scalar(
            sa.select(t.Event)
            .where(
                t.Event.kind == "shed",
                t.Event.site_id == incident.site_id,
                t.Event.camera_id == incident.camera_id,
            )
            .order_by(t.Event.captured_at.desc(), t.Event.received_at.desc())
            .limit(1)
        )
