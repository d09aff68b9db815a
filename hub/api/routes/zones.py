"""Zone editor API: each camera's zones on the hub, saves pushed to the device, snapshots.

Admins and technicians edit (technicians only on their sites); everyone who sees a site may
read its zones. A save is validated with the contract's :class:`CameraZones` (the edge's own
models) and refused with 422 and the validation messages; a valid one is stored, audited and
pushed, and reads back ``pending`` until the device answers.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ringwatch.contract.zones import CameraZones
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    Caller,
    CallerDep,
    HubDep,
    Reason,
    SessionDep,
    forbidden,
    not_found,
    require,
)
from ringwatch.hub.app import Hub
from ringwatch.hub.image_policy import may_see_people, release
from ringwatch.hub.roles import Role
from ringwatch.hub.zone_configs import (
    InvalidZones,
    SnapshotUnavailable,
    ZoneConfigs,
    ZoneEditorError,
    zones_from_site_file,
)
from ringwatch.hub.zone_tables import CameraZoneConfig

router = APIRouter(prefix="/zones", tags=["zones"])
Editor = Annotated[Caller, Depends(require(Role.ADMIN, Role.TECHNICIAN))]


class ZoneCamera(BaseModel):
    """A camera as the zone editor lists it."""

    site: str
    camera: str
    device: str
    role: str
    default_ring: str | None
    state: str | None
    version: int | None
    device_online: bool | None


class ZoneConfigPublic(BaseModel):
    """A camera's zones on the hub and where the latest push stands."""

    site: str
    camera: str
    device: str
    default_ring: str | None
    device_online: bool | None
    zones: dict[str, Any] | None
    version: int | None = None
    state: str | None = None
    reason: str | None = None
    request_id: str | None = None
    applied_version: int | None = None
    updated_by: str | None = None
    updated_at: dt.datetime | None = None
    pushed_at: dt.datetime | None = None
    pushes: int = 0
    answered_at: dt.datetime | None = None


class SiteFile(BaseModel):
    yaml: str = Field(max_length=1_000_000, description="An edge site file (YAML text).")


class SnapshotPublic(BaseModel):
    width: int
    height: int
    jpeg: str
    policy: str = Field(description="original, or pixelated for roles that may not see people.")
    taken_at: dt.datetime
    captured_at: dt.datetime | None = Field(description="When the camera read the frame.")
    stale: bool = Field(description="An old frame (camera offline or stuck) or of unknown age.")
    running_zones: dict[str, Any] | None = Field(
        default=None, description="The zones the camera runs now, as its device reported them."
    )
    running_origin: str | None = Field(
        default=None, description="site_file (the box's own file) or pushed (from the hub)."
    )
    running_matches: bool | None = Field(
        default=None,
        description="The running zones equal the hub's saved ones (None: either unknown).",
    )


def _zones(hub: HubDep) -> ZoneConfigs:
    if hub.zones is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the hub is starting")
    return hub.zones


ZonesDep = Annotated[ZoneConfigs, Depends(_zones)]


def _camera(session: SessionDep, caller: Caller, site: str, camera: str) -> t.Camera:
    row = session.get(t.Camera, (site, camera))
    if row is None:
        raise not_found(f"camera {site}/{camera}")
    if not caller.scope.sees_site(site):
        raise forbidden(f"site {site}")
    return row


def _public(zones: ZoneConfigs, cam: t.Camera, row: CameraZoneConfig | None) -> ZoneConfigPublic:
    base = ZoneConfigPublic(
        site=cam.site_id,
        camera=cam.id,
        device=cam.device_id,
        default_ring=cam.default_ring,
        device_online=zones.online(cam.site_id, cam.device_id),
        zones=None if row is None else row.zones,
    )
    if row is None:
        return base
    fields = ("version", "state", "reason", "request_id", "applied_version", "updated_by")
    more = ("updated_at", "pushed_at", "pushes", "answered_at")
    return base.model_copy(update={f: getattr(row, f) for f in (*fields, *more)})


@router.get("/cameras")
def list_cameras(session: SessionDep, caller: CallerDep, zones: ZonesDep) -> list[ZoneCamera]:
    cams = session.scalars(sa.select(t.Camera).order_by(t.Camera.site_id, t.Camera.id))
    configs = {(r.site_id, r.camera_id): r for r in session.scalars(sa.select(CameraZoneConfig))}
    out = []
    for cam in cams:
        if not caller.scope.sees_site(cam.site_id):
            continue
        row = configs.get((cam.site_id, cam.id))
        out.append(
            ZoneCamera(
                site=cam.site_id,
                camera=cam.id,
                device=cam.device_id,
                role=cam.role,
                default_ring=cam.default_ring,
                state=None if row is None else row.state,
                version=None if row is None else row.version,
                device_online=zones.online(cam.site_id, cam.device_id),
            )
        )
    return out


@router.get("/{site}/{camera}")
def read_zones(
    session: SessionDep, caller: CallerDep, zones: ZonesDep, site: str, camera: str
) -> ZoneConfigPublic:
    cam = _camera(session, caller, site, camera)
    return _public(zones, cam, zones.current(session, site, camera))


@router.put("/{site}/{camera}")
def save_zones(
    session: SessionDep,
    caller: Editor,
    zones: ZonesDep,
    site: str,
    camera: str,
    body: Annotated[dict[str, Any], Body(description="A CameraZones object (contract).")],
    reason: Reason = None,
) -> ZoneConfigPublic:
    cam = _camera(session, caller, site, camera)
    try:
        row = zones.save(site, camera, body, caller.actor, reason)
    except InvalidZones as exc:
        detail = {
            "message": str(exc),
            "errors": [{"path": p, "message": m} for p, m in exc.errors],
        }
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    except ZoneEditorError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _public(zones, cam, row)


@router.post("/{site}/{camera}/snapshot")
def take_snapshot(
    session: SessionDep, hub: HubDep, caller: Editor, zones: ZonesDep, site: str, camera: str
) -> SnapshotPublic:
    """A fresh snapshot from the device (privacy masks applied there)."""
    cam = _camera(session, caller, site, camera)
    session.close()  # do not hold a connection while waiting for the device
    try:
        shot = zones.request_snapshot(site, cam.device_id, camera)
        shown = release(shot.jpeg, caller.role)
    except SnapshotUnavailable as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from None
    except ValueError as exc:  # the device sent an image the policy cannot process
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"snapshot refused: {exc}") from None
    with hub.sessions.begin() as audit_session:
        _audit_image(audit_session, hub, caller, "camera_snapshot", site, camera, shown.policy)
        row = zones.current(audit_session, site, camera)
        saved = None if row is None else CameraZones.model_validate(row.zones)
    running = shot.running
    return SnapshotPublic(
        running_zones=None if running is None else running.model_dump(mode="json"),
        running_origin=shot.running_origin,
        running_matches=None if running is None or saved is None else running == saved,
        width=shot.width,
        height=shot.height,
        policy=shown.policy,
        jpeg=base64.b64encode(shown.jpeg).decode(),
        taken_at=shot.taken_at,
        captured_at=shot.captured_at,
        stale=shot.stale,
    )


@router.get("/{site}/{camera}/preview.jpg")
def preview(
    session: SessionDep, hub: HubDep, caller: CallerDep, zones: ZonesDep, site: str, camera: str
) -> Response:
    """The latest snapshot with the hub's zones drawn by the edge's own annotator, under
    the image policy (people pixelated for roles that may not see them), audited."""
    _camera(session, caller, site, camera)
    row = zones.current(session, site, camera)
    policy = "original" if may_see_people(caller.role) else "pixelated"
    last = zones.snapshot(site, camera)
    running = None if last is None else last.running  # nothing saved: draw what runs
    try:
        drawn = zones.annotated(
            site,
            camera,
            (running or CameraZones()) if row is None else CameraZones.model_validate(row.zones),
            None if policy == "original" else (lambda jpeg: release(jpeg, caller.role).jpeg),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"snapshot refused: {exc}") from None
    if drawn is None:
        raise not_found(f"a snapshot of {site}/{camera} (take one first)")
    _audit_image(session, hub, caller, "camera_preview", site, camera, policy)
    session.commit()
    headers = {"Cache-Control": "no-store", "X-Image-Policy": policy}
    return Response(drawn, media_type="image/jpeg", headers=headers)


def _audit_image(
    session: Session, hub: Hub, caller: Caller, entity: str, site: str, camera: str, policy: str
) -> None:
    crud.audit(
        session, caller.actor, "read", entity, f"{site}/{camera}", hub.clock(), policy=policy
    )


@router.post("/{site}/{camera}/from-site-file")
def from_site_file(
    session: SessionDep, caller: Editor, site: str, camera: str, body: SiteFile
) -> dict[str, Any]:
    """The camera's zones read from its edge site file (not saved: the editor shows them)."""
    cam = _camera(session, caller, site, camera)
    try:
        zones = zones_from_site_file(body.yaml, site, cam.device_id, camera)
    except ZoneEditorError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return zones.model_dump(mode="json")
