"""What every part of the incident service shares: statuses, errors, the service's
state, and creating and continuing an incident row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import ColourPolicy, Ring
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event
from ringwatch.errors import RingwatchError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_config import IncidentsConfig
from ringwatch.hub.incident_tables import Incident, IncidentPoint, IncidentStage
from ringwatch.hub.incidents.watch import TechnicalWatch
from ringwatch.hub.routing import Router
from ringwatch.hub.shed_watch import ShedWatch
from ringwatch.hub.stages import (
    IncidentKind,
    deadlines,
)
from ringwatch.hub.suppression import Suppressions

TIMERS = Actor("hub-timers", "system")


INCIDENTS = Actor("hub-incidents", "system")


class IncidentError(RingwatchError):
    """An incident action that cannot be done (the API answers 409)."""


class UnknownStage(IncidentError):
    """The incident has no stage of that name (the API answers 404)."""


class Status:
    OPEN = "open"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CLOSED = "closed"
    ACTIVE = (OPEN, CONFIRMED)


def _lock_key(kind: str, site: str, key: str) -> str:
    return f"incident:{kind}/{site}/{key}"


def _hub_time(session: Session, site: str, device: str | None, at: dt.datetime) -> dt.datetime:
    """``at`` from ``device``'s clock on the hub's clock (its measured skew taken off)."""
    row = None if device is None else session.get(t.Device, (site, device))
    skew = None if row is None else row.clock_skew_s
    return at if skew is None else at - dt.timedelta(seconds=skew)


def _iso(stage: IncidentStage) -> str | None:
    return None if stage.due_at is None else stage.due_at.isoformat()


def active_statuses() -> Iterable[str]:
    return Status.ACTIVE


class IncidentBase:
    """The service's settings and the incident-row primitives the other parts build on."""

    def __init__(self, config: IncidentsConfig, policy: ColourPolicy, router: Router) -> None:
        self.config = config
        self.policy = policy
        self.router = router
        self.window = dt.timedelta(seconds=config.window_s)
        self.link_window = dt.timedelta(seconds=config.link_window_s)
        self.technical = TechnicalWatch(
            dt.timedelta(seconds=config.technical.offline_after_s),
            config.technical.outbox_rising_samples,
        )
        self.suppressions = Suppressions(dt.timedelta(seconds=config.suppress_after_reject_s))
        self.shed_watch = ShedWatch(dt.timedelta(seconds=config.reraise_shed_after_s))

    def _open(
        self, session: Session, kind: IncidentKind, site: str, key: str, seen: Any
    ) -> Incident | None:
        """The active incident this observation continues, if any (``seen`` has
        ``captured_at``)."""
        at: dt.datetime = seen.captured_at
        return session.scalar(
            sa.select(Incident)
            .where(
                Incident.kind == kind.value,
                Incident.site_id == site,
                Incident.key == key,
                Incident.status.in_(Status.ACTIVE),
                Incident.last_seen >= at - self.window,
                Incident.first_seen <= at + self.window,
            )
            .order_by(Incident.last_seen.desc())
            .limit(1)
        )

    def _create(
        self,
        session: Session,
        kind: IncidentKind,
        site_id: str,
        key: str,
        happened_at: dt.datetime,
        now: dt.datetime,
        *,
        title: str,
        camera: str | None = None,
        device: str | None = None,
        late: bool | None = None,
    ) -> Incident:
        site = session.get(t.Site, site_id)
        if late is None:  # judged on the hub's clock: the edge's skew taken off
            late = self.config.stages.is_late(
                kind, _hub_time(session, site_id, device, happened_at), now
            )
        incident = Incident(
            id=new_event_id(),
            kind=kind.value,
            key=key,
            site_id=site_id,
            station_id=None if site is None else site.station_id,
            manager_id=None if site is None else site.manager_id,
            device_id=device,
            camera_id=camera,
            escalating=False,
            status=Status.OPEN,
            confirmed=False,
            late=late,
            title=title[:200],
            first_seen=happened_at,
            last_seen=happened_at,
            created_at=now,
            updated_at=now,
            detail={},
        )
        session.add(incident)
        session.flush()  # no ORM relationships: insert the incident before its rows
        for d in deadlines(self.config.stages, kind, now, late):
            session.add(
                IncidentStage(
                    incident_id=incident.id,
                    position=d.position,
                    name=d.name,
                    within_s=d.within_s,
                    due_at=d.due_at,
                    cancelled=False,
                )
            )
        crud.audit(
            session, INCIDENTS, "create", "incident", incident.id, now, None, kind=kind.value
        )
        return incident

    @staticmethod
    def _seen(incident: Incident, at: dt.datetime, now: dt.datetime) -> None:
        incident.first_seen = min(incident.first_seen, at)
        incident.last_seen = max(incident.last_seen, at)
        incident.updated_at = now

    @staticmethod
    def _count_sighting(incident: Incident) -> None:
        """Count the sighting in ``detail``; the trajectory itself is the incident's points.

        The points (camera, ring, colour, time, similarity) are in ``incident_points``, which
        ``GET /incidents/{id}`` and the case export read. Keeping a copy of up to 500 of them
        in the incident's ``detail`` JSON rewrote ~15-60 kB on every sighting of a busy
        incident, under its key lock (the hottest row of the ingest path; docs/scale.md).
        """
        count = int(incident.detail.get("sightings", 0)) + 1
        rest = {k: v for k, v in incident.detail.items() if k != "trajectory"}
        incident.detail = {**rest, "sightings": count}

    @staticmethod
    def _event_point(incident: Incident, event: Event, ring: Ring | None) -> IncidentPoint:
        return IncidentPoint(
            incident_id=incident.id,
            role="event",
            event_id=event.event_id,
            camera_id=event.camera,
            ring=None if ring is None else ring.value,
            colour=incident.colour,
            level=None if event.level is None else event.level.value,
            at=event.captured_at,
        )

    @staticmethod
    def _camera_ring(session: Session, site: str, camera: str) -> Ring | None:
        row = session.get(t.Camera, (site, camera))
        return Ring(row.default_ring) if row is not None and row.default_ring else None

    @staticmethod
    def _cancel_rest(session: Session, incident: Incident) -> None:
        session.execute(
            sa.update(IncidentStage)
            .where(IncidentStage.incident_id == incident.id, IncidentStage.done_at.is_(None))
            .values(cancelled=True)
        )

    @staticmethod
    def _person_station(session: Session, incident: Incident) -> str | None:
        if incident.person_id is None:
            return None
        person = session.get(t.Person, incident.person_id)
        return None if person is None else person.station_id
