"""Police stations, property managers, sites, devices and cameras (seeded from the hub
config file, editable here). Everyone sees only the sites in their scope; admins edit all,
technicians may add devices and cameras to their own sites."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    Caller,
    CallerDep,
    HubDep,
    SessionDep,
    forbidden,
    not_found,
    require,
)
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import (
    CameraIn,
    CameraPublic,
    CameraUpdate,
    DeviceIn,
    DevicePublic,
    ManagerIn,
    ManagerPublic,
    SiteIn,
    SitePublic,
    SiteUpdate,
    StationIn,
    StationPublic,
)

router = APIRouter(tags=["sites"])
Admin = Annotated[Caller, Depends(require(Role.ADMIN))]
Installer = Annotated[Caller, Depends(require(Role.ADMIN, Role.TECHNICIAN))]


def _commit(session: Session, what: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"{what}: already exists or refers to something unknown"
        ) from None


def _site(session: Session, caller: Caller, site_id: str) -> t.Site:
    site = session.get(t.Site, site_id)
    if site is None:
        raise not_found(f"site {site_id}")
    if not caller.scope.sees_site(site_id):
        raise forbidden(f"site {site_id}")
    return site


@router.get("/stations")
def list_stations(session: SessionDep, caller: CallerDep) -> list[StationPublic]:
    rows = session.scalars(sa.select(t.Station).order_by(t.Station.id))
    return [StationPublic.model_validate(r) for r in rows if caller.scope.sees_station(r.id)]


@router.post("/stations", status_code=status.HTTP_201_CREATED)
def create_station(
    session: SessionDep, hub: HubDep, caller: Admin, body: StationIn
) -> StationPublic:
    row = crud.add_station(session, body)
    crud.audit(session, caller.actor, "create", "station", body.id, hub.clock())
    _commit(session, f"station {body.id}")
    return StationPublic.model_validate(row)


@router.get("/managers")
def list_managers(session: SessionDep, caller: Admin) -> list[ManagerPublic]:
    rows = session.scalars(sa.select(t.Manager).order_by(t.Manager.id))
    return [ManagerPublic.model_validate(r) for r in rows]


@router.post("/managers", status_code=status.HTTP_201_CREATED)
def create_manager(
    session: SessionDep, hub: HubDep, caller: Admin, body: ManagerIn
) -> ManagerPublic:
    row = crud.add_manager(session, body)
    crud.audit(session, caller.actor, "create", "manager", body.id, hub.clock())
    _commit(session, f"manager {body.id}")
    return ManagerPublic.model_validate(row)


@router.get("/sites")
def list_sites(session: SessionDep, caller: CallerDep) -> list[SitePublic]:
    rows = session.scalars(sa.select(t.Site).order_by(t.Site.id))
    return [SitePublic.model_validate(r) for r in rows if caller.scope.sees_site(r.id)]


@router.post("/sites", status_code=status.HTTP_201_CREATED)
def create_site(session: SessionDep, hub: HubDep, caller: Admin, body: SiteIn) -> SitePublic:
    row = crud.add_site(session, body)
    crud.audit(session, caller.actor, "create", "site", body.id, hub.clock())
    _commit(session, f"site {body.id}")
    return SitePublic.model_validate(row)


@router.get("/sites/{site_id}")
def read_site(session: SessionDep, caller: CallerDep, site_id: str) -> SitePublic:
    return SitePublic.model_validate(_site(session, caller, site_id))


@router.patch("/sites/{site_id}")
def update_site(
    session: SessionDep, hub: HubDep, caller: Admin, site_id: str, body: SiteUpdate
) -> SitePublic:
    site = crud.update_site(_site(session, caller, site_id), body)
    detail = body.model_dump(exclude_unset=True)
    crud.audit(session, caller.actor, "update", "site", site_id, hub.clock(), **detail)
    _commit(session, f"site {site_id}")
    return SitePublic.model_validate(site)


@router.get("/sites/{site_id}/devices")
def list_devices(session: SessionDep, caller: CallerDep, site_id: str) -> list[DevicePublic]:
    _site(session, caller, site_id)
    rows = session.scalars(sa.select(t.Device).where(t.Device.site_id == site_id))
    return [DevicePublic.model_validate(r) for r in rows]


@router.post("/sites/{site_id}/devices", status_code=status.HTTP_201_CREATED)
def create_device(
    session: SessionDep, hub: HubDep, caller: Installer, site_id: str, body: DeviceIn
) -> DevicePublic:
    _site(session, caller, site_id)
    row = crud.add_device(session, site_id, body)
    crud.audit(session, caller.actor, "create", "device", f"{site_id}/{body.id}", hub.clock())
    _commit(session, f"device {site_id}/{body.id}")
    return DevicePublic.model_validate(row)


@router.get("/sites/{site_id}/cameras")
def list_cameras(session: SessionDep, caller: CallerDep, site_id: str) -> list[CameraPublic]:
    _site(session, caller, site_id)
    rows = session.scalars(sa.select(t.Camera).where(t.Camera.site_id == site_id))
    return [CameraPublic.model_validate(r) for r in rows]


@router.post("/sites/{site_id}/cameras", status_code=status.HTTP_201_CREATED)
def create_camera(
    session: SessionDep, hub: HubDep, caller: Installer, site_id: str, body: CameraIn
) -> CameraPublic:
    _site(session, caller, site_id)
    row = crud.add_camera(session, site_id, body)
    crud.audit(session, caller.actor, "create", "camera", f"{site_id}/{body.id}", hub.clock())
    _commit(session, f"camera {site_id}/{body.id}")
    return CameraPublic.model_validate(row)


@router.patch("/sites/{site_id}/cameras/{camera_id}")
def update_camera(
    session: SessionDep,
    hub: HubDep,
    caller: Installer,
    site_id: str,
    camera_id: str,
    body: CameraUpdate,
) -> CameraPublic:
    _site(session, caller, site_id)
    camera = session.get(t.Camera, (site_id, camera_id))
    if camera is None:
        raise not_found(f"camera {site_id}/{camera_id}")
    crud.update_camera(camera, body)
    detail = body.model_dump(mode="json", exclude_unset=True)
    crud.audit(
        session, caller.actor, "update", "camera", f"{site_id}/{camera_id}", hub.clock(), **detail
    )
    _commit(session, f"camera {site_id}/{camera_id}")
    return CameraPublic.model_validate(camera)
