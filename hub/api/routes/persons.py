"""The watch list: persons, their photos (enrolled face templates). Station officers see
and edit only their stations' persons; admins all; auditors read. Every read, search and
change is audited, with the caller's ``X-Reason`` where given."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ringwatch.contract.colours import Tier
from ringwatch.errors import InputError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    MAX_ROW_ID,
    Caller,
    Filter,
    HubDep,
    Reason,
    RowId,
    SessionDep,
    forbidden,
    not_found,
    require,
)
from ringwatch.hub.registry import MAX_PHOTO_BYTES, EnrolmentRefused, parse_subject
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import PersonCreate, PersonPublic, PersonUpdate, TemplatePublic

router = APIRouter(prefix="/persons", tags=["watch list"])
Reader = Annotated[Caller, Depends(require(Role.ADMIN, Role.STATION_OFFICER, Role.AUDITOR))]
Editor = Annotated[Caller, Depends(require(Role.ADMIN, Role.STATION_OFFICER))]


def public(person: t.Person, templates: int, today: dt.date) -> PersonPublic:
    # No enrolled photo (e.g. the only one was refused): nothing to match against.
    matchable = person.tier != Tier.GREEN.value and person.review_due >= today and templates > 0
    return PersonPublic.model_validate(
        {
            **{c: getattr(person, c) for c in _COLUMNS},
            "matchable": matchable,
            "templates": templates,
        }
    )


_COLUMNS = [c.name for c in t.Person.__table__.columns]


def _template_counts(session: Session, ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        sa.select(t.Template.person_id, sa.func.count())
        .where(t.Template.person_id.in_(ids))
        .group_by(t.Template.person_id)
    )
    return {int(pid): int(n) for pid, n in rows}


def _person(session: Session, caller: Caller, person_id: int) -> t.Person:
    person = session.get(t.Person, person_id)
    if person is None:
        raise not_found(f"person {person_id}")
    if not caller.scope.sees_station(person.station_id):
        raise forbidden(f"person {person_id}")
    return person


@router.get("")
def list_persons(
    session: SessionDep,
    hub: HubDep,
    caller: Reader,
    reason: Reason = None,
    q: Filter = None,
    tier: Tier | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PersonPublic]:
    """List (or, with ``q``, search by name or case reference) the persons in scope."""
    query = sa.select(t.Person).order_by(t.Person.id).limit(limit)
    if caller.scope.stations is not None:
        query = query.where(t.Person.station_id.in_(caller.scope.stations))
    if q:
        like = f"%{q.lower()}%"
        query = query.where(
            sa.or_(
                sa.func.lower(t.Person.display_name).like(like),
                sa.func.lower(t.Person.case_reference).like(like),
            )
        )
    if tier is not None:
        query = query.where(t.Person.tier == tier.value)
    persons = list(session.scalars(query))
    action = "search" if q else "read"
    ids = [p.id for p in persons]
    now = hub.clock()
    crud.audit(session, caller.actor, action, "person", None, now, reason, q=q, ids=ids)
    session.commit()
    counts = _template_counts(session, ids)
    return [public(p, counts.get(p.id, 0), now.date()) for p in persons]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_person(
    session: SessionDep, hub: HubDep, caller: Editor, body: PersonCreate, reason: Reason = None
) -> PersonPublic:
    if body.tier is Tier.GREEN:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "tier green means delisted")
    if not caller.scope.sees_station(body.station_id):
        raise forbidden(f"station {body.station_id}")
    if session.get(t.Station, body.station_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown station {body.station_id}"
        )
    now = hub.clock()
    try:
        person = crud.create_person(session, body, caller.actor, now)
    except InputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    session.commit()
    return public(person, 0, now.date())


@router.get("/{person_id}")
def read_person(
    session: SessionDep, hub: HubDep, caller: Reader, person_id: RowId, reason: Reason = None
) -> PersonPublic:
    person = _person(session, caller, person_id)
    now = hub.clock()
    crud.audit(session, caller.actor, "read", "person", person_id, now, reason)
    session.commit()
    return public(person, _template_counts(session, [person_id]).get(person_id, 0), now.date())


@router.patch("/{person_id}")
def update_person(
    session: SessionDep, hub: HubDep, caller: Editor, person_id: RowId, body: PersonUpdate
) -> PersonPublic:
    """Edit, review (a new ``review_due``) or delist (``tier: green``); ``why`` is audited."""
    person = _person(session, caller, person_id)
    now = hub.clock()
    try:
        crud.update_person(session, person, body, caller.actor, now)
    except InputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    session.commit()
    return public(person, _template_counts(session, [person_id]).get(person_id, 0), now.date())


@router.post("/{person_id}/photos", status_code=status.HTTP_201_CREATED)
def enrol_photo(
    session: SessionDep,
    hub: HubDep,
    caller: Editor,
    person_id: RowId,
    photo: UploadFile,
    reason: Reason = None,
    point: str | None = None,
    box: str | None = None,
) -> TemplatePublic:
    """Enrol one face of a photo: the face at ``point=x,y`` or in ``box=x1,y1,x2,y2`` (photo
    pixels), else the largest; 422 with ``code`` and ``message`` if refused (undecodable,
    no_face, several_faces, no_face_at_point, no_face_in_box, bad_subject, cut_off,
    too_small, low_quality, empty, too_large)."""
    person = _person(session, caller, person_id)
    data = photo.file.read(MAX_PHOTO_BYTES + 1)  # sync route: runs in the thread pool
    try:
        subject = parse_subject(point, box)
        face = hub.enroller().enrol(data, photo.filename or "photo", subject)
    except EnrolmentRefused as exc:
        detail: dict[str, object] = {"code": exc.code, "message": str(exc)}
        if exc.faces is not None:
            detail["faces"] = exc.faces  # boxes to click on (x1, y1, x2, y2, photo pixels)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    row = crud.add_template(
        session,
        person,
        hub.cipher.encrypt_embedding(face.embedding),
        hub.cipher.encrypt(face.crop_jpeg),
        face.quality,
        face.photo_sha256,
        caller.actor,
        hub.clock(),
    )
    session.commit()
    return TemplatePublic.model_validate(row)


class LiveShot(BaseModel):
    """A sighting of this person, confirmed by the officer, to enrol as one more template."""

    model_config = ConfigDict(extra="forbid")

    sighting_id: int = Field(
        ge=1, le=MAX_ROW_ID, description="The confirmed sighting whose face crop to use."
    )
    consent: str = Field(
        min_length=10, max_length=500, description="The officer's recorded consent and basis."
    )


@router.post("/{person_id}/photos/from-sighting", status_code=status.HTTP_201_CREATED)
def enrol_live_shot(
    session: SessionDep, hub: HubDep, caller: Editor, person_id: RowId, body: LiveShot
) -> TemplatePublic:
    """Enrol the live face crop of a confirmed sighting of this person as a template (more
    templates per person raise recognition; docs/faces.md), with the consent recorded. The
    same refusals as a photo (cut_off, too_small, low_quality...), plus ``no_crop``."""
    person = _person(session, caller, person_id)
    sighting = session.get(t.Sighting, body.sighting_id)
    if sighting is None or sighting.person_id != person_id:
        raise not_found(f"sighting {body.sighting_id} of person {person_id}")
    if not sighting.crop_jpeg:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"code": "no_crop", "message": f"sighting {sighting.id} keeps no face crop"},
        )
    try:
        face = hub.enroller().enrol(sighting.crop_jpeg, f"sighting {sighting.id}")
    except EnrolmentRefused as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, {"code": exc.code, "message": str(exc)}
        ) from None
    encrypted = (
        hub.cipher.encrypt_embedding(face.embedding),
        hub.cipher.encrypt(face.crop_jpeg),
        face.quality,
        face.photo_sha256,
    )
    row = crud.add_live_template(
        session, person, sighting, encrypted, body.consent, caller.actor, hub.clock()
    )
    session.commit()
    return TemplatePublic.model_validate(row)


@router.get("/{person_id}/photos")
def list_photos(
    session: SessionDep, hub: HubDep, caller: Reader, person_id: RowId, reason: Reason = None
) -> list[TemplatePublic]:
    _person(session, caller, person_id)
    rows = session.scalars(sa.select(t.Template).where(t.Template.person_id == person_id))
    out = [TemplatePublic.model_validate(r) for r in rows]
    crud.audit(
        session, caller.actor, "read", "template", None, hub.clock(), reason, person=person_id
    )
    session.commit()
    return out


def _template(session: Session, person_id: int, template_id: int) -> t.Template:
    row = session.get(t.Template, template_id)
    if row is None or row.person_id != person_id:
        raise not_found(f"photo {template_id} of person {person_id}")
    return row


@router.get("/{person_id}/photos/{template_id}/image", response_class=Response)
def photo_image(
    session: SessionDep,
    hub: HubDep,
    caller: Reader,
    person_id: RowId,
    template_id: RowId,
    reason: Reason = None,
) -> Response:
    """The enrolled face crop (JPEG), decrypted."""
    _person(session, caller, person_id)
    row = _template(session, person_id, template_id)
    crud.audit(session, caller.actor, "read", "template", template_id, hub.clock(), reason)
    session.commit()
    return Response(hub.cipher.decrypt(row.crop_enc), media_type="image/jpeg")


@router.delete("/{person_id}/photos/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_photo(
    session: SessionDep,
    hub: HubDep,
    caller: Editor,
    person_id: RowId,
    template_id: RowId,
    reason: Reason = None,
) -> None:
    _person(session, caller, person_id)
    crud.delete_template(
        session, _template(session, person_id, template_id), caller.actor, hub.clock(), reason
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "photo is in use") from None
