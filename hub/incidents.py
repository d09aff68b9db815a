"""Incidents: correlation, colour, human confirmation, response stages and escalation.

- Watch-list: the sightings of one person at one site, each within ``window_s`` of the
  last, form one incident with a trajectory (camera, ring, time). Each sighting's colour is
  ``ColourPolicy.colour_for(ring, tier)``; the incident keeps the highest, and is marked
  *escalating* when the person goes deeper than before. A new one is routed at once as
  *unconfirmed*, with the evidence (live crop, enrolled photo, similarity, tier, reason, case
  reference). Its first stage is a human's confirm or reject (reason kept); nothing calls it
  confirmed before a person has.
- Intrusion and loitering alerts form one incident per camera and kind within the window,
  linked to identified persons seen on the same camera around that time.
- Shed alerts (warning/alarm, fused on the edge) form one incident per shed camera within
  the window, keeping the highest level, routed to the site's property manager.
- Technical: a device or camera offline longer than N minutes, an outbox that keeps growing.

Timers run from the hub's creation of the incident; an event older than the longest
deadline makes a *late* incident without timers. A missed deadline escalates to the
station's supervisors. :meth:`IncidentService.on_stored` runs inside the ingest transaction
(so an event and its incident commit together); :meth:`IncidentService.tick` runs the timers.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import Colour, ColourPolicy, Ring, Tier
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import AlertLevel, Event
from ringwatch.contract.topics import EventKind
from ringwatch.errors import RingwatchError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_config import IncidentsConfig
from ringwatch.hub.incident_tables import Incident, IncidentPoint, IncidentStage
from ringwatch.hub.routing import Reason, Router
from ringwatch.hub.shed_watch import ShedWatch
from ringwatch.hub.stages import (
    ACKNOWLEDGED,
    IncidentKind,
    StageState,
    deadlines,
    is_missed,
)
from ringwatch.hub.suppression import Suppressions
from ringwatch.hub.workers import lock_keys

TIMERS = Actor("hub-timers", "system")
INCIDENTS = Actor("hub-incidents", "system")
LEVEL_COLOUR = {AlertLevel.WARNING: Colour.ORANGE, AlertLevel.ALARM: Colour.RED}
_LEVEL_RANK = {AlertLevel.WARNING: 0, AlertLevel.ALARM: 1}


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


# --- pure pieces --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColourStep:
    """The outcome of adding one sighting to a watch-list incident."""

    colour: Colour
    ring: Ring
    deeper: bool
    raised: bool


def watchlist_step(
    policy: ColourPolicy, tier: Tier, ring: Ring, colour: Colour | None, deepest: Ring | None
) -> ColourStep:
    """Colour and ring of an incident after a sighting of a ``tier`` person in ``ring``."""
    seen = policy.colour_for(ring, tier)
    new_colour = seen if colour is None else max(colour, seen)
    new_ring = ring if deepest is None else max(deepest, ring)
    return ColourStep(
        colour=new_colour,
        ring=new_ring,
        deeper=deepest is not None and ring > deepest,
        raised=colour is not None and new_colour > colour,
    )


def higher_level(old: AlertLevel | None, new: AlertLevel) -> AlertLevel:
    return new if old is None or _LEVEL_RANK[new] > _LEVEL_RANK[old] else old


@dataclass(frozen=True, slots=True)
class Finding:
    """A technical problem (or its end) seen by :class:`TechnicalWatch`."""

    kind: IncidentKind
    site: str
    device: str
    camera: str | None
    since: dt.datetime
    detail: str
    resolved: bool = False

    @property
    def key(self) -> str:
        return f"{self.device}/{self.camera or '-'}"


@dataclass
class TechnicalWatch:
    """Offline devices and cameras, and growing outboxes, from the devices' heartbeats.

    Pure: feed it each device's last-seen time and last health with ``now``; it remembers
    since when a camera has been offline and the outbox depths of successive heartbeats.
    """

    offline_after: dt.timedelta
    rising_samples: int
    _camera_down: dict[tuple[str, str, str], dt.datetime] = field(default_factory=dict)
    _depths: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)

    def fresh(self) -> TechnicalWatch:
        """The same watch with nothing remembered (another worker kept the watch)."""
        return TechnicalWatch(self.offline_after, self.rising_samples)

    def observe(
        self,
        site: str,
        device: str,
        last_seen: dt.datetime | None,
        health: dict[str, Any] | None,
        now: dt.datetime,
    ) -> list[Finding]:
        found: list[Finding | None] = [self._device(site, device, last_seen, now)]
        if health is not None:
            found += self._cameras(site, device, health, now)
            found.append(self._outbox(site, device, health, now))
        return [f for f in found if f is not None]

    def _device(
        self, site: str, device: str, last_seen: dt.datetime | None, now: dt.datetime
    ) -> Finding:
        kind = IncidentKind.DEVICE_OFFLINE
        if last_seen is not None and now - last_seen > self.offline_after:
            detail = f"no message from {site}/{device} since {last_seen.isoformat()}"
            return Finding(kind, site, device, None, last_seen, detail)
        return Finding(kind, site, device, None, now, "back online", resolved=True)

    def _cameras(
        self, site: str, device: str, health: dict[str, Any], now: dt.datetime
    ) -> list[Finding]:
        found: list[Finding] = []
        for camera in health.get("cameras", []):
            key = (site, device, str(camera.get("camera")))
            kind = IncidentKind.CAMERA_OFFLINE
            if camera.get("online", True):
                self._camera_down.pop(key, None)
                found.append(Finding(kind, site, device, key[2], now, "online", resolved=True))
                continue
            since = self._camera_down.setdefault(key, now)
            if now - since > self.offline_after:
                found.append(Finding(kind, site, device, key[2], since, "camera offline"))
        return found

    def _outbox(
        self, site: str, device: str, health: dict[str, Any], now: dt.datetime
    ) -> Finding | None:
        depths = self._depths.setdefault((site, device), [])
        at, depth = str(health.get("at")), int(health.get("outbox_depth", 0))
        if not depths or depths[-1][0] != at:
            depths.append((at, depth))
            del depths[: -self.rising_samples]
        values = [d for _, d in depths]
        kind = IncidentKind.OUTBOX_GROWING
        if len(values) == self.rising_samples and all(a < b for a, b in itertools.pairwise(values)):
            return Finding(kind, site, device, None, now, f"outbox depth rising: {values}")
        if values and values[-1] == 0:
            return Finding(kind, site, device, None, now, "outbox drained", resolved=True)
        return None


# --- the service --------------------------------------------------------------------------


class IncidentService:
    """Creates and updates incidents and their deliveries; all in the caller's session."""

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

    # ingest hook ------------------------------------------------------------------------

    def on_stored(self, session: Session, events: Sequence[Event], now: dt.datetime) -> None:
        """New events (and the sightings ingest made of them) are in ``session``: update the
        incidents. Runs inside the ingest transaction."""
        if not events:
            return
        session.flush()
        ids = [e.event_id for e in events]
        sightings = list(
            session.scalars(
                sa.select(t.Sighting)
                .where(t.Sighting.event_id.in_(ids))
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
        self._trajectory(incident, point)
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

    # kinds --------------------------------------------------------------------------------

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

    # correlation helpers ------------------------------------------------------------------

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
    def _trajectory(incident: Incident, point: IncidentPoint) -> None:
        trajectory = list(incident.detail.get("trajectory", []))
        trajectory.append(
            {
                "camera": point.camera_id,
                "ring": point.ring,
                "at": point.at.isoformat(),
                "colour": point.colour,
                "similarity": None if point.similarity is None else round(point.similarity, 4),
            }
        )
        trajectory.sort(key=lambda p: str(p["at"]))
        incident.detail = {**incident.detail, "trajectory": trajectory[-500:]}

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

    # human actions -----------------------------------------------------------------------

    def confirm(
        self,
        session: Session,
        incident: Incident,
        actor: Actor,
        reason: str | None,
        now: dt.datetime,
    ) -> None:
        """A person confirms a watch-list match (the first stage)."""
        self._decide(session, incident, actor, reason, now, confirmed=True)

    def reject(
        self, session: Session, incident: Incident, actor: Actor, reason: str, now: dt.datetime
    ) -> None:
        """A person rejects a watch-list match as a false match; the reason is kept."""
        if not reason.strip():
            raise IncidentError("a rejection needs a reason")
        self._decide(session, incident, actor, reason, now, confirmed=False)

    def _decide(
        self,
        session: Session,
        incident: Incident,
        actor: Actor,
        reason: str | None,
        now: dt.datetime,
        confirmed: bool,
    ) -> None:
        if incident.kind != IncidentKind.WATCHLIST:
            raise IncidentError(f"only watch-list matches are confirmed; this is {incident.kind}")
        if incident.status != Status.OPEN:
            raise IncidentError(f"incident is {incident.status}; it was decided already")
        incident.status = Status.CONFIRMED if confirmed else Status.REJECTED
        incident.confirmed = confirmed
        incident.decided_by, incident.decided_at = actor.name, now
        incident.decision_reason = reason
        incident.updated_at = now
        self._done(session, incident, ACKNOWLEDGED, actor, reason, now)
        sightings = self._sightings_of(session, incident)
        if confirmed:
            for sighting in sightings:
                self._link_to_alerts(session, sighting, now)
        else:
            incident.closed_at = now
            self._cancel_rest(session, incident)
            self._unlink(session, [s.id for s in sightings])
            self._erase_crops(session, incident, sightings, actor, now)
            self.suppressions.start(session, incident, actor, now)
        action = "confirm" if confirmed else "reject"
        crud.audit(
            session,
            actor,
            action,
            "incident",
            incident.id,
            now,
            reason,
            person=incident.person_id,
            camera=incident.camera_id,
        )
        self.router.route(
            session,
            incident,
            Reason.CONFIRMED if confirmed else Reason.REJECTED,
            now,
            person_station=self._person_station(session, incident),
        )

    def step(
        self,
        session: Session,
        incident: Incident,
        name: str,
        actor: Actor,
        note: str | None,
        now: dt.datetime,
    ) -> IncidentStage:
        """Mark one response stage done (time-stamped and audited)."""
        if incident.kind == IncidentKind.WATCHLIST and name == ACKNOWLEDGED:
            raise IncidentError("a watch-list match is acknowledged by confirming or rejecting it")
        if incident.status not in Status.ACTIVE:
            raise IncidentError(f"incident is {incident.status}")
        stage = self._done(session, incident, name, actor, note, now)
        incident.updated_at = now
        crud.audit(
            session, actor, "step", "incident", incident.id, now, note, stage=name, due=_iso(stage)
        )
        self.router.route(session, incident, Reason.STEP, now, sse_only=True)
        return stage

    def close(
        self,
        session: Session,
        incident: Incident,
        actor: Actor,
        reason: str | None,
        now: dt.datetime,
    ) -> None:
        if incident.status not in Status.ACTIVE:
            raise IncidentError(f"incident is {incident.status} already")
        if incident.kind == IncidentKind.WATCHLIST and not incident.confirmed:
            raise IncidentError("confirm or reject a watch-list match before closing it")
        incident.status, incident.closed_at, incident.updated_at = Status.CLOSED, now, now
        self._cancel_rest(session, incident)
        crud.audit(session, actor, "close", "incident", incident.id, now, reason)
        self.router.route(session, incident, Reason.CLOSED, now)

    def _done(
        self,
        session: Session,
        incident: Incident,
        name: str,
        actor: Actor,
        note: str | None,
        now: dt.datetime,
    ) -> IncidentStage:
        stage = session.scalar(
            sa.select(IncidentStage).where(
                IncidentStage.incident_id == incident.id, IncidentStage.name == name
            )
        )
        if stage is None:
            raise UnknownStage(f"incident {incident.id} has no stage {name!r}")
        if stage.done_at is not None:
            raise IncidentError(f"stage {name} was done at {stage.done_at.isoformat()}")
        stage.done_at, stage.done_by, stage.note = now, actor.name, note
        return stage

    @staticmethod
    def _cancel_rest(session: Session, incident: Incident) -> None:
        session.execute(
            sa.update(IncidentStage)
            .where(IncidentStage.incident_id == incident.id, IncidentStage.done_at.is_(None))
            .values(cancelled=True)
        )

    @staticmethod
    def _erase_crops(
        session: Session,
        incident: Incident,
        sightings: list[t.Sighting],
        actor: Actor,
        now: dt.datetime,
    ) -> None:
        """A rejected match was someone else: drop the live face crops of its sightings
        (similarity, threshold and camera stay for the false-match report)."""
        erased = [s.id for s in sightings if s.crop_jpeg is not None]
        for sighting in sightings:
            sighting.crop_jpeg = None
        incident.detail = {**incident.detail, "live_crop": None}
        crud.audit(
            session,
            actor,
            "erase_crops",
            "incident",
            incident.id,
            now,
            "match rejected",
            sightings=erased,
        )

    @staticmethod
    def _person_station(session: Session, incident: Incident) -> str | None:
        if incident.person_id is None:
            return None
        person = session.get(t.Person, incident.person_id)
        return None if person is None else person.station_id

    # timers ---------------------------------------------------------------------------------

    def escalate_missed(self, session: Session, now: dt.datetime) -> list[IncidentStage]:
        """Every stage past its deadline, undone, escalates once to the supervisors."""
        rows = session.execute(
            sa.select(IncidentStage, Incident)
            .join(Incident, Incident.id == IncidentStage.incident_id)
            .where(
                IncidentStage.done_at.is_(None),
                IncidentStage.missed_at.is_(None),
                IncidentStage.cancelled.is_(False),
                IncidentStage.due_at.is_not(None),
                IncidentStage.due_at < now,
                Incident.status.in_(Status.ACTIVE),
            )
            .order_by(IncidentStage.due_at)
            .with_for_update(skip_locked=True, of=IncidentStage)
        ).all()
        missed: list[IncidentStage] = []
        for stage, incident in rows:
            if not is_missed(StageState(stage.due_at, stage.done_at, stage.missed_at), now):
                continue
            stage.missed_at = now
            incident.detail = {
                **incident.detail,
                "missed": [*incident.detail.get("missed", []), stage.name],
            }
            crud.audit(
                session, TIMERS, "escalate", "incident", incident.id, now, None, stage=stage.name
            )
            self.router.route(
                session, incident, Reason.MISSED, now, self.router.supervisors(incident)
            )
            missed.append(stage)
        return missed

    def watch_devices(self, session: Session, now: dt.datetime) -> list[Incident]:
        """Raise (and resolve) technical incidents from the devices' last heartbeats."""
        raised: list[Incident] = []
        for device in session.scalars(sa.select(t.Device)):
            findings = self.technical.observe(
                device.site_id, device.id, device.last_seen_at, device.last_health, now
            )
            for finding in findings:
                incident = self._technical(session, finding, now)
                if incident is not None:
                    raised.append(incident)
        return raised

    def _technical(self, session: Session, finding: Finding, now: dt.datetime) -> Incident | None:
        lock_keys(session, [_lock_key(finding.kind.value, finding.site, finding.key)])
        current = session.scalar(
            sa.select(Incident).where(
                Incident.kind == finding.kind.value,
                Incident.site_id == finding.site,
                Incident.key == finding.key,
                Incident.status.in_(Status.ACTIVE),
            )
        )
        if finding.resolved:
            if current is not None:
                current.status, current.closed_at, current.updated_at = Status.CLOSED, now, now
                self._cancel_rest(session, current)
                crud.audit(session, TIMERS, "resolve", "incident", current.id, now, finding.detail)
                self.router.route(session, current, Reason.CLOSED, now)
            return None
        if current is not None:
            return None
        what = finding.kind.value.replace("_", " ")
        target = finding.device + (f" camera {finding.camera}" if finding.camera else "")
        incident = self._create(
            session,
            finding.kind,
            finding.site,
            finding.key,
            finding.since,
            now,
            title=f"{target}: {what}",
            camera=finding.camera,
            device=finding.device,
            late=False,  # found by the hub now: its timers start now
        )
        incident.detail = {"finding": finding.detail}
        self.router.route(session, incident, Reason.NEW, now)
        return incident


def tamper_finding(event: Event) -> Finding:
    """A tamper event (edge/tamper.py) as the technical finding it raises or resolves."""
    return Finding(
        IncidentKind.CAMERA_TAMPER,
        event.site,
        event.device,
        event.camera,
        event.captured_at,
        event.detail or "camera tampered with",
        resolved=event.phase.value == "end",
    )


def _lock_key(kind: str, site: str, key: str) -> str:
    return f"incident:{kind}/{site}/{key}"


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


def _hub_time(session: Session, site: str, device: str | None, at: dt.datetime) -> dt.datetime:
    """``at`` from ``device``'s clock on the hub's clock (its measured skew taken off)."""
    row = None if device is None else session.get(t.Device, (site, device))
    skew = None if row is None else row.clock_skew_s
    return at if skew is None else at - dt.timedelta(seconds=skew)


def policy_colour(policy: ColourPolicy, ring: Ring, tier: str) -> str | None:
    try:
        return policy.colour_for(ring, Tier(tier)).value
    except ValueError:
        return None


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


def _iso(stage: IncidentStage) -> str | None:
    return None if stage.due_at is None else stage.due_at.isoformat()


def active_statuses() -> Iterable[str]:
    return Status.ACTIVE
