"""Suppression after a rejected match.

When an officer rejects a watch-list match as false, the same person on the same camera
would otherwise open a new red incident a second later (the same look-alike still stands at
the gate). :class:`Suppressions` keeps a quiet time per (site, camera, person) from the
rejection: such sightings are still stored, but open no new incident; each one is counted
on the suppression (``hits``), the first is audited, and the false-match report shows the
count. A sighting of that person on *another* camera, or after the quiet time, alerts as
usual; so does one that continues an incident already open."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.console_tables import Suppression
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_tables import Incident

SYSTEM = Actor("hub-incidents", "system")


class Suppressions:
    """Quiet times after rejections; ``duration`` zero turns them off."""

    def __init__(self, duration: dt.timedelta) -> None:
        self.duration = duration

    def start(self, session: Session, incident: Incident, actor: Actor, now: dt.datetime) -> None:
        """A rejection of ``incident``: quiet its person on its camera until now + duration."""
        if not self.duration or incident.person_id is None or incident.camera_id is None:
            return
        until = now + self.duration
        session.add(
            Suppression(
                site_id=incident.site_id,
                camera_id=incident.camera_id,
                person_id=incident.person_id,
                incident_id=incident.id,
                created_by=actor.name,
                created_at=now,
                until=until,
                hits=0,
            )
        )
        crud.audit(
            session,
            actor,
            "suppress",
            "incident",
            incident.id,
            now,
            None,
            person=incident.person_id,
            camera=incident.camera_id,
            until=until.isoformat(),
        )

    def holds(self, session: Session, sighting: t.Sighting, now: dt.datetime) -> bool:
        """True when a quiet time covers this sighting (it is then counted)."""
        if not self.duration or sighting.person_id is None:
            return False
        row = self.active(session, sighting.site_id, sighting.camera_id, sighting.person_id, now)
        if row is None:
            return False
        row.hits += 1
        if row.hits == 1:
            crud.audit(
                session,
                SYSTEM,
                "suppressed",
                "incident",
                row.incident_id,
                now,
                None,
                person=row.person_id,
                camera=row.camera_id,
                sighting=sighting.id,
            )
        return True

    @staticmethod
    def active(
        session: Session, site: str, camera: str, person: int, now: dt.datetime
    ) -> Suppression | None:
        return session.scalar(
            sa.select(Suppression)
            .where(
                Suppression.site_id == site,
                Suppression.camera_id == camera,
                Suppression.person_id == person,
                Suppression.until > now,
            )
            .order_by(Suppression.until.desc())
            .limit(1)
        )


def suppression_of(session: Session, incident_id: str, now: dt.datetime) -> dict[str, Any] | None:
    """The quiet time a rejected incident left, for its page (None: none)."""
    row = session.scalar(
        sa.select(Suppression)
        .where(Suppression.incident_id == incident_id)
        .order_by(Suppression.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    return {
        "camera": row.camera_id,
        "person_id": row.person_id,
        "until": row.until,
        "active": row.until > now,
        "hits": row.hits,
        "by": row.created_by,
    }


def suppressed_counts(session: Session, sites: frozenset[str] | None) -> dict[str, int]:
    """Per camera: sightings a suppression kept quiet (the false-match report's column)."""
    query = sa.select(Suppression.camera_id, sa.func.sum(Suppression.hits)).group_by(
        Suppression.camera_id
    )
    if sites is not None:
        query = query.where(Suppression.site_id.in_(sites))
    return {camera: int(hits or 0) for camera, hits in session.execute(query)}
