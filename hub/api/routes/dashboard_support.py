"""What the dashboard needs beyond the resource API: a cookie session for the browser's
``EventSource`` (which cannot send an ``Authorization`` header), the board with each
incident's running response stages, an incident's audit trail, event snapshots, and the
devices and sheds overviews. Scoping follows the resource API: everyone sees only their
sites; reads of evidence are audited."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    Caller,
    CallerDep,
    Filter,
    HubDep,
    Limit,
    SessionDep,
    TokenDep,
    forbidden,
    get_caller,
    get_current_user,
    not_found,
)
from ringwatch.hub.api.deps import last_event_id as parse_last_event_id
from ringwatch.hub.api.routes.events import may_see_event
from ringwatch.hub.api.routes.incidents import (
    KINDS_OF,
    audit_stream,
    list_incidents,
    stream_kinds,
)
from ringwatch.hub.app import Hub
from ringwatch.hub.console_tables import ConsolePreference
from ringwatch.hub.i18n import LANGUAGES, incident_titles
from ringwatch.hub.image_policy import release
from ringwatch.hub.incident_tables import Incident, IncidentStage
from ringwatch.hub.sse import alert_stream, last_id
from ringwatch.hub.stages import IncidentKind

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
COOKIE = "ringwatch_session"
COOKIE_PATH = "/api/v1/dashboard"
SERIES_POINTS = 360  # six minutes of 1 Hz readings: the climb, not only its end
# The edge's default thresholds (edge/shed.py SensorThresholds); a shed event's detail
# names the ones its edge used ("b3: temperature 95.0 C > 60"), which win.
THRESHOLDS = {"temperature": 60.0, "current": 8.0, "voltage": 30.0}
_ANOMALY = re.compile(
    r"(?P<bay>[\w.-]+): (?P<what>temperature|current|voltage) [\d.]+ \w+ [<>] (?P<limit>[\d.]+)"
)


@router.post("/session", status_code=status.HTTP_204_NO_CONTENT)
def open_session(response: Response, caller: CallerDep, token: TokenDep) -> None:
    """Put the caller's token in an HttpOnly cookie scoped to the dashboard's stream."""
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path=COOKIE_PATH)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def close_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH)


def _cookie_caller(hub: Hub, request: Request) -> Caller:
    token = request.cookies.get(COOKIE)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "no dashboard session; log in first")
    # A session of its own, closed before the stream starts (a yield dependency would hold
    # its connection for as long as the stream stays open).
    with hub.sessions() as session:
        caller = get_caller(session, get_current_user(session, hub, token))
        session.expunge_all()
        return caller


@router.get("/stream")
async def stream(
    hub: HubDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """The incident stream for a browser's ``EventSource`` (authenticated by the cookie)."""
    caller = _cookie_caller(hub, request)
    after = parse_last_event_id(last_event_id)
    start = last_id(hub.sessions) if after is None else after
    audit_stream(hub, caller, "dashboard/stream", start)
    alerts = alert_stream(hub.sessions, start, caller.scope.sites, stream_kinds(caller.role))
    return EventSourceResponse(alerts, ping=15)


def _labels(hub: Hub, kind: str) -> dict[str, str]:
    try:
        specs = hub.config.incidents.stages.stages(IncidentKind(kind))
    except ValueError:
        return {}
    return {s.name: s.label or s.name.replace("_", " ") for s in specs}


def _stage(s: IncidentStage, labels: dict[str, str]) -> dict[str, Any]:
    keys = ("position", "name", "within_s", "due_at", "done_at", "done_by", "missed_at")
    return {
        **{k: getattr(s, k) for k in keys},
        "label": labels.get(s.name, s.name),
        "cancelled": s.cancelled,
    }


@router.get("/board")
def board(
    session: SessionDep,
    hub: HubDep,
    caller: CallerDep,
    state: Filter = None,
    kind: Filter = None,
    site_id: Filter = None,
    colour: Filter = None,
    limit: Limit = 200,
) -> dict[str, Any]:
    """The incidents the caller may see (filters as ``GET /incidents``), each with its
    response stages; ``now`` is the hub's time, so browsers can run the timers."""
    rows = list_incidents(session, hub, caller, state, kind, site_id, colour, limit)
    ids = [r["id"] for r in rows]
    stages: dict[str, list[IncidentStage]] = defaultdict(list)
    for s in session.scalars(
        sa.select(IncidentStage)
        .where(IncidentStage.incident_id.in_(ids))
        .order_by(IncidentStage.position)
    ):
        stages[s.incident_id].append(s)
    incidents = [
        {**r, "stages": [_stage(s, _labels(hub, r["kind"])) for s in stages[r["id"]]]} for r in rows
    ]
    return {"now": hub.clock(), "incidents": incidents}


@router.get("/config")
def console_config(hub: HubDep) -> dict[str, Any]:
    """What the login page needs before anyone logs in: the hub's default language."""
    return {"default_language": hub.settings.language, "languages": list(LANGUAGES)}


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: Literal["zh-CN", "en"] = Field(description="Console language of this user.")


@router.get("/preferences")
def read_preferences(session: SessionDep, hub: HubDep, caller: CallerDep) -> dict[str, Any]:
    """The caller's console language (the hub's default until they choose one)."""
    row = session.get(ConsolePreference, caller.user.id)
    chosen = None if row is None else row.language
    return {"language": chosen or hub.settings.language, "chosen": chosen is not None}


@router.put("/preferences")
def save_preferences(
    session: SessionDep, hub: HubDep, caller: CallerDep, body: PreferencesIn
) -> dict[str, Any]:
    row = session.get(ConsolePreference, caller.user.id)
    if row is None:
        session.add(ConsolePreference(user_id=caller.user.id, language=body.language))
    else:
        row.language = body.language
    session.commit()
    return {"language": body.language, "chosen": True}


def _may_see(caller: Caller, row: Incident) -> bool:
    kinds = KINDS_OF.get(caller.role)
    if kinds is not None and row.kind not in {k.value for k in kinds}:
        return False
    if caller.scope.everything:
        return True
    return row.site_id in (caller.scope.sites or ()) or row.station_id in (
        caller.scope.stations or ()
    )


@router.get("/incidents/{incident_id}/stages")
def incident_stages(
    session: SessionDep, hub: HubDep, caller: CallerDep, incident_id: str
) -> list[dict[str, Any]]:
    """The incident's stages with their display labels."""
    row = _incident(session, caller, incident_id)
    labels = _labels(hub, row.kind)
    rows = session.scalars(
        sa.select(IncidentStage)
        .where(IncidentStage.incident_id == incident_id)
        .order_by(IncidentStage.position)
    )
    return [_stage(s, labels) for s in rows]


def _incident(session: SessionDep, caller: Caller, incident_id: str) -> Incident:
    row = session.get(Incident, incident_id)
    if row is None:
        raise not_found(f"incident {incident_id}")
    if not _may_see(caller, row):
        raise forbidden(f"incident {incident_id}")
    return row


@router.get("/incidents/{incident_id}/audit")
def incident_audit(
    session: SessionDep, hub: HubDep, caller: CallerDep, incident_id: str
) -> list[dict[str, Any]]:
    """Every audit entry about this incident, oldest first (reading it is audited)."""
    _incident(session, caller, incident_id)
    rows = session.scalars(
        sa.select(t.AuditEntry)
        .where(t.AuditEntry.entity == "incident", t.AuditEntry.entity_id == incident_id)
        .order_by(t.AuditEntry.id)
    )
    keys = ("id", "at", "actor", "role", "action", "reason", "detail")
    out = [{k: getattr(r, k) for k in keys} for r in rows]
    crud.audit(session, caller.actor, "read", "incident_audit", incident_id, hub.clock())
    session.commit()
    return out


@router.get("/events/{event_id}/snapshot", response_class=Response)
def event_snapshot(session: SessionDep, hub: HubDep, caller: CallerDep, event_id: str) -> Response:
    """The JPEG snapshot an edge attached to an event (intrusion, shed alert), audited."""
    row = session.get(t.Event, event_id)
    if row is None:
        raise not_found(f"event {event_id}")
    if not may_see_event(caller, row):
        raise forbidden(f"event {event_id}")
    if row.snapshot_jpeg is None:
        raise not_found(f"snapshot of event {event_id}")
    width, height = row.payload.get("frame_width"), row.payload.get("frame_height")
    frame = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    try:
        shown = release(row.snapshot_jpeg, caller.role, row.payload.get("boxes", []), frame)
    except ValueError as exc:
        raise not_found(f"a showable snapshot of event {event_id} ({exc})") from None
    crud.audit(
        session, caller.actor, "read", "event_snapshot", event_id, hub.clock(), policy=shown.policy
    )
    session.commit()
    headers = {"X-Image-Policy": shown.policy, "Cache-Control": "no-store"}
    return Response(shown.jpeg, media_type="image/jpeg", headers=headers)


def _camera_health(health: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    cameras = (health or {}).get("cameras", [])
    return {str(c.get("camera")): c for c in cameras if isinstance(c, dict)}


def _device(
    d: t.Device, cameras: list[t.Camera], now: dt.datetime, offline_after: dt.timedelta
) -> dict[str, Any]:
    health = d.last_health or {}
    seen = d.last_seen_at
    online = seen is not None and now - seen <= offline_after
    by_camera = _camera_health(d.last_health)
    return {
        "site": d.site_id,
        "id": d.id,
        "name": d.name,
        "agent_version": d.agent_version,
        "last_seen_at": seen,
        "online": online,
        "uptime_s": health.get("uptime_s"),
        "outbox_depth": health.get("outbox_depth"),
        "outbox_dropped": health.get("outbox_dropped"),
        "clock_synced": health.get("clock_synced"),
        "cameras": [
            {
                "id": c.id,
                "name": c.name,
                "role": c.role,
                "shed": c.shed,
                "default_ring": c.default_ring,
                "online": online and bool(by_camera.get(c.id, {}).get("online", False)),
                **{
                    k: by_camera.get(c.id, {}).get(k)
                    for k in ("fps", "latency_ms", "dropped_frames", "reconnects", "frame_errors")
                },
            }
            for c in cameras
        ],
    }


@router.get("/devices")
def devices(session: SessionDep, hub: HubDep, caller: CallerDep) -> list[dict[str, Any]]:
    """Every device in scope with its cameras: online, fps, latency, outbox depth, last
    heartbeat, agent version (from the last heartbeat)."""
    now = hub.clock()
    offline_after = dt.timedelta(seconds=hub.config.incidents.technical.offline_after_s)
    cameras: dict[tuple[str, str], list[t.Camera]] = defaultdict(list)
    for c in session.scalars(sa.select(t.Camera).order_by(t.Camera.site_id, t.Camera.id)):
        cameras[(c.site_id, c.device_id)].append(c)
    rows = session.scalars(sa.select(t.Device).order_by(t.Device.site_id, t.Device.id))
    return [
        _device(d, cameras[(d.site_id, d.id)], now, offline_after)
        for d in rows
        if caller.scope.sees_site(d.site_id)
    ]


def _bay_series(session: SessionDep, site: str, shed: str, points: int) -> dict[str, Any]:
    bays = session.scalars(
        sa.select(t.SensorReading.bay)
        .where(t.SensorReading.site_id == site, t.SensorReading.shed == shed)
        .distinct()
    )
    out: dict[str, Any] = {}
    for bay in sorted(bays):
        rows = list(
            session.scalars(
                sa.select(t.SensorReading)
                .where(
                    t.SensorReading.site_id == site,
                    t.SensorReading.shed == shed,
                    t.SensorReading.bay == bay,
                )
                .order_by(t.SensorReading.measured_at.desc())
                .limit(points)
            )
        )
        out[bay] = [
            {
                "at": r.measured_at,
                "current_a": r.current_a,
                "voltage_v": r.voltage_v,
                "temperature_c": r.temperature_c,
            }
            for r in reversed(rows)
        ]
    return out


Points = Annotated[int, Query(ge=2, le=1000, description="Readings per bay (2-1000).")]


@router.get("/sheds")
def sheds(
    session: SessionDep, caller: CallerDep, points: Points = SERIES_POINTS
) -> list[dict[str, Any]]:
    """Per shed: its cameras, the latest readings of each bay (a short series for a chart)
    and its fire/smoke incidents with their levels, newest first."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in session.scalars(sa.select(t.Camera).where(t.Camera.role == "shed")):
        found[(c.site_id, c.shed or c.id)].append(c.id)
    for site, shed in session.execute(
        sa.select(t.SensorReading.site_id, t.SensorReading.shed).distinct()
    ):
        found.setdefault((site, shed), [])
    incidents = session.scalars(
        sa.select(Incident)
        .where(Incident.kind == IncidentKind.SHED.value)
        .order_by(Incident.created_at.desc())
        .limit(500)
    )
    by_shed: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in incidents:
        by_shed[(row.site_id, str(row.detail.get("shed", row.camera_id)))].append(
            {
                "id": row.id,
                "level": row.level,
                "levels": row.detail.get("levels", []),
                "status": row.status,
                "title": row.title,
                "titles": incident_titles(row),
                "first_seen": row.first_seen,
                "anomalies": _anomalies(row.detail.get("sensor_detail")),
                "last_seen": row.last_seen,
                "camera": row.camera_id,
            }
        )
    return [
        {
            "site": site,
            "shed": shed,
            "cameras": sorted(cams),
            "bays": _bay_series(session, site, shed, points),
            "thresholds": THRESHOLDS,
            "incidents": by_shed[(site, shed)][:20],
        }
        for (site, shed), cams in sorted(found.items())
        if caller.scope.sees_site(site)
    ]


def _anomalies(detail: object) -> list[dict[str, Any]]:
    """The edge's reasons ("b3: temperature 95.0 C > 60") as bay, what and the limit."""
    if not isinstance(detail, str):
        return []
    return [
        {"bay": m["bay"], "what": m["what"], "limit": float(m["limit"])}
        for m in _ANOMALY.finditer(detail)
    ]
