"""Retention: events (with their snapshots) and sightings' face crops are purged after
``events_days``; closed, rejected and resolved incidents after ``incidents_days``.
Confirmed incidents are kept (``keep_confirmed``) together with the sightings and events
they rest on, as evidence. The audit log is never purged (it is append-only)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_config import RetentionConfig
from ringwatch.hub.incident_tables import Incident, IncidentPoint

RETENTION = Actor("hub-retention", "system")


@dataclass(frozen=True, slots=True)
class Purged:
    events: int
    sightings: int
    incidents: int


def purge(session: Session, config: RetentionConfig, now: dt.datetime) -> Purged:
    """Delete what is past its retention (in the caller's transaction) and audit it."""
    event_cut = now - dt.timedelta(days=config.events_days)
    incident_cut = now - dt.timedelta(days=config.incidents_days)
    kept = _kept_event_ids(session) if config.keep_confirmed else _nothing()
    done = ["closed", "rejected"] if config.keep_confirmed else ["closed", "rejected", "confirmed"]
    incidents = _delete(
        session,
        sa.delete(Incident).where(Incident.status.in_(done), Incident.updated_at < incident_cut),
    )
    sightings = _delete(
        session,
        sa.delete(t.Sighting).where(
            t.Sighting.created_at < event_cut, t.Sighting.event_id.not_in(kept)
        ),
    )
    events = _delete(
        session, sa.delete(t.Event).where(t.Event.received_at < event_cut, t.Event.id.not_in(kept))
    )
    result = Purged(events, sightings, incidents)
    if result != Purged(0, 0, 0):
        crud.audit(
            session,
            RETENTION,
            "purge",
            "retention",
            None,
            now,
            None,
            events=result.events,
            sightings=result.sightings,
            incidents=result.incidents,
        )
    return result


def _kept_event_ids(session: Session) -> sa.Select[str | None]:
    return (
        sa.select(IncidentPoint.event_id)
        .join(Incident, Incident.id == IncidentPoint.incident_id)
        .where(Incident.status == "confirmed", IncidentPoint.event_id.is_not(None))
    )


def _nothing() -> sa.Select[str | None]:
    return sa.select(sa.literal(None, sa.String)).where(sa.false())


def _delete(session: Session, statement: sa.Delete) -> int:
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
