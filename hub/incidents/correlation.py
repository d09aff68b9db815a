"""Correlation: events and sightings into incidents, one per key across workers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import Colour, Ring, Tier
from ringwatch.contract.messages import AlertLevel, Event
from ringwatch.contract.topics import EventKind
from ringwatch.hub import tables as t
from ringwatch.hub.incident_tables import IncidentPoint
from ringwatch.hub.incidents.base import _lock_key
from ringwatch.hub.incidents.colour import LEVEL_COLOUR, higher_level, policy_colour, watchlist_step
from ringwatch.hub.incidents.persons import PersonLinks, _evidence
from ringwatch.hub.incidents.technical import TechnicalIncidents, tamper_finding
from ringwatch.hub.routing import Reason
from ringwatch.hub.stages import (
    IncidentKind,
)
from ringwatch.hub.workers import lock_keys


def correlation_locks(sightings: Iterable[t.Sighting], events: Iterable[Event]) -> list[str]:
    """The correlation keys a batch may create or continue incidents under."""
    keys = [
        _lock_key(IncidentKind.WATCHLIST.value, s.site_id, f"person:{s.person_id}")
        for s in sightings
    ]
    for event in events:
        if event.kind in (EventKind.INTRUSION, EventKind.LOITERING, EventKind.SHED):
            keys.append(_lock_key(event.kind.value, event.site, f"camera:{event.camera}"))
    return keys


class Correlation(PersonLinks, TechnicalIncidents):
    """New events and sightings into incidents (inside the ingest transaction)."""

    def on_stored(self, session: Session, events: Sequence[Event], now: dt.datetime) -> None:
        """New events (and the sightings ingest made of them) are in ``session``: update the
        incidents. Runs inside the ingest transaction."""
        if not events:
            return
        session.flush()
        ids = [e.event_id for e in events]
        # A face is one person: only its best match (rank 1) is named. Lower ranks, kept when
        # ``matching.top_k`` > 1, are candidates for review and raise nothing.
        sightings = list(
            session.scalars(
                sa.select(t.Sighting)
                .where(t.Sighting.event_id.in_(ids), t.Sighting.rank == 1)
                .order_by(t.Sighting.captured_at, t.Sighting.id)
            )
        )
        # One lock per correlation key (sorted, so workers never deadlock on them) before
        # looking for the incident to continue: one incident per key across workers.
        lock_keys(session, correlation_locks(sightings, events))
        for sighting in sightings:
            self.on_sighting(session, sighting, now)
        for event in sorted(events, key=lambda e: e.captured_at):
            self.on_event(session, event, now)

    def on_sighting(self, session: Session, sighting: t.Sighting, now: dt.datetime) -> None:
        person = session.get(t.Person, sighting.person_id)
        if person is None or person.tier == Tier.GREEN:
            return
        ring = Ring(sighting.ring) if sighting.ring else Ring.OUTER  # no ring known: outermost
        key = f"person:{person.id}"
        incident = self._open(session, IncidentKind.WATCHLIST, sighting.site_id, key, sighting)
        if incident is None and self.suppressions.holds(session, sighting, now):
            return  # rejected a moment ago on this camera: kept quiet (hub/suppression.py)
        fresh = incident is None
        if incident is None:
            incident = self._create(
                session,
                IncidentKind.WATCHLIST,
                sighting.site_id,
                key,
                sighting.captured_at,
                now,
                title=f"Watch-list: {person.display_name}"[:200],
                camera=sighting.camera_id,
                device=sighting.device_id,
            )
            incident.person_id = person.id
            incident.detail = _evidence(person, sighting)
        step = watchlist_step(
            self.policy,
            Tier(person.tier),
            ring,
            None if incident.colour is None else Colour(incident.colour),
            None if incident.ring is None else Ring(incident.ring),
        )
        incident.colour, incident.ring = step.colour.value, step.ring.value
        incident.escalating = incident.escalating or step.deeper
        self._seen(incident, sighting.captured_at, now)
        point = IncidentPoint(
            incident_id=incident.id,
            role="sighting",
            event_id=sighting.event_id,
            sighting_id=sighting.id,
            person_id=person.id,
            camera_id=sighting.camera_id,
            ring=ring.value,
            colour=policy_colour(self.policy, ring, person.tier),
            similarity=sighting.similarity,
            at=sighting.captured_at,
        )
        session.add(point)
        self._count_sighting(incident)
        if fresh:
            self.router.route(session, incident, Reason.NEW, now, person_station=person.station_id)
        elif step.deeper or step.raised:
            self.router.route(
                session, incident, Reason.ESCALATION, now, person_station=person.station_id
            )
        else:
            self.router.route(session, incident, Reason.UPDATE, now, sse_only=True)
        if incident.confirmed:  # a human confirmed this match: its alerts learn of him
            self._link_to_alerts(session, sighting, now)

    def on_event(self, session: Session, event: Event, now: dt.datetime) -> None:
        if event.kind in (EventKind.INTRUSION, EventKind.LOITERING):
            self._alert(session, event, now)
        elif event.kind is EventKind.SHED and event.phase.value != "end":
            self._shed(session, event, now)
        elif event.kind is EventKind.TAMPER:  # issue 18: a technical incident, ended by "end"
            self._technical(session, tamper_finding(event), now)

    def _alert(self, session: Session, event: Event, now: dt.datetime) -> None:
        kind = IncidentKind(event.kind.value)
        key = f"camera:{event.camera}"
        ring = event.ring or self._camera_ring(session, event.site, event.camera)
        incident = self._open(session, kind, event.site, key, event)
        fresh = incident is None
        if incident is None:
            what = "Intrusion" if kind is IncidentKind.INTRUSION else "Loitering"
            incident = self._create(
                session,
                kind,
                event.site,
                key,
                event.captured_at,
                now,
                title=f"{what} at {event.camera}" + (f" ({ring.value} ring)" if ring else ""),
                camera=event.camera,
                device=event.device,
            )
            incident.detail = {"zone": event.zone_id, "track": event.track_id, "persons": []}
        raised = False
        if ring is not None:
            colour = self.policy.base_by_ring[ring]
            raised = incident.colour is not None and colour > Colour(incident.colour)
            if incident.colour is None or raised:
                incident.colour = colour.value
            incident.ring = max(ring, Ring(incident.ring)).value if incident.ring else ring.value
        self._seen(incident, event.captured_at, now)
        session.add(self._event_point(incident, event, ring))
        self._link_persons(session, incident, event)
        reason = Reason.NEW if fresh else Reason.ESCALATION if raised else Reason.UPDATE
        self.router.route(session, incident, reason, now, sse_only=reason is Reason.UPDATE)

    def _shed(self, session: Session, event: Event, now: dt.datetime) -> None:
        assert event.level is not None
        key = f"camera:{event.camera}"
        incident = self._open(session, IncidentKind.SHED, event.site, key, event)
        fresh = incident is None
        if incident is None:
            camera = session.get(t.Camera, (event.site, event.camera))
            shed = camera.shed if camera is not None and camera.shed else event.camera
            incident = self._create(
                session,
                IncidentKind.SHED,
                event.site,
                key,
                event.captured_at,
                now,
                title=f"Shed {shed}: fire/sensor alert",
                camera=event.camera,
                device=event.device,
            )
            incident.detail = {"shed": shed, "levels": []}
        old = None if incident.level is None else AlertLevel(incident.level)
        level = higher_level(old, event.level)
        incident.level, incident.colour = level.value, LEVEL_COLOUR[level].value
        incident.detail = {
            **incident.detail,
            "levels": [*incident.detail.get("levels", []), event.level.value][-50:],
            "scores": dict(event.scores),
            "sensor_detail": event.detail,
            "snapshot_event": event.event_id if event.snapshot_jpeg else None,
        }
        self._seen(incident, event.captured_at, now)
        session.add(self._event_point(incident, event, None))
        raised = old is not None and level is not old
        reason = Reason.NEW if fresh else Reason.ESCALATION if raised else Reason.UPDATE
        self.router.route(session, incident, reason, now, sse_only=reason is Reason.UPDATE)
