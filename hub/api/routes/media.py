"""Evidence media: edge uploads (signed per device), an incident's media list, one item's
bytes, and the case export. Reads are scoped like the events the media show (a station
officer sees the media of their sites' events, a property manager only shed media, a
technician no face media) and every read is audited."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from ringwatch.contract.media import MAX_MEDIA_BYTES, SIGNED_HEADERS
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import Caller, CallerDep, HubDep, SessionDep, forbidden, not_found
from ringwatch.hub.api.routes.events import may_see_event
from ringwatch.hub.api.routes.incidents import _one
from ringwatch.hub.app import Hub
from ringwatch.hub.incident_tables import Incident, IncidentPoint
from ringwatch.hub.media import (
    MediaCorrupt,
    MediaStore,
    Upload,
    UploadRefused,
    authenticate,
    describe,
    media_of_events,
    record,
)
from ringwatch.hub.media_tables import MediaEvent, MediaItem
from ringwatch.hub.roles import Role
from ringwatch.hub.terms import DEFAULT_LANGUAGE, LANGUAGES

router = APIRouter(tags=["media"])
CROP_READERS = frozenset({Role.ADMIN, Role.STATION_OFFICER, Role.AUDITOR})


def store_of(hub: Hub) -> MediaStore:
    store: MediaStore | None = getattr(hub, "media", None)
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "media store is not running")
    return store


@router.post("/media/upload", status_code=status.HTTP_201_CREATED)
async def upload(request: Request, hub: HubDep) -> dict[str, Any]:
    """One clip or snapshot from an edge box (see ``ringwatch.contract.media``); answers
    the stored digest, which the edge compares before deleting its copy."""
    store = store_of(hub)
    upload = await run_in_threadpool(_authenticate, hub, request)
    tmp = store.temp()
    digest, size = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_MEDIA_BYTES:
                    raise UploadRefused(413, f"larger than {MAX_MEDIA_BYTES} bytes")
                digest.update(chunk)
                fh.write(chunk)
        if digest.hexdigest() != upload.digest:
            raise UploadRefused(
                400, "body does not match its X-Content-SHA256 (damaged in transit)"
            )
        return await run_in_threadpool(_store, hub, store, upload, tmp, size)
    except UploadRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    finally:
        tmp.unlink(missing_ok=True)


def _authenticate(hub: Hub, request: Request) -> Upload:
    headers = {h: request.headers.get(h, "") for h in SIGNED_HEADERS}  # case-insensitive
    with hub.sessions() as session:
        try:
            return authenticate(session, hub.settings.evidence_key, headers, hub.clock())
        except UploadRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None


def _store(hub: Hub, store: MediaStore, upload: Upload, tmp: Path, size: int) -> dict[str, Any]:
    with hub.sessions.begin() as session:
        known = session.get(MediaItem, upload.meta.media_id)
        if known is not None:  # a retry after our answer was lost: same bytes, same answer
            if known.sha256 != upload.digest:
                raise UploadRefused(409, f"media {known.id} exists with other content")
            return {"id": known.id, "sha256": known.sha256, "size": known.size}
        rel = store.place(tmp, upload.meta)
        item = record(session, upload, rel, size, hub.clock())
        who = crud.Actor(f"{upload.meta.site}/{upload.meta.device}", "device")
        crud.audit(session, who, "upload", "media", item.id, hub.clock(), kind=item.kind,
                   sha256=item.sha256, size=size)  # fmt: skip
        return {"id": item.id, "sha256": item.sha256, "size": size}


def _events(session: SessionDep, incident_id: str) -> list[str]:
    rows = session.scalars(
        sa.select(IncidentPoint.event_id).where(
            IncidentPoint.incident_id == incident_id, IncidentPoint.event_id.is_not(None)
        )
    )
    return sorted({r for r in rows if r is not None})


def may_see_media(session: SessionDep, caller: Caller, item: MediaItem) -> bool:
    """True if the caller may see one of the stored events the item shows."""
    if caller.scope.everything and caller.role in (Role.ADMIN, Role.AUDITOR):
        return True
    ids = sa.select(MediaEvent.event_id).where(MediaEvent.media_id == item.id)
    events = session.scalars(sa.select(t.Event).where(t.Event.id.in_(ids)))
    return any(may_see_event(caller, e) for e in events)


def incident_media(session: SessionDep, caller: Caller, incident_id: str) -> list[dict[str, Any]]:
    """Uploaded clips and snapshots, event snapshots and (for readers of sightings) face
    crops of one incident the caller may see."""
    _one(session, caller, incident_id)
    event_ids = _events(session, incident_id)
    items = [describe(m) for m in media_of_events(session, event_ids)
             if may_see_media(session, caller, m)]  # fmt: skip
    shots = session.scalars(
        sa.select(t.Event).where(t.Event.id.in_(event_ids), t.Event.snapshot_jpeg.is_not(None))
    )
    for event in shots:
        if may_see_event(caller, event):
            items.append(_snapshot(event))
    if caller.role in CROP_READERS:
        items += [_crop(s) for s in _sightings(session, incident_id)]
    return items


def _snapshot(event: t.Event) -> dict[str, Any]:
    return {
        "id": f"event-{event.id}",
        "kind": "snapshot",
        "content_type": "image/jpeg",
        "url": f"/api/v1/dashboard/events/{event.id}/snapshot",
        "camera": event.camera_id,
        "started_at": event.captured_at,
        "event_id": event.id,
    }


def _sightings(session: SessionDep, incident_id: str) -> list[t.Sighting]:
    ids = sa.select(IncidentPoint.sighting_id).where(IncidentPoint.incident_id == incident_id)
    query = sa.select(t.Sighting).where(t.Sighting.id.in_(ids), t.Sighting.crop_jpeg.is_not(None))
    return list(session.scalars(query.order_by(t.Sighting.captured_at)))


def _crop(s: t.Sighting) -> dict[str, Any]:
    return {
        "id": f"sighting-{s.id}",
        "kind": "crop",
        "content_type": "image/jpeg",
        "url": f"/api/v1/sightings/{s.id}/crop",
        "camera": s.camera_id,
        "started_at": s.captured_at,
        "similarity": s.similarity,
        "threshold": s.threshold,
    }


@router.get("/incidents/{incident_id}/media")
def list_incident_media(
    session: SessionDep, hub: HubDep, caller: CallerDep, incident_id: str
) -> list[dict[str, Any]]:
    """Every media item of the incident: ``kind`` clip|snapshot|crop, ``content_type``,
    ``url`` (audited)."""
    items = incident_media(session, caller, incident_id)
    crud.audit(session, caller.actor, "read", "incident_media", incident_id, hub.clock(),
               items=len(items))  # fmt: skip
    session.commit()
    return items


@router.get("/media/{media_id}", response_class=Response)
def read_media(session: SessionDep, hub: HubDep, caller: CallerDep, media_id: str) -> Response:
    """One clip or snapshot's bytes, checked against its digest (audited)."""
    item = session.get(MediaItem, media_id)
    if item is None:
        raise not_found(f"media {media_id}")
    if not may_see_media(session, caller, item):
        raise forbidden(f"media {media_id}")
    try:
        data = store_of(hub).read(item)
    except MediaCorrupt as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None
    crud.audit(session, caller.actor, "read", "media", media_id, hub.clock(), kind=item.kind)
    session.commit()
    headers = {"Cache-Control": "no-store", "X-Content-SHA256": item.sha256}
    return Response(data, media_type=item.content_type, headers=headers)


EXPORT_LANGUAGES = LANGUAGES  # en, zh-CN


def may_export(session: SessionDep, caller: Caller, incident_id: str) -> Incident:
    """The incident if the caller may see everything an export of it holds: the incident,
    and for a watch-list case its sightings and the person (station scope)."""
    row = _one(session, caller, incident_id)
    sightings = _sightings(session, incident_id) or session.scalar(
        sa.select(IncidentPoint.id).where(
            IncidentPoint.incident_id == incident_id, IncidentPoint.sighting_id.is_not(None)
        )
    )
    if row.person_id is None and not sightings:
        return row
    if caller.role not in CROP_READERS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"role {caller.role.value} may not see the watch-list evidence this export holds",
        )
    person = None if row.person_id is None else session.get(t.Person, row.person_id)
    if person is not None and not caller.scope.sees_station(person.station_id):
        raise forbidden(f"person {person.id} of incident {incident_id}")
    return row


@router.get("/incidents/{incident_id}/export", response_class=Response)
def export_incident(
    session: SessionDep,
    hub: HubDep,
    caller: CallerDep,
    incident_id: str,
    lang: str = DEFAULT_LANGUAGE,
) -> Response:
    """The signed case file (ZIP), its summary in ``lang`` (en or zh-CN); audited with the
    manifest's digest."""
    from ringwatch.hub.export import ExportInput, build_export, signing_key

    lang = {code.lower(): code for code in EXPORT_LANGUAGES}.get(lang.lower(), lang)
    if lang not in EXPORT_LANGUAGES:
        raise HTTPException(422, f"lang must be one of {', '.join(EXPORT_LANGUAGES)}")
    row = may_export(session, caller, incident_id)

    def visible(obj: Any) -> bool:
        if isinstance(obj, MediaItem):
            return may_see_media(session, caller, obj)
        return bool(may_see_event(caller, obj))

    now = hub.clock()
    spec = ExportInput(row, visible, caller.role in CROP_READERS, lang, caller.actor.name, now)
    try:
        data, digest = build_export(
            session, store_of(hub), hub.cipher, signing_key(hub.settings), spec
        )
    except MediaCorrupt as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None
    crud.audit(session, caller.actor, "export", "incident", incident_id, now,
               manifest_sha256=digest, bytes=len(data), lang=lang)  # fmt: skip
    session.commit()
    name = f"case-{incident_id}.zip"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(data, media_type="application/zip", headers=headers)
