"""Safe steps in the duty console: closing an incident whose stages are not done needs a
reason (the API refuses a bare close), and a step marked done by mistake can be undone by
the same person within :data:`UNDO_WINDOW`."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub.crud import Actor
from ringwatch.hub.incident_tables import Incident, IncidentStage
from ringwatch.hub.incidents import IncidentError, UnknownStage

UNDO_WINDOW = dt.timedelta(seconds=10)


def unfinished(session: Session, incident: Incident) -> list[str]:
    """Names of the stages neither done nor cancelled."""
    return list(
        session.scalars(
            sa.select(IncidentStage.name)
            .where(
                IncidentStage.incident_id == incident.id,
                IncidentStage.done_at.is_(None),
                IncidentStage.cancelled.is_(False),
            )
            .order_by(IncidentStage.position)
        )
    )


def check_close(session: Session, incident: Incident, reason: str | None) -> None:
    """Refuse to close with stages left undone and no reason."""
    left = unfinished(session, incident)
    if left and not (reason or "").strip():
        raise IncidentError(f"stages not done: {', '.join(left)}; closing anyway needs a reason")


def undo_step(
    session: Session, incident: Incident, name: str, actor: Actor, now: dt.datetime
) -> IncidentStage:
    """Take back a step ``actor`` marked done less than :data:`UNDO_WINDOW` ago."""
    if incident.status not in ("open", "confirmed"):
        raise IncidentError(f"incident is {incident.status}")
    stage = session.scalar(
        sa.select(IncidentStage).where(
            IncidentStage.incident_id == incident.id, IncidentStage.name == name
        )
    )
    if stage is None:
        raise UnknownStage(f"incident {incident.id} has no stage {name!r}")
    if stage.done_at is None:
        raise IncidentError(f"stage {name} is not done")
    if stage.done_by != actor.name or now - stage.done_at > UNDO_WINDOW:
        raise IncidentError(
            f"stage {name} can be undone only by {stage.done_by} within"
            f" {int(UNDO_WINDOW.total_seconds())} s"
        )
    done_at = stage.done_at
    stage.done_at, stage.done_by, stage.note = None, None, None
    incident.updated_at = now
    crud.audit(
        session, actor, "undo_step", "incident", incident.id, now, None,
        stage=name, done_at=done_at.isoformat(),
    )  # fmt: skip
    return stage
