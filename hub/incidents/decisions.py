"""Decisions: a human's confirm or reject, stage steps and closing."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_tables import Incident, IncidentStage
from ringwatch.hub.incidents.base import (
    IncidentError,
    Status,
    UnknownStage,
    _iso,
)
from ringwatch.hub.incidents.persons import PersonLinks
from ringwatch.hub.routing import Reason
from ringwatch.hub.stages import (
    ACKNOWLEDGED,
    IncidentKind,
)


class Decisions(PersonLinks):
    """What officers do to an incident: confirm, reject, step, close."""

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
