"""Uploads queued clips and snapshots to the hub over HTTP(S), signed with the device's key.

One item at a time, oldest first: POST to ``<hub_url>/api/v1/media/upload`` with the
headers of :func:`ringwatch.contract.media.signed_headers`. The item leaves the
:class:`~ringwatch.edge.clips_queue.MediaQueue` only when the hub answers 2xx with the same
SHA-256 the edge computed; anything else (hub down, link cut, 5xx, a digest that differs)
keeps it and retries after 1, 2, 4 ... ``retry_max_s`` seconds; no answer at all (the hub or
the link is down) pauses the whole queue for that long. A success makes every item due at
once, so the queue drains as soon as the hub is back. A whole file is sent again on
each attempt (clips are a few MB; there are no partial uploads to resume). A 4xx other than
408/429 (a bad key, a rejected item) is logged with the hub's reason and retried at the
longest wait, so a fixed key on the hub lets the queue drain without touching the box.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ringwatch.contract.media import UPLOAD_PATH, signed_headers
from ringwatch.edge.clips_queue import MediaQueue, QueuedMedia
from ringwatch.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UploadResult:
    status: int | None
    body: bytes = b""
    error: str | None = None


class MediaTransport(Protocol):
    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> UploadResult:
        """POST; never raises (errors come back in the result)."""
        ...


class UrllibMediaTransport:
    """The real transport: urllib, HTTPS verified against ``ca_file`` or the system CAs."""

    def __init__(self, ca_file: Path | None = None) -> None:
        self._ssl = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))

    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> UploadResult:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        context = self._ssl if url.startswith("https://") else None
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
                return UploadResult(int(response.status), response.read(64 * 1024))
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode(errors="replace")
            return UploadResult(exc.code, b"", f"HTTP {exc.code}: {detail}"[:500])
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return UploadResult(None, b"", f"{type(exc).__name__}: {exc}"[:500])


def read_key(path: Path) -> bytes:
    """The device's upload key: 64 hex characters (``ringwatch hub device-key`` prints it)."""
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"clips.key_file {path}: need 64 hex characters ({exc})") from None
    if len(key) != 32:
        raise ConfigError(f"clips.key_file {path}: need 64 hex characters, got {len(text)}")
    return key


@dataclass(slots=True)
class UploadStats:
    uploaded: int = 0
    failures: int = 0
    bytes: int = 0
    last_error: str | None = None


class Uploader:
    """Drains a :class:`MediaQueue` to the hub; see the module docstring."""

    def __init__(
        self,
        media: MediaQueue,
        hub_url: str,
        site: str,
        device: str,
        key: bytes,
        transport: MediaTransport | None = None,
        clock: Callable[[], float] = time.time,
        retry_max_s: float = 60.0,
        timeout_s: float = 60.0,
    ) -> None:
        self.media = media
        self.url = hub_url.rstrip("/") + UPLOAD_PATH
        self.site, self.device, self.key = site, device, key
        self.transport = transport or UrllibMediaTransport()
        self.clock = clock
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self.stats = UploadStats()
        self._paused_until = 0.0  # the hub is unreachable: nothing is tried before this

    def step(self) -> bool:
        """Try the oldest due item; True if there was one."""
        if self.clock() < self._paused_until:
            return False
        item = self.media.due(self.clock())
        if item is None:
            return False
        try:
            body = item.path.read_bytes()
        except OSError as exc:
            self._failed(item, f"cannot read {item.path}: {exc}", 4)
            return True
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        headers = signed_headers(self.key, self.site, self.device, item.meta, body, now)
        result = self.transport.post(self.url, body, headers, self.timeout_s)
        self._settle(item, result)
        return True

    def run(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:  # the uploader must outlive any one bad item
                log.exception("media upload round failed")
                busy = False
            if not busy:
                stop.wait(idle_s)

    def _settle(self, item: QueuedMedia, result: UploadResult) -> None:
        if result.status is not None and 200 <= result.status < 300:
            confirmed = _confirmed_digest(result.body)
            if confirmed == item.sha256 and self.media.confirm(item.id, item.sha256):
                self.stats.uploaded += 1
                self.stats.bytes += item.size
                self.media.retry_all()
                self._paused_until = 0.0
                return
            self._failed(item, f"hub confirmed digest {confirmed!r}, ours is {item.sha256}", 0)
            return
        hard = result.status is not None and 400 <= result.status < 500
        hard = hard and result.status not in (408, 429)
        wait = self._failed(item, result.error or f"HTTP {result.status}", 99 if hard else 0)
        if result.status is None:  # no answer at all: the link or the hub is down
            self._paused_until = self.clock() + wait

    def _failed(self, item: QueuedMedia, error: str, extra: int) -> float:
        wait = min(2.0 ** (item.attempts + extra), self.retry_max_s)
        self.media.failed(item.id, self.clock() + wait, error)
        self.stats.failures += 1
        self.stats.last_error = error
        if item.attempts == 0 or extra:
            log.warning("media %s not uploaded (retry in %.0f s): %s", item.id, wait, error)
        return wait


def _confirmed_digest(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    digest = answer.get("sha256") if isinstance(answer, dict) else None
    return digest if isinstance(digest, str) else None
