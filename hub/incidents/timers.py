"""Timers: missed response stages escalated to the station's supervisors."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub.incident_tables import Incident, IncidentStage
from ringwatch.hub.incidents.base import TIMERS, IncidentBase, Status
from ringwatch.hub.routing import Reason
from ringwatch.hub.stages import (
    StageState,
    is_missed,
)


class Timers(IncidentBase):
    """Escalates missed stages, once each."""

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
