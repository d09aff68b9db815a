"""The media upload contract: how an edge box sends a clip or snapshot to the hub over HTTP(S).

Clips are too big for MQTT, so the edge POSTs each file to ``/api/v1/media/upload`` with
its metadata in headers, signed with the device's own key (HMAC-SHA256). The hub derives
each device's key from its ``evidence_key`` (:func:`device_key`), so one box's key opens no
other box's uploads, and a stolen key is replaced by rotating only that device's key id.

The signature covers the method, path, timestamp and every metadata header plus the body's
SHA-256, so nothing can be swapped in transit; the timestamp bounds replays (the hub also
de-duplicates by media id). The hub answers ``{"id", "sha256", "size"}``; the edge deletes
its copy only when that digest equals its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ringwatch.contract.zones import Ident

UPLOAD_PATH = "/api/v1/media/upload"
MAX_MEDIA_BYTES = 200 * 1024 * 1024
MAX_CLOCK_SKEW_S = 300
H_DEVICE = "X-Ringwatch-Device"
H_TIME = "X-Ringwatch-Time"
H_META = "X-Ringwatch-Media"
H_DIGEST = "X-Content-SHA256"
H_SIGNATURE = "X-Ringwatch-Signature"
SIGNED_HEADERS = (H_DEVICE, H_TIME, H_META, H_DIGEST, H_SIGNATURE)
_KEY_INFO = b"ringwatch media upload v1\x00"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class MediaKind(StrEnum):
    CLIP = "clip"
    SNAPSHOT = "snapshot"
    CROP = "crop"


CONTENT_TYPES = {MediaKind.CLIP: "video/mp4", MediaKind.SNAPSHOT: "image/jpeg"}


class MediaMeta(BaseModel):
    """What a clip or snapshot is: sent as JSON in the ``X-Ringwatch-Media`` header."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    media_id: str = Field(pattern=r"^[0-9a-f-]{36}$", description="UUIDv7, idempotency key.")
    kind: MediaKind
    site: Ident
    device: Ident
    camera: Ident
    event_ids: list[str] = Field(
        min_length=1, max_length=256, description="The alert events the media shows."
    )
    started_at: dt.datetime = Field(description="First frame, UTC.")
    ended_at: dt.datetime = Field(description="Last frame, UTC.")
    frames: int = Field(default=1, ge=1, le=100_000)
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)


def device_key(evidence_key: str, site: str, device: str) -> bytes:
    """The per-device upload key (HMAC-SHA256 of the device's name under the hub's key)."""
    return hmac.new(
        evidence_key.encode(), _KEY_INFO + f"{site}/{device}".encode(), "sha256"
    ).digest()


def canonical(method: str, path: str, device: str, at: str, meta: str, digest: str) -> bytes:
    return "\n".join((method.upper(), path, device, at, meta, digest)).encode()


def sign(key: bytes, method: str, path: str, device: str, at: str, meta: str, digest: str) -> str:
    """Hex HMAC-SHA256 over the canonical request."""
    return hmac.new(key, canonical(method, path, device, at, meta, digest), "sha256").hexdigest()


def signed_headers(
    key: bytes, site: str, device: str, meta: MediaMeta, body: bytes, now: dt.datetime
) -> dict[str, str]:
    """Every header an upload needs, signed."""
    digest = hashlib.sha256(body).hexdigest()
    at = now.astimezone(dt.UTC).isoformat()
    meta_json = meta.model_dump_json()
    who = f"{site}/{device}"
    return {
        H_DEVICE: who,
        H_TIME: at,
        H_META: meta_json,
        H_DIGEST: digest,
        H_SIGNATURE: sign(key, "POST", UPLOAD_PATH, who, at, meta_json, digest),
        "Content-Type": CONTENT_TYPES.get(meta.kind, "application/octet-stream"),
    }


def valid_digest(value: str) -> bool:
    return bool(_HEX64.match(value))
