"""What the hub watches on devices: last heartbeats and outbox sizes into findings (pure)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from ringwatch.hub.stages import (
    IncidentKind,
)


@dataclass(frozen=True, slots=True)
class Finding:
    """A technical problem (or its end) seen by :class:`TechnicalWatch`."""

    kind: IncidentKind
    site: str
    device: str
    camera: str | None
    since: dt.datetime
    detail: str
    resolved: bool = False

    @property
    def key(self) -> str:
        return f"{self.device}/{self.camera or '-'}"


@dataclass
class TechnicalWatch:
    """Offline devices and cameras, and growing outboxes, from the devices' heartbeats.

    Pure: feed it each device's last-seen time and last health with ``now``; it remembers
    since when a camera has been offline and the outbox depths of successive heartbeats.
    """

    offline_after: dt.timedelta
    rising_samples: int
    _camera_down: dict[tuple[str, str, str], dt.datetime] = field(default_factory=dict)
    _depths: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)

    def fresh(self) -> TechnicalWatch:
        """The same watch with nothing remembered (another worker kept the watch)."""
        return TechnicalWatch(self.offline_after, self.rising_samples)

    def observe(
        self,
        site: str,
        device: str,
        last_seen: dt.datetime | None,
        health: dict[str, Any] | None,
        now: dt.datetime,
    ) -> list[Finding]:
        found: list[Finding | None] = [self._device(site, device, last_seen, now)]
        if health is not None:
            found += self._cameras(site, device, health, now)
            found.append(self._outbox(site, device, health, now))
        return [f for f in found if f is not None]

    def _device(
        self, site: str, device: str, last_seen: dt.datetime | None, now: dt.datetime
    ) -> Finding:
        kind = IncidentKind.DEVICE_OFFLINE
        if last_seen is not None and now - last_seen > self.offline_after:
            detail = f"no message from {site}/{device} since {last_seen.isoformat()}"
            return Finding(kind, site, device, None, last_seen, detail)
        return Finding(kind, site, device, None, now, "back online", resolved=True)

    def _cameras(
        self, site: str, device: str, health: dict[str, Any], now: dt.datetime
    ) -> list[Finding]:
        found: list[Finding] = []
        for camera in health.get("cameras", []):
            key = (site, device, str(camera.get("camera")))
            kind = IncidentKind.CAMERA_OFFLINE
            if camera.get("online", True):
                self._camera_down.pop(key, None)
                found.append(Finding(kind, site, device, key[2], now, "online", resolved=True))
                continue
            since = self._camera_down.setdefault(key, now)
            if now - since > self.offline_after:
                found.append(Finding(kind, site, device, key[2], since, "camera offline"))
        return found

    def _outbox(
        self, site: str, device: str, health: dict[str, Any], now: dt.datetime
    ) -> Finding | None:
        depths = self._depths.setdefault((site, device), [])
        at, depth = str(health.get("at")), int(health.get("outbox_depth", 0))
        if not depths or depths[-1][0] != at:
            depths.append((at, depth))
            del depths[: -self.rising_samples]
        values = [d for _, d in depths]
        kind = IncidentKind.OUTBOX_GROWING
        if len(values) == self.rising_samples and all(a < b for a, b in itertools.pairwise(values)):
            return Finding(kind, site, device, None, now, f"outbox depth rising: {values}")
        if values and values[-1] == 0:
            return Finding(kind, site, device, None, now, "outbox drained", resolved=True)
        return None
