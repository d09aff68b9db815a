"""Incidents: the board, one incident with its evidence, trajectory, stages and deliveries,
the human steps (confirm, reject, each response stage, close; time-stamped and audited),
the response-time and false-match reports, and the live SSE stream.

Who sees what: station officers the campus and shed incidents of their stations' sites,
property managers the shed incidents of their sites, technicians the technical incidents of
their sites; admins and auditors everything (auditors change nothing)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from ringwatch.hub import crud
from ringwatch.hub.api.deps import (
    Caller,
    CallerDep,
    Filter,
    HubDep,
    Limit,
    SessionDep,
    forbidden,
    not_found,
    require,
)
from ringwatch.hub.api.deps import last_event_id as parse_last_event_id
from ringwatch.hub.i18n import incident_titles
from ringwatch.hub.incident_reports import false_matches, response_times
from ringwatch.hub.incident_runtime import IncidentRuntime
from ringwatch.hub.incident_tables import Delivery, Incident, IncidentPoint, IncidentStage
from ringwatch.hub.incidents import IncidentError, UnknownStage
from ringwatch.hub.roles import Role
from ringwatch.hub.routing import Reason
from ringwatch.hub.sse import alert_stream, last_id
from ringwatch.hub.stages import CAMPUS_KINDS, TECHNICAL_KINDS, IncidentKind
from ringwatch.hub.suppression import suppressed_counts, suppression_of
from ringwatch.hub.webhooks import delivery_summary
from ringwatch.hub.workflow import check_close, undo_step

router = APIRouter(prefix="/incidents", tags=["incidents"])
Actor_ = Annotated[
    Caller,
    Depends(require(Role.ADMIN, Role.STATION_OFFICER, Role.PROPERTY_MANAGER, Role.TECHNICIAN)),
]
Officer = Annotated[Caller, Depends(require(Role.ADMIN, Role.STATION_OFFICER))]
Reporter = Annotated[Caller, Depends(require(Role.ADMIN, Role.STATION_OFFICER, Role.AUDITOR))]

KINDS_OF: dict[Role, frozenset[IncidentKind]] = {
    Role.STATION_OFFICER: CAMPUS_KINDS | {IncidentKind.SHED},
    Role.PROPERTY_MANAGER: frozenset({IncidentKind.SHED}),
    Role.TECHNICIAN: TECHNICAL_KINDS,
}


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500, description="Why (kept).")


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="Why it is a false match.")


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=500, description="Note for the log.")


def runtime(hub: HubDep) -> IncidentRuntime:
    found: IncidentRuntime | None = getattr(hub, "incidents", None)
    if found is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "incidents are not running")
    return found


RuntimeDep = Annotated[IncidentRuntime, Depends(runtime)]


def _visible(query: sa.Select[Any], caller: Caller) -> sa.Select[Any]:
    kinds = KINDS_OF.get(caller.role)
    if kinds is not None:
        query = query.where(Incident.kind.in_([k.value for k in kinds]))
    if caller.scope.everything:
        return query
    sites = caller.scope.sites or frozenset()
    stations = caller.scope.stations or frozenset()
    return query.where(sa.or_(Incident.site_id.in_(sites), Incident.station_id.in_(stations)))


def summary(row: Incident) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "confirmed": row.confirmed,
        "colour": row.colour,
        "level": row.level,
        "ring": row.ring,
        "escalating": row.escalating,
        "late": row.late,
        "site": row.site_id,
        "station": row.station_id,
        "manager": row.manager_id,
        "device": row.device_id,
        "camera": row.camera_id,
        "person_id": row.person_id,
        "title": row.title,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "created_at": row.created_at,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "decision_reason": row.decision_reason,
        "closed_at": row.closed_at,
        "detail": row.detail,
        "titles": incident_titles(row),
    }


@router.get("")
def list_incidents(
    session: SessionDep,
    hub: HubDep,
    caller: CallerDep,
    state: Filter = None,
    kind: Filter = None,
    site_id: Filter = None,
    colour: Filter = None,
    limit: Limit = 200,
) -> list[dict[str, Any]]:
    """Newest first; filters by status (``state``), kind, site and colour."""
    query = _visible(sa.select(Incident), caller).order_by(Incident.created_at.desc())
    for column, value in (
        (Incident.status, state),
        (Incident.kind, kind),
        (Incident.site_id, site_id),
        (Incident.colour, colour),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = list(session.scalars(query.limit(limit)))
    audit_watchlist_read(session, hub, caller, rows)
    return [summary(r) for r in rows]


def audit_watchlist_read(
    session: SessionDep, hub: HubDep, caller: Caller, rows: list[Incident]
) -> None:
    """One audit entry per list that shows watch-list entries (names, tiers, reasons)."""
    ids = [r.id for r in rows if r.kind == IncidentKind.WATCHLIST.value]
    if ids:
        crud.audit(session, caller.actor, "list", "incident", None, hub.clock(), incidents=ids)
        session.commit()


def audit_stream(hub: HubDep, caller: Caller, name: str, after: int) -> None:
    """Opening a live incident stream is audited (who, which stream, from which alert)."""
    with hub.sessions.begin() as session:
        crud.audit(session, caller.actor, "open", "incident_stream", name, hub.clock(), after=after)


@router.get("/stream")
async def stream(
    hub: HubDep,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-sent events: one ``incident`` event per routed alert the caller may see."""
    after = parse_last_event_id(last_event_id)
    start = last_id(hub.sessions) if after is None else after
    audit_stream(hub, caller, "incidents/stream", start)
    alerts = alert_stream(hub.sessions, start, caller.scope.sites, stream_kinds(caller.role))
    return EventSourceResponse(alerts, ping=15)


def stream_kinds(role: Role) -> frozenset[str] | None:
    """Incident kinds a role's live stream carries (None: all). A property manager's shed
    may stand on a campus: its watch-list evidence is not theirs to see."""
    kinds = KINDS_OF.get(role)
    return None if kinds is None else frozenset(k.value for k in kinds)


@router.get("/reports/response-times")
def response_time_report(
    session: SessionDep, hub: HubDep, caller: Reporter, station_id: str | None = None
) -> list[dict[str, Any]]:
    """Per station, kind and stage: met / missed / pending / untimed and seconds taken."""
    stations = caller.scope.stations
    if station_id is not None:
        if stations is not None and station_id not in stations:
            raise forbidden(f"station {station_id}")
        stations = frozenset({station_id})
    return response_times(session, hub.clock(), stations)


@router.get("/reports/false-matches")
def false_match_report(session: SessionDep, caller: Reporter) -> list[dict[str, Any]]:
    """Per camera and threshold: decided matches, rejected as false, and the rate; with
    ``suppressed_on_camera``, the sightings kept quiet after rejections on that camera."""
    rows = false_matches(session, caller.scope.sites)
    counts = suppressed_counts(session, caller.scope.sites)
    return [{**r, "suppressed_on_camera": counts.get(r["camera"], 0)} for r in rows]


def _one(session: SessionDep, caller: Caller, incident_id: str) -> Incident:
    query = _visible(sa.select(Incident).where(Incident.id == incident_id), caller)
    row: Incident | None = session.scalar(query)
    if row is None:
        if session.get(Incident, incident_id) is not None:
            raise forbidden(f"incident {incident_id}")
        raise not_found(f"incident {incident_id}")
    return row


@router.get("/{incident_id}")
def read_incident(
    session: SessionDep, hub: HubDep, caller: CallerDep, incident_id: str
) -> dict[str, Any]:
    """The incident with its trajectory and evidence, stages and deliveries (audited)."""
    row = _one(session, caller, incident_id)
    points = session.scalars(
        sa.select(IncidentPoint)
        .where(IncidentPoint.incident_id == incident_id)
        .order_by(IncidentPoint.at, IncidentPoint.id)
    )
    stages = session.scalars(
        sa.select(IncidentStage)
        .where(IncidentStage.incident_id == incident_id)
        .order_by(IncidentStage.position)
    )
    deliveries = session.scalars(
        sa.select(Delivery).where(Delivery.incident_id == incident_id).order_by(Delivery.id)
    )
    crud.audit(session, caller.actor, "read", "incident", incident_id, hub.clock())
    session.commit()
    return {
        **summary(row),
        "points": [_point(p) for p in points],
        "stages": [_stage(s, hub.clock()) for s in stages],
        "deliveries": [delivery_summary(d) for d in deliveries],
        "suppression": suppression_of(session, incident_id, hub.clock()),
    }


def _point(p: IncidentPoint) -> dict[str, Any]:
    keys = ("role", "event_id", "sighting_id", "person_id", "camera_id", "ring", "colour")
    return {
        **{k: getattr(p, k) for k in keys},
        "level": p.level,
        "similarity": p.similarity,
        "at": p.at,
    }


def _stage(s: IncidentStage, now: dt.datetime) -> dict[str, Any]:
    keys = ("position", "name", "within_s", "due_at", "done_at", "done_by", "note", "missed_at")
    left = None if s.due_at is None or s.done_at else (s.due_at - now).total_seconds()
    return {**{k: getattr(s, k) for k in keys}, "cancelled": s.cancelled, "seconds_left": left}


def _act(session: SessionDep, action: Any) -> None:
    try:
        action()
    except UnknownStage as exc:
        session.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except IncidentError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session.commit()


@router.post("/{incident_id}/confirm")
def confirm(
    session: SessionDep,
    hub: HubDep,
    caller: Officer,
    incidents: RuntimeDep,
    incident_id: str,
    body: Decision,
) -> dict[str, Any]:
    """A person confirms the watch-list match (its first stage)."""
    row = _one(session, caller, incident_id)
    now = hub.clock()
    _act(session, lambda: incidents.service.confirm(session, row, caller.actor, body.reason, now))
    return summary(row)


@router.post("/{incident_id}/reject")
def reject(
    session: SessionDep,
    hub: HubDep,
    caller: Officer,
    incidents: RuntimeDep,
    incident_id: str,
    body: Rejection,
) -> dict[str, Any]:
    """A person rejects the match as false; the reason is kept for the false-match report."""
    row = _one(session, caller, incident_id)
    now = hub.clock()
    _act(session, lambda: incidents.service.reject(session, row, caller.actor, body.reason, now))
    return summary(row)


@router.post("/{incident_id}/steps/{stage}")
def step(
    session: SessionDep,
    hub: HubDep,
    caller: Actor_,
    incidents: RuntimeDep,
    incident_id: str,
    stage: str,
    body: StepIn,
) -> dict[str, Any]:
    """Mark one response stage done now (e.g. ``acknowledged``, ``patrol_on_scene``)."""
    row = _one(session, caller, incident_id)
    now = hub.clock()
    _act(session, lambda: incidents.service.step(session, row, stage, caller.actor, body.note, now))
    return summary(row)


@router.post("/{incident_id}/close")
def close(
    session: SessionDep,
    hub: HubDep,
    caller: Actor_,
    incidents: RuntimeDep,
    incident_id: str,
    body: Decision,
) -> dict[str, Any]:
    """Close; with stages not done yet, only with a reason (they become "not needed")."""
    row = _one(session, caller, incident_id)
    now = hub.clock()

    def checked_close() -> None:
        check_close(session, row, body.reason)
        incidents.service.close(session, row, caller.actor, body.reason, now)

    _act(session, checked_close)
    return summary(row)


@router.post("/{incident_id}/steps/{stage}/undo")
def undo(
    session: SessionDep,
    hub: HubDep,
    caller: Actor_,
    incidents: RuntimeDep,
    incident_id: str,
    stage: str,
) -> dict[str, Any]:
    """Take back a step the caller marked done less than 10 s ago (audited)."""
    row = _one(session, caller, incident_id)
    now = hub.clock()

    def take_back() -> None:
        undo_step(session, row, stage, caller.actor, now)
        incidents.service.router.route(session, row, Reason.STEP, now, sse_only=True)

    _act(session, take_back)
    return summary(row)
