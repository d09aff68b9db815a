"""Running a site: the models, the durable outbox and uplink, the broker client, the
cameras, clips and the heartbeat, built in order by :class:`Site` and torn down in reverse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ringwatch import __version__
from ringwatch.edge.commands import Agent, ZoneStore, detector_thresholds, shed_config
from ringwatch.edge.config import CameraConfig, PersonTiling, SiteConfig, Thresholds
from ringwatch.edge.mqtt import Message

if TYPE_CHECKING:
    from ringwatch.edge.capture import FrameSource
    from ringwatch.edge.clips_site import SiteClips
    from ringwatch.models.perception import Perception
    from ringwatch.models.tiling import Tiling

log = logging.getLogger("ringwatch.edge.agent")  # one logger for the agent's parts


def load_analyzers(
    config: SiteConfig, models_dir: Path
) -> tuple[dict[str, Perception], list[Path]]:
    """One perception per distinct task set (shared by cameras), and the model files used."""
    from ringwatch.models.perception import Perception
    from ringwatch.models.runtime import RuntimeOptions

    m = config.models
    options = RuntimeOptions(m.provider.value, m.threads, m.concurrent_runs)
    thresholds = detector_thresholds(m.thresholds, shed_config(m.thresholds, config.shed))
    by_tasks: dict[tuple[frozenset[str], Tiling, float], Perception] = {}
    analyzers: dict[str, Perception] = {}
    for cam in config.cameras:
        key = _analyzer_key(cam, thresholds)
        if key not in by_tasks:
            by_tasks[key] = Perception.from_models_dir(
                models_dir,
                options,
                thresholds.model_copy(update={"person": key[2]}),
                set(key[0]),
                m.person_model,
                key[1],
                m.faces_in_persons,
                m.fit_face_canvas,
                m.fit_person_canvas,
            )
        analyzers[cam.id] = by_tasks[key]
    return analyzers, model_files(config, models_dir)


def _analyzer_key(
    cam: CameraConfig, thresholds: Thresholds
) -> tuple[frozenset[str], Tiling, float]:
    """Cameras with the same key share one model set: their tasks, and for persons their
    tiling and person score (without persons those do not matter)."""
    from ringwatch.models.tiling import Tiling

    if "persons" not in cam.tasks:
        return frozenset(cam.tasks), Tiling("off"), thresholds.person
    return frozenset(cam.tasks), person_tiling(cam), person_threshold(cam, thresholds)


def person_tiling(cam: CameraConfig) -> Tiling:
    """The camera's tiling setting as the models library takes it."""
    return tiling_of(cam.person_tiling)


def tiling_of(t: PersonTiling) -> Tiling:
    """A ``person_tiling`` setting as the models library takes it (an unset tile follows
    the frame: ``Tiling.side``)."""
    from ringwatch.models.tiling import Tiling

    return Tiling(mode=t.mode, tile=t.tile, overlap=t.overlap)


def person_threshold(cam: CameraConfig, thresholds: Thresholds) -> float:
    """The camera's person score (:func:`tiling_threshold` of its ``person_tiling``)."""
    return tiling_threshold(cam.person_tiling, thresholds)


def tiling_threshold(t: PersonTiling, thresholds: Thresholds) -> float:
    """A ``person_tiling`` setting's person score: its ``threshold`` (set only with mode on
    or auto; for auto whatever the frame size), else the site's."""
    return t.threshold if t.threshold is not None else thresholds.person


def model_files(config: SiteConfig, models_dir: Path) -> list[Path]:
    from ringwatch.models.install import model_path
    from ringwatch.models.manifest import load_manifest

    manifest = load_manifest()
    tasks = {t for cam in config.cameras for t in cam.tasks}
    names = {
        "faces": ["yunet", "sface"],
        "persons": [config.models.person_model],
        "fire": ["fire_smoke"],
    }
    return [model_path(manifest.get(n), models_dir) for t in sorted(tasks) for n in names[t]]


def _on_message(handler: Callable[[str, bytes], None]) -> Callable[[Message], None]:
    def on_message(message: Message) -> None:
        handler(message.topic, message.payload)

    return on_message


class Site:
    """Everything a running box needs, as a context manager: ``__enter__`` builds the parts in
    order (models, outbox, broker client, uplink, camera sources, agent and clips, broker
    subscriptions, the uplink pump, the camera workers, the metrics endpoint), each step
    registering how it is undone; ``__exit__`` (or a step that fails halfway) stops and undoes
    what was built, in reverse. :meth:`serve` sends the heartbeat until ``stop`` is set.

    ``built`` and ``torn_down`` name the steps, in the order they happened (the tests and the
    log read them)."""

    def __init__(
        self, config: SiteConfig, models_dir: Path, stop: threading.Event, *, once: bool = False
    ) -> None:
        self.config, self.models_dir, self.stop, self.once = config, models_dir, stop, once
        self.built: list[str] = []
        self.torn_down: list[str] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Site:
        try:
            self._build()
        except BaseException:
            self.stop.set()
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._stack.close()

    def _undo(self, step: str, undo: Callable[[], object]) -> None:
        """``step`` is built: ``undo`` runs when the site is torn down (in reverse order); an
        undo that fails is logged and the others still run."""
        self.built.append(step)

        def run() -> None:
            self.torn_down.append(step)
            try:
                undo()
            except Exception:
                log.exception("tearing down %s failed", step)

        self._stack.callback(run)

    def _build(self) -> None:
        from ringwatch.edge.capture import open_source
        from ringwatch.edge.metrics import MetricsServer
        from ringwatch.edge.outbox import Outbox
        from ringwatch.edge.uplink import Uplink, device_client
        from ringwatch.models.install import sha256_of

        config, stop = self.config, self.stop
        site, device = config.site, config.device
        analyzers, files = load_analyzers(config, self.models_dir)
        self.shas = {f.name: sha256_of(f) for f in files}
        self.built.append("models")
        self.outbox = outbox = Outbox(config.outbox.path, config.outbox.max_events)
        self._undo("outbox", outbox.close)
        self.client = client = device_client(config.broker, site, device, __version__)
        self._undo("broker client", client.close)
        self.uplink = uplink = Uplink(outbox, client, site, device, config.outbox.receipt_timeout_s)
        self._undo("uplink", uplink.pump)  # hand over what the cameras queued while stopping
        self.sources: dict[str, FrameSource] = {}
        sources = self.sources
        for c in config.cameras:
            sources[c.id] = source = open_source(c.source, loop=c.loop, realtime=c.realtime)
            self._undo(f"source {c.id}", source.close)
        store = ZoneStore(config.outbox.path.parent / "zones")
        embedders = {cid: p.embedder for cid, p in analyzers.items()}
        self.agent = agent = Agent(config, analyzers, sources, uplink, client, store, embedders)
        self.built.append("agent")
        if config.clips is not None:  # issue 14: finish open clips; queued ones stay on disk
            clips = _site_clips(config, agent)
            self._undo("clips", clips.close)
        for topic, handler in agent.subscriptions():
            client.subscribe(topic, _on_message(handler))
        uplink.start()
        client.start()
        self.built.append("broker connection")
        if config.home_assistant is not None:  # issue 18: Home Assistant discovery (opt-in)
            from ringwatch.edge.homeassistant import start_discovery

            start_discovery(client, config)
        pump = threading.Thread(target=uplink.run, args=(stop,), name="uplink", daemon=True)
        pump.start()
        self._undo("uplink pump", lambda: pump.join(timeout=5))
        agent.start(stop)

        def stop_workers() -> None:
            stop.set()
            agent.join(timeout=10)

        self._undo("camera workers", stop_workers)
        if self.once:  # issue 18: edge run --once
            from ringwatch.edge.replay import stop_when_replayed

            stop_when_replayed(sources, outbox, stop)
        self.metrics = None
        if config.metrics is not None:
            self.metrics = metrics = MetricsServer(config.metrics.host, config.metrics.port)
            self._undo("metrics", metrics.close)
        self.started = dt.datetime.now(dt.UTC)

    def serve(self) -> None:
        """The heartbeat (and the metrics page) every ``health_interval_s`` until ``stop``."""
        from ringwatch.edge.health import (
            CameraStats,
            broker_metrics,
            build_health,
            clock_synced,
            prometheus_text,
        )

        config = self.config
        while not self.stop.wait(config.health_interval_s):
            cams = [
                CameraStats(cid, st, w.fps(time.monotonic()), w.latency_ms, w.frame_errors)
                for cid, (st, w) in self.agent.camera_status().items()
            ]
            health = build_health(
                site=config.site,
                device=config.device,
                version=__version__,
                at=dt.datetime.now(dt.UTC),
                started_at=self.started,
                models=self.shas,
                cameras=cams,
                outbox=self.outbox.stats(),
                bad_messages=self.agent.bad_messages + self.uplink.counters().bad_messages,
                clock_synced=clock_synced(),
            )
            self.uplink.put_health(health)
            if self.metrics is not None:
                self.metrics.publish(prometheus_text(health) + broker_metrics(health, self.client))


def run_site(
    config: SiteConfig, models_dir: Path, stop: threading.Event, *, once: bool = False
) -> None:
    """Run every camera of ``config`` until ``stop`` is set; deliver through the outbox.
    ``once``: stop by itself when every video file has ended (``edge run --once``)."""
    with Site(config, models_dir, stop, once=once) as site:
        site.serve()


def _site_clips(config: SiteConfig, agent: Agent) -> SiteClips:
    """Issue 14: evidence clips for every camera, and their uploader (edge/clips_site.py)."""
    from ringwatch.edge.clips_site import SiteClips

    assert config.clips is not None
    fps = {c.id: c.fps for c in config.cameras}
    return SiteClips(config.clips, config.site, config.device, fps, agent.pipelines).start()
