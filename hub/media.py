"""Evidence media on the hub: verifying signed uploads, the on-disk store, and retention.

- :func:`authenticate` checks an upload's headers (:mod:`ringwatch.contract.media`): a
  known device, a fresh timestamp, the device's own HMAC over the metadata and digest.
- :class:`MediaStore` keeps files under ``settings.media_dir/<site>/<day>/<id>.<ext>``:
  written to a temporary name, fsynced and renamed before the row is committed, and checked
  against the stored SHA-256 on every read (a changed file is refused, never served).
- :func:`purge_media` deletes media past ``events_days`` unless it shows a confirmed
  incident (kept as evidence, like its events), and audits how many went.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from ringwatch.contract.media import (
    CONTENT_TYPES,
    H_DEVICE,
    H_DIGEST,
    H_META,
    H_SIGNATURE,
    H_TIME,
    MAX_CLOCK_SKEW_S,
    UPLOAD_PATH,
    MediaKind,
    MediaMeta,
    device_key,
    sign,
    valid_digest,
)
from ringwatch.errors import RingwatchError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.clock import Clock
from ringwatch.hub.crud import Actor
from ringwatch.hub.db import SessionFactory
from ringwatch.hub.incident_config import RetentionConfig
from ringwatch.hub.incident_tables import Incident, IncidentPoint
from ringwatch.hub.media_tables import MediaEvent, MediaItem

log = logging.getLogger(__name__)
RETENTION = Actor("hub-retention", "system")


class UploadRefused(RingwatchError):
    """An upload the hub will not take; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MediaCorrupt(RingwatchError):
    """A stored file is missing or no longer matches its digest."""


@dataclass(frozen=True, slots=True)
class Upload:
    meta: MediaMeta
    digest: str


def authenticate(
    session: Session, evidence_key: str | None, headers: dict[str, str], now: dt.datetime
) -> Upload:
    """The upload's metadata if its headers are complete, fresh and signed by the device."""
    if evidence_key is None:
        raise UploadRefused(403, "media uploads are off: set evidence_key in the hub settings")
    missing = [h for h in (H_DEVICE, H_TIME, H_META, H_DIGEST, H_SIGNATURE) if not headers.get(h)]
    if missing:
        raise UploadRefused(401, f"missing headers: {', '.join(missing)}")
    who, at, meta_json, digest = (headers[h] for h in (H_DEVICE, H_TIME, H_META, H_DIGEST))
    site, _, device = who.partition("/")
    if session.get(t.Device, (site, device)) is None:
        raise UploadRefused(403, f"unknown device {who!r}")
    expected = sign(device_key(evidence_key, site, device), "POST", UPLOAD_PATH, who, at,
                    meta_json, digest)  # fmt: skip
    if not hmac.compare_digest(expected, headers[H_SIGNATURE]):
        raise UploadRefused(401, f"bad signature for device {who!r}")
    _check_time(at, now)
    if not valid_digest(digest):
        raise UploadRefused(400, f"{H_DIGEST} must be 64 lower-case hex characters")
    try:
        meta = MediaMeta.model_validate_json(meta_json)
    except ValidationError as exc:
        raise UploadRefused(400, f"{H_META}: {exc.errors()[0]['msg']}") from None
    if (meta.site, meta.device) != (site, device):
        raise UploadRefused(403, f"device {who!r} may not upload for {meta.site}/{meta.device}")
    if meta.kind is MediaKind.CROP:
        raise UploadRefused(400, "crops arrive with face events, not as uploads")
    return Upload(meta, digest)


def _check_time(at: str, now: dt.datetime) -> None:
    try:
        sent = dt.datetime.fromisoformat(at)
    except ValueError:
        raise UploadRefused(400, f"{H_TIME} is not an ISO time: {at[:40]!r}") from None
    if sent.tzinfo is None or abs((now - sent).total_seconds()) > MAX_CLOCK_SKEW_S:
        raise UploadRefused(401, f"{H_TIME} {at[:40]} is more than {MAX_CLOCK_SKEW_S} s off")


class MediaStore:
    """The media folder; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root  # folders are made on the first upload

    def temp(self) -> Path:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        return self.root / "tmp" / f"{uuid.uuid4().hex}.part"

    def place(self, tmp: Path, meta: MediaMeta) -> str:
        """Move a received file into place durably; returns its path relative to the root."""
        ext = "mp4" if meta.kind is MediaKind.CLIP else "jpg"
        rel = f"{meta.site}/{meta.started_at.date().isoformat()}/{meta.media_id}.{ext}"
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return rel

    def read(self, item: MediaItem) -> bytes:
        """The file's bytes, refused if missing or changed since it was received."""
        try:
            data = (self.root / item.path).read_bytes()
        except OSError as exc:
            raise MediaCorrupt(f"media {item.id}: file missing ({exc.strerror})") from None
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise MediaCorrupt(f"media {item.id}: file changed since it was received")
        return data

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)


def record(session: Session, upload: Upload, rel: str, size: int, now: dt.datetime) -> MediaItem:
    """Insert the media row and its event links (caller commits)."""
    meta = upload.meta
    item = MediaItem(
        id=meta.media_id,
        kind=meta.kind.value,
        content_type=CONTENT_TYPES[meta.kind],
        site_id=meta.site,
        device_id=meta.device,
        camera_id=meta.camera,
        started_at=meta.started_at.astimezone(dt.UTC),
        ended_at=meta.ended_at.astimezone(dt.UTC),
        frames=meta.frames,
        width=meta.width,
        height=meta.height,
        size=size,
        sha256=upload.digest,
        path=rel,
        received_at=now,
    )
    session.add(item)
    session.flush()  # the item row before its links (no ORM relationship orders them)
    session.add_all(MediaEvent(media_id=meta.media_id, event_id=e) for e in set(meta.event_ids))
    return item


def media_of_events(session: Session, event_ids: list[str]) -> list[MediaItem]:
    """Every uploaded item showing one of ``event_ids``, oldest first."""
    if not event_ids:
        return []
    ids = sa.select(MediaEvent.media_id).where(MediaEvent.event_id.in_(event_ids))
    query = sa.select(MediaItem).where(MediaItem.id.in_(ids))
    return list(session.scalars(query.order_by(MediaItem.started_at, MediaItem.id)))


def describe(item: MediaItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "content_type": item.content_type,
        "url": f"/api/v1/media/{item.id}",
        "camera": item.camera_id,
        "device": item.device_id,
        "started_at": item.started_at,
        "ended_at": item.ended_at,
        "duration_s": round((item.ended_at - item.started_at).total_seconds(), 2),
        "width": item.width,
        "height": item.height,
        "size": item.size,
        "sha256": item.sha256,
    }


def purge_media(
    session: Session, store: MediaStore, config: RetentionConfig, now: dt.datetime
) -> int:
    """Delete media past ``events_days`` (kept: media of confirmed incidents); audited."""
    cut = now - dt.timedelta(days=config.events_days)
    query = sa.select(MediaItem).where(MediaItem.received_at < cut)
    if config.keep_confirmed:
        confirmed = (
            sa.select(MediaEvent.media_id)
            .join(IncidentPoint, IncidentPoint.event_id == MediaEvent.event_id)
            .join(Incident, Incident.id == IncidentPoint.incident_id)
            .where(Incident.status == "confirmed")
        )
        query = query.where(MediaItem.id.not_in(confirmed))
    rows = list(session.scalars(query))
    for row in rows:
        session.delete(row)
    session.flush()
    for row in rows:
        store.delete(row.path)
    if rows:
        crud.audit(session, RETENTION, "purge", "media", None, now, None, media=len(rows))
    return len(rows)


class MediaRetention:
    """Runs :func:`purge_media` every ``every_s`` seconds in a thread of its own."""

    def __init__(
        self,
        sessions: SessionFactory,
        store: MediaStore,
        config: RetentionConfig,
        clock: Clock,
        every_s: float = 3600.0,
    ) -> None:
        self.sessions, self.store, self.config, self.clock = sessions, store, config, clock
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-media-retention", daemon=True)

    def start(self) -> MediaRetention:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self) -> int:
        with self.sessions.begin() as session:
            return purge_media(session, self.store, self.config, self.clock())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("media retention round failed; trying again later")
            self._stop.wait(self.every_s)
