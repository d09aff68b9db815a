"""Person links: identified persons attached to alerts and watch-list incidents, with the
evidence an officer confirms or rejects."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.messages import Event
from ringwatch.hub import tables as t
from ringwatch.hub.incident_tables import Incident, IncidentPoint
from ringwatch.hub.incidents.base import IncidentBase, Status
from ringwatch.hub.routing import Reason
from ringwatch.hub.stages import (
    IncidentKind,
)


def _evidence(person: t.Person, sighting: t.Sighting) -> dict[str, Any]:
    """What an officer needs to confirm or reject: both faces, similarity and the entry."""
    return {
        "person": {
            "id": person.id,
            "name": person.display_name,
            "tier": person.tier,
            "reason": person.reason,
            "case_reference": person.case_reference,
            "station": person.station_id,
        },
        "similarity": round(sighting.similarity, 4),
        "threshold": round(sighting.threshold, 4),
        "sighting_id": sighting.id,
        "camera": sighting.camera_id,
        "live_crop": f"/api/v1/sightings/{sighting.id}/crop" if sighting.crop_jpeg else None,
        "enrolled_photo": (
            f"/api/v1/persons/{person.id}/photos/{sighting.template_id}/image"
            if sighting.template_id is not None
            else None
        ),
        "template_id": sighting.template_id,
        "persons": [],
    }


class PersonLinks(IncidentBase):
    """Links sightings of identified persons to incidents, and takes them off again."""

    def _link_persons(self, session: Session, incident: Incident, event: Event) -> None:
        """Persons seen on the event's camera around its time whose match a human confirmed
        (an unconfirmed or rejected match is never attached to an alert)."""
        rows = session.scalars(
            sa.select(t.Sighting)
            .join(IncidentPoint, IncidentPoint.sighting_id == t.Sighting.id)
            .join(Incident, Incident.id == IncidentPoint.incident_id)
            .where(
                IncidentPoint.role == "sighting",
                Incident.kind == IncidentKind.WATCHLIST.value,
                Incident.confirmed.is_(True),
                t.Sighting.site_id == event.site,
                t.Sighting.camera_id == event.camera,
                t.Sighting.captured_at.between(
                    event.captured_at - self.link_window, event.captured_at + self.link_window
                ),
            )
            .order_by(t.Sighting.captured_at, t.Sighting.id)
        )
        for sighting in rows:
            self._add_person(session, incident, sighting)

    def _link_to_alerts(self, session: Session, sighting: t.Sighting, now: dt.datetime) -> None:
        """A confirmed match's sighting joins the intrusion/loitering alerts on its camera
        around its time (an update to their recipients)."""
        kinds = [IncidentKind.INTRUSION.value, IncidentKind.LOITERING.value]
        alerts = session.scalars(
            sa.select(Incident).where(
                Incident.kind.in_(kinds),
                Incident.site_id == sighting.site_id,
                Incident.camera_id == sighting.camera_id,
                Incident.status.in_(Status.ACTIVE),
                Incident.first_seen <= sighting.captured_at + self.link_window,
                Incident.last_seen >= sighting.captured_at - self.link_window,
            )
        )
        for incident in alerts:
            if self._add_person(session, incident, sighting):
                self.router.route(session, incident, Reason.UPDATE, now)

    @staticmethod
    def _sightings_of(session: Session, incident: Incident) -> list[t.Sighting]:
        ids = sa.select(IncidentPoint.sighting_id).where(
            IncidentPoint.incident_id == incident.id, IncidentPoint.role == "sighting"
        )
        return list(
            session.scalars(
                sa.select(t.Sighting)
                .where(t.Sighting.id.in_(ids))
                .order_by(t.Sighting.captured_at, t.Sighting.id)
            )
        )

    @staticmethod
    def _unlink(session: Session, sighting_ids: list[int]) -> None:
        """Take a rejected match's sightings off any alert they were attached to (silently:
        nothing is routed about a person who was not there)."""
        if not sighting_ids:
            return
        points = list(
            session.scalars(
                sa.select(IncidentPoint).where(
                    IncidentPoint.role == "person", IncidentPoint.sighting_id.in_(sighting_ids)
                )
            )
        )
        affected = {p.incident_id for p in points}
        for point in points:
            session.delete(point)
        session.flush()
        for alert_id in affected:
            alert = session.get(Incident, alert_id)
            if alert is None:
                continue
            left = session.scalars(
                sa.select(IncidentPoint.person_id)
                .where(IncidentPoint.incident_id == alert_id, IncidentPoint.role == "person")
                .order_by(IncidentPoint.id)
            )
            alert.detail = {**alert.detail, "persons": list(dict.fromkeys(left))}

    @staticmethod
    def _add_person(session: Session, incident: Incident, sighting: t.Sighting) -> bool:
        persons = list(incident.detail.get("persons", []))
        if sighting.person_id in persons:
            return False
        incident.detail = {**incident.detail, "persons": [*persons, sighting.person_id]}
        session.add(
            IncidentPoint(
                incident_id=incident.id,
                role="person",
                event_id=sighting.event_id,
                sighting_id=sighting.id,
                person_id=sighting.person_id,
                camera_id=sighting.camera_id,
                ring=sighting.ring,
                similarity=sighting.similarity,
                at=sighting.captured_at,
            )
        )
        return True
