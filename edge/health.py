"""The device heartbeat: a contract :class:`Health` message built from counters passed in.

:func:`build_health` is pure (everything, the time included, is an argument), so the agent
loop gathers counters from capture, pipeline and uplink and tests check the result directly.
:class:`RateMeter` measures a camera's analysed fps; :func:`clock_synced` asks the system
whether NTP has synchronised the clock; :func:`prometheus_text` renders a heartbeat for an
optional ``/metrics`` endpoint.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ringwatch.contract.messages import CameraHealth, Health
from ringwatch.edge.capture import SourceStatus
from ringwatch.edge.outbox import OutboxStats
from ringwatch.mqtt import MqttClient

TIME_ERROR = 5  # adjtimex(2): clock not synchronised


@dataclass(frozen=True, slots=True)
class CameraStats:
    """One camera's figures for a heartbeat: its source's status plus the pipeline's."""

    camera: str
    source: SourceStatus
    fps: float
    latency_ms: float
    frame_errors: int = 0


def build_health(
    *,
    site: str,
    device: str,
    version: str,
    at: dt.datetime,
    started_at: dt.datetime,
    models: Mapping[str, str],
    cameras: Sequence[CameraStats],
    outbox: OutboxStats,
    bad_messages: int,
    clock_synced: bool | None,
) -> Health:
    """The heartbeat message; ``models`` maps model file -> sha256."""
    return Health(
        site=site,
        device=device,
        at=at,
        agent_version=version,
        uptime_s=max(0.0, (at - started_at).total_seconds()),
        models=dict(models),
        cameras=[_camera(c) for c in cameras],
        outbox_depth=outbox.depth,
        outbox_dropped=outbox.dropped + outbox.refused,
        bad_messages=bad_messages,
        clock_synced=clock_synced,
        outbox_quarantined=outbox.quarantined,
        outbox_damage=None if outbox.damage is None else outbox.damage[:500],
    )


def _camera(c: CameraStats) -> CameraHealth:
    return CameraHealth(
        camera=c.camera,
        online=c.source.online,
        fps=round(max(0.0, c.fps), 2),
        latency_ms=round(max(0.0, c.latency_ms), 1),
        dropped_frames=c.source.dropped,
        reconnects=c.source.reconnects,
        frame_errors=c.frame_errors,
    )


class RateMeter:
    """Events per second over the last ``window_s`` seconds (times are passed in)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self._window:
            self._times.popleft()


Runner = Callable[[list[str]], str]


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=2, check=True).stdout


def clock_synced(run: Runner = _run) -> bool | None:
    """True/False from ``timedatectl`` (systemd) or the kernel's adjtimex; None if unknown."""
    try:
        answer = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"]).strip()
        if answer in ("yes", "no"):
            return answer == "yes"
    except (OSError, subprocess.SubprocessError):
        pass
    return _adjtimex_synced()


def _adjtimex_synced() -> bool | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def broker_metrics(health: Health, client: MqttClient) -> str:
    """The box's broker link for the metrics page: connected, and refused (the broker shuts
    the login out, e.g. the hub's flood quarantine; the outbox keeps the events)."""
    base = f'site="{health.site}",device="{health.device}"'
    return (
        f"ringwatch_broker_connected{{{base}}} {int(client.connected)}\n"
        f"ringwatch_broker_refused{{{base}}} {int(client.refused_now is not None)}\n"
    )


def prometheus_text(health: Health) -> str:
    """A heartbeat in Prometheus' text exposition format."""
    base = f'site="{health.site}",device="{health.device}"'
    lines = [
        f"ringwatch_uptime_seconds{{{base}}} {health.uptime_s:g}",
        f"ringwatch_outbox_depth{{{base}}} {health.outbox_depth}",
        f"ringwatch_outbox_dropped_total{{{base}}} {health.outbox_dropped}",
        f"ringwatch_bad_messages_total{{{base}}} {health.bad_messages}",
    ]
    if health.clock_synced is not None:
        lines.append(f"ringwatch_clock_synced{{{base}}} {int(health.clock_synced)}")
    for cam in health.cameras:
        labels = f'{base},camera="{cam.camera}"'
        lines += [
            f"ringwatch_camera_online{{{labels}}} {int(cam.online)}",
            f"ringwatch_camera_fps{{{labels}}} {cam.fps:g}",
            f"ringwatch_camera_latency_ms{{{labels}}} {cam.latency_ms:g}",
            f"ringwatch_camera_dropped_frames_total{{{labels}}} {cam.dropped_frames}",
            f"ringwatch_camera_reconnects_total{{{labels}}} {cam.reconnects}",
        ]
    return "\n".join(lines) + "\n"
