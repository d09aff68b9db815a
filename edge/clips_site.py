"""Wires evidence clips into a running site: one :class:`CameraClips` per camera, the media
queue, and the uploader thread (started by ``run_site`` when the site file has ``clips:``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Protocol

from ringwatch.edge.clips import CameraClips, CameraRef
from ringwatch.edge.clips_queue import MediaQueue
from ringwatch.edge.clips_upload import Uploader, UrllibMediaTransport, read_key
from ringwatch.edge.config import ClipsConfig

log = logging.getLogger(__name__)


class HasClips(Protocol):
    clips: CameraClips | None


class SiteClips:
    """Everything clip-related of one box; :meth:`close` finishes open clips first."""

    def __init__(
        self,
        config: ClipsConfig,
        site: str,
        device: str,
        fps: Mapping[str, float],
        pipelines: Mapping[str, HasClips],
    ) -> None:
        self.config = config
        self.media = MediaQueue(config.queue_dir, config.queue_max_mb * 1024 * 1024)
        self.cameras: dict[str, CameraClips] = {}
        for cid, rate in fps.items():
            ref = CameraRef(site, device, cid)
            clips = CameraClips(ref, config, rate, self.media, config.queue_dir / "work")
            self.cameras[cid] = clips
            pipelines[cid].clips = clips
        self.uploader: Uploader | None = None
        if config.hub_url is not None:
            if config.key_file is None:
                log.error("clips.hub_url is set without clips.key_file: clips stay queued")
            else:
                transport = UrllibMediaTransport(config.ca_file)
                self.uploader = Uploader(
                    self.media, config.hub_url, site, device, read_key(config.key_file),
                    transport, retry_max_s=config.retry_max_s,
                )  # fmt: skip
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SiteClips:
        if self.uploader is not None:
            self._thread = threading.Thread(
                target=self.uploader.run, args=(self._stop,), name="media-upload", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        for clips in self.cameras.values():
            clips.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=70)
        self.media.close()
