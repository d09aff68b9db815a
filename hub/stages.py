"""Response stages per incident kind, as data, and the pure timer logic over them.

Each incident kind has an ordered list of stages, each with a deadline counted from the
hub's creation of the incident (campus: acknowledged within 1 minute, patrol on scene within
3, station on scene within 5; sheds: manager acknowledged within 1, on-site check within 3,
fire service called within 5). For a watch-list match the first stage, ``acknowledged``, is
done only by a human's confirm or reject.

An incident whose triggering event is older than the longest deadline of its plan is
*late*: it gets its stages without deadlines, so no timer runs and nothing escalates.
Nothing here touches the database or the clock: ``now`` is always passed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringwatch.contract.zones import Ident


class IncidentKind(StrEnum):
    """What an incident is about."""

    WATCHLIST = "watchlist"
    INTRUSION = "intrusion"
    LOITERING = "loitering"
    SHED = "shed"
    DEVICE_OFFLINE = "device_offline"
    DEVICE_QUARANTINED = "device_quarantined"  # flooded malformed messages (hub/quarantine.py)
    CAMERA_OFFLINE = "camera_offline"
    OUTBOX_GROWING = "outbox_growing"
    CAMERA_TAMPER = "camera_tamper"  # covered, turned away or defocused (edge/tamper.py)


CAMPUS_KINDS = frozenset({IncidentKind.WATCHLIST, IncidentKind.INTRUSION, IncidentKind.LOITERING})
TECHNICAL_KINDS = frozenset(
    {
        IncidentKind.DEVICE_OFFLINE,
        IncidentKind.DEVICE_QUARANTINED,
        IncidentKind.CAMERA_OFFLINE,
        IncidentKind.OUTBOX_GROWING,
        IncidentKind.CAMERA_TAMPER,
    }
)
ACKNOWLEDGED = "acknowledged"


class StageSpec(BaseModel):
    """One response stage: its name and the seconds it must be done within."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Ident = Field(description="Stage name, used in the step endpoint's path.")
    within_s: int = Field(gt=0, le=7 * 86400, description="Deadline from incident creation, s.")
    label: str = Field(default="", max_length=100, description="Display text.")


def _campus() -> list[StageSpec]:
    return [
        StageSpec(name=ACKNOWLEDGED, within_s=60, label="Acknowledged"),
        StageSpec(name="patrol_on_scene", within_s=180, label="Patrol on scene"),
        StageSpec(name="station_on_scene", within_s=300, label="Station on scene"),
    ]


def _shed() -> list[StageSpec]:
    return [
        StageSpec(name=ACKNOWLEDGED, within_s=60, label="Manager acknowledged"),
        StageSpec(name="onsite_check", within_s=180, label="On-site check"),
        StageSpec(name="fire_service_called", within_s=300, label="Fire service called"),
    ]


def _technical() -> list[StageSpec]:
    return [StageSpec(name=ACKNOWLEDGED, within_s=3600, label="Technician acknowledged")]


def default_plans() -> dict[IncidentKind, list[StageSpec]]:
    plans = {kind: _campus() for kind in CAMPUS_KINDS}
    plans[IncidentKind.SHED] = _shed()
    plans.update({kind: _technical() for kind in TECHNICAL_KINDS})
    return plans


class StagePlans(BaseModel):
    """The stage list of every incident kind (a kind left out gets no stages)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plans: dict[IncidentKind, list[StageSpec]] = Field(
        default_factory=default_plans, description="Stages per incident kind, in order."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for kind, stages in self.plans.items():
            names = [s.name for s in stages]
            if len(set(names)) != len(names):
                raise ValueError(f"plans.{kind.value}: stage names repeat: {names}")
            deadlines = [s.within_s for s in stages]
            if deadlines != sorted(deadlines):
                raise ValueError(f"plans.{kind.value}: deadlines must not decrease: {deadlines}")
        return self

    def stages(self, kind: IncidentKind) -> list[StageSpec]:
        return list(self.plans.get(kind, []))

    def longest(self, kind: IncidentKind) -> dt.timedelta:
        """The longest deadline of ``kind`` (zero when it has no stages)."""
        return dt.timedelta(seconds=max((s.within_s for s in self.stages(kind)), default=0))

    def is_late(self, kind: IncidentKind, happened_at: dt.datetime, now: dt.datetime) -> bool:
        """An event older than the longest deadline starts no timers."""
        longest = self.longest(kind)
        return longest > dt.timedelta(0) and now - happened_at > longest


@dataclass(frozen=True, slots=True)
class Deadline:
    """A stage's deadline; ``due_at`` is None for a late incident (no timer)."""

    position: int
    name: str
    within_s: int
    due_at: dt.datetime | None


def deadlines(
    plans: StagePlans, kind: IncidentKind, created_at: dt.datetime, late: bool
) -> list[Deadline]:
    """The deadlines of a new incident created at ``created_at`` (the hub's time)."""
    return [
        Deadline(
            i,
            s.name,
            s.within_s,
            None if late else created_at + dt.timedelta(seconds=s.within_s),
        )
        for i, s in enumerate(plans.stages(kind))
    ]


@dataclass(frozen=True, slots=True)
class StageState:
    """What the timer needs to know about one stage."""

    due_at: dt.datetime | None
    done_at: dt.datetime | None
    missed_at: dt.datetime | None


def is_missed(stage: StageState, now: dt.datetime) -> bool:
    """True when the stage's deadline has passed undone and it has not escalated yet."""
    return (
        stage.due_at is not None
        and stage.done_at is None
        and stage.missed_at is None
        and now > stage.due_at
    )


class StageOutcome(StrEnum):
    MET = "met"
    MISSED = "missed"
    PENDING = "pending"
    UNTIMED = "untimed"


def outcome(stage: StageState, now: dt.datetime) -> StageOutcome:
    """How a stage stands for the response-time report."""
    if stage.due_at is None:
        return StageOutcome.UNTIMED
    if stage.done_at is not None and stage.done_at <= stage.due_at:
        return StageOutcome.MET
    if stage.done_at is not None or now > stage.due_at:
        return StageOutcome.MISSED
    return StageOutcome.PENDING
