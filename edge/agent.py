"""The edge agent: per camera, frames -> perception -> privacy -> tracker -> rules -> outbox.

- :class:`CameraPipeline` is one camera's chain of stages after perception; ``process`` is a
  short list of stage calls. Frame-size dependent stages are built on the first frame, and a
  zone config pushed from the hub is swapped in whole between two frames (open presences are
  ended first; the tracker keeps its tracks).
- :class:`CameraWorker` is one thread per camera: read the newest frame, analyse it at the
  camera's fps, hand the events to the sink. Per-frame errors are counted, rate-limit logged
  and skipped; one slow camera never stalls another (each has its own thread and source).
- :class:`Agent` wires a site: the durable outbox and uplink, the MQTT client, one
  perception per task set (onnxruntime sessions are safe to share between threads), shed
  sensor subscriptions, hub commands (snapshot, zone config) and the health heartbeat.

World-touching parts sit behind small Protocols (:class:`Analyzer`, :class:`EventSink`,
:class:`Publisher`), so tests drive a pipeline with recorded frames and a list as the sink.

The parts live in :mod:`.pipeline` (one camera's stages and the Protocols), :mod:`.worker`
(one thread per camera), :mod:`.commands` (:class:`Agent`: pipelines, workers, the hub's
commands and shed sensors) and :mod:`.site` (:class:`Site`: everything a running box needs,
built in order and torn down in reverse; :func:`run_site`). This module keeps their names
where callers have always imported them.
"""

from __future__ import annotations

from ringwatch.edge.commands import Agent, ZoneStore, detector_thresholds, shed_config
from ringwatch.edge.pipeline import (
    EVENT_SNAPSHOT_BYTES,
    SNAPSHOT_KINDS,
    Analyzer,
    CameraPipeline,
    EventSink,
    Found,
    Ident,
    Publisher,
    Tunables,
    camera_frame_at,
)
from ringwatch.edge.site import Site, load_analyzers, model_files, person_tiling, run_site
from ringwatch.edge.worker import CameraWorker, Pacer, WorkerStats, is_file_source

__all__ = [
    "EVENT_SNAPSHOT_BYTES",
    "SNAPSHOT_KINDS",
    "Agent",
    "Analyzer",
    "CameraPipeline",
    "CameraWorker",
    "EventSink",
    "Found",
    "Ident",
    "Pacer",
    "Publisher",
    "Site",
    "Tunables",
    "WorkerStats",
    "ZoneStore",
    "camera_frame_at",
    "detector_thresholds",
    "is_file_source",
    "load_analyzers",
    "model_files",
    "person_tiling",
    "run_site",
    "shed_config",
]
