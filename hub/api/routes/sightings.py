"""Sightings: watch-list matches. A station officer sees those at their stations' sites and
those of their stations' persons; reads are audited."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    Caller,
    Filter,
    HubDep,
    Limit,
    Reason,
    RowId,
    RowIdQuery,
    SessionDep,
    forbidden,
    not_found,
    require,
)
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import SightingPublic

router = APIRouter(prefix="/sightings", tags=["sightings"])
Reader = Annotated[Caller, Depends(require(Role.ADMIN, Role.STATION_OFFICER, Role.AUDITOR))]


def public(row: t.Sighting) -> SightingPublic:
    data = {c: getattr(row, c) for c in SightingPublic.model_fields if c != "has_crop"}
    return SightingPublic.model_validate({**data, "has_crop": row.crop_jpeg is not None})


def _visible(query: sa.Select[t.Sighting], caller: Caller) -> sa.Select[t.Sighting]:
    if caller.scope.everything:
        return query
    stations = caller.scope.stations or frozenset()
    sites = caller.scope.sites or frozenset()
    mine = sa.select(t.Person.id).where(t.Person.station_id.in_(stations))
    return query.where(sa.or_(t.Sighting.site_id.in_(sites), t.Sighting.person_id.in_(mine)))


@router.get("")
def list_sightings(
    session: SessionDep,
    hub: HubDep,
    caller: Reader,
    reason: Reason = None,
    person_id: RowIdQuery = None,
    site_id: Filter = None,
    limit: Limit = 200,
) -> list[SightingPublic]:
    query = sa.select(t.Sighting).order_by(t.Sighting.captured_at, t.Sighting.id)
    query = _visible(query.limit(limit), caller)
    if person_id is not None:
        query = query.where(t.Sighting.person_id == person_id)
    if site_id is not None:
        query = query.where(t.Sighting.site_id == site_id)
    rows = list(session.scalars(query))
    crud.audit(
        session,
        caller.actor,
        "read",
        "sighting",
        None,
        hub.clock(),
        reason,
        person=person_id,
        site=site_id,
        count=len(rows),
    )
    session.commit()
    return [public(r) for r in rows]


def _one(session: SessionDep, caller: Caller, sighting_id: int) -> t.Sighting:
    row = session.scalar(
        _visible(sa.select(t.Sighting).where(t.Sighting.id == sighting_id), caller)
    )
    if row is None:
        if session.get(t.Sighting, sighting_id) is not None:
            raise forbidden(f"sighting {sighting_id}")
        raise not_found(f"sighting {sighting_id}")
    return row


@router.get("/{sighting_id}")
def read_sighting(
    session: SessionDep, hub: HubDep, caller: Reader, sighting_id: RowId, reason: Reason = None
) -> SightingPublic:
    row = _one(session, caller, sighting_id)
    crud.audit(session, caller.actor, "read", "sighting", sighting_id, hub.clock(), reason)
    session.commit()
    return public(row)


@router.get("/{sighting_id}/crop", response_class=Response)
def sighting_crop(
    session: SessionDep, hub: HubDep, caller: Reader, sighting_id: RowId, reason: Reason = None
) -> Response:
    """The live face crop of the sighting (JPEG), 404 when the edge sent none."""
    row = _one(session, caller, sighting_id)
    if row.crop_jpeg is None:
        raise not_found(f"crop of sighting {sighting_id}")
    crud.audit(session, caller.actor, "read", "sighting_crop", sighting_id, hub.clock(), reason)
    session.commit()
    return Response(row.crop_jpeg, media_type="image/jpeg")
