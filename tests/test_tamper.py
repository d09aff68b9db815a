"""Camera tamper (edge/tamper.py) on real footage altered with ffmpeg at test time (black
frames, a blurred lens, a shifted view; nothing is committed), the agent's hook, and the
technical incident the hub makes of it."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ringwatch.contract.messages import Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.edge.config import TamperConfig
from ringwatch.edge.rules import EventStamp
from ringwatch.edge.tamper import Tamper, TamperWatch
from tests.test_incidents import Desk, alerts, desk, event  # noqa: F401  (desk: a fixture)

T0 = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
STAMP = EventStamp("campus-n", "box-1", "gate", 690, 388)
# 12 s (16 s) of the Town Centre street (the 4.1 s clip looped); from 6 s on, altered.
ALTERATIONS = {
    "normal": None,
    "black": "drawbox=c=black:t=fill:enable='gte(t,6)'",
    "blur": "boxblur=12:enable='gte(t,6)'",
    "shift": "crop=w=iw*0.6:h=ih*0.6:x='if(gte(t,6),iw*0.4,0)':y='if(gte(t,6),ih*0.4,0)',"
    "scale=690:388",
    "blink": "drawbox=c=black:t=fill:enable='between(t,6,7)'",  # 1 s: a bird, a bus
    "covered_then_back": "drawbox=c=black:t=fill:enable='between(t,6,10.5)'",
}


@pytest.fixture(scope="module")
def clips(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    source = data_dir / "video/towncentre_clip_example01.mp4"
    folder = tmp_path_factory.mktemp("tamper-clips")
    made = {}
    for name, vf in ALTERATIONS.items():
        out = folder / f"{name}.mp4"
        cmd = ["/usr/bin/ffmpeg", "-v", "error", "-y", "-stream_loop", "3", "-i", str(source)]
        cmd += ["-an", "-t", "16" if name == "covered_then_back" else "12"]
        cmd += [*(["-vf", vf] if vf else []), "-c:v", "libx264", "-preset", "ultrafast", str(out)]
        subprocess.run(cmd, check=True, timeout=120)
        made[name] = out
    return made


def frames(path: Path, fps: float = 5.0) -> Iterator[tuple[dt.datetime, np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    native = cap.get(cv2.CAP_PROP_FPS)
    step, index = max(1, round(native / fps)), 0
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                return
            if index % step == 0:
                yield T0 + dt.timedelta(seconds=index / native), image
            index += 1
    finally:
        cap.release()


def replay(path: Path, config: TamperConfig | None = None) -> list[Event]:
    watch = TamperWatch(config or TamperConfig())
    return [e for at, image in frames(path) for e in watch.observe(image, STAMP, at)]


def seconds(e: Event) -> float:
    return (e.captured_at - T0).total_seconds()


@pytest.mark.data
@pytest.mark.parametrize(
    ("clip", "what"),
    [("black", Tamper.COVERED), ("blur", Tamper.DEFOCUSED), ("shift", Tamper.TURNED)],
)
def test_each_kind_of_tamper_raises_one_event_after_the_hold_time(
    clips: dict[str, Path], clip: str, what: Tamper
) -> None:
    [start] = replay(clips[clip])
    assert start.kind is EventKind.TAMPER and start.phase is Phase.START
    assert start.detail is not None and start.detail.startswith(f"camera {what.value}:")
    assert 9.0 <= seconds(start) <= 9.6  # altered at 6 s, held 3 s
    assert set(start.scores) == {"brightness", "edges", "scene"}


@pytest.mark.data
def test_the_untouched_street_and_a_one_second_blackout_raise_nothing(
    clips: dict[str, Path],
) -> None:
    assert replay(clips["normal"]) == []  # people walking, the clip jumping back at each loop
    assert replay(clips["blink"]) == []


@pytest.mark.data
def test_a_cover_removed_ends_the_tamper_after_the_clear_time(clips: dict[str, Path]) -> None:
    start, end = replay(clips["covered_then_back"])
    assert start.phase is Phase.START and end.phase is Phase.END
    assert 9.0 <= seconds(start) <= 9.6
    assert 15.5 <= seconds(end) <= 16.0  # uncovered at 10.5 s, normal for clear_s (5 s)
    assert end.detail == "camera view restored (was covered)"


def test_the_reference_is_learnt_first_and_a_stop_ends_an_open_tamper() -> None:
    rng = np.random.default_rng(7)
    scene = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    watch = TamperWatch(TamperConfig(learn_s=1.0, hold_s=0.5, clear_s=1.0))
    at = [T0 + dt.timedelta(seconds=0.2 * i) for i in range(40)]
    black = np.zeros_like(scene)
    assert [watch.observe(black, STAMP, t) for t in at[:3]] == [[], [], []]  # learning only
    watch = TamperWatch(TamperConfig(learn_s=1.0, hold_s=0.5, clear_s=1.0))
    out = [e for t in at[:10] for e in watch.observe(scene, STAMP, t)]
    out += [e for t in at[10:20] for e in watch.observe(black, STAMP, t)]
    assert [e.phase for e in out] == [Phase.START] and watch.tampered is Tamper.COVERED
    [end] = watch.close(STAMP, at[20])
    assert end.phase is Phase.END and end.detail == "camera stopped" and watch.tampered is None


def test_tamper_is_off_unless_the_camera_asks_for_it() -> None:
    from ringwatch.edge.config import CameraConfig

    plain = CameraConfig.model_validate({"id": "gate", "source": "x.mp4"})
    asked = CameraConfig.model_validate({"id": "gate", "source": "x.mp4", "tamper": {}})
    assert plain.tamper is None and asked.tamper == TamperConfig()


@pytest.mark.data
def test_the_agent_pipeline_emits_tamper_events_with_a_snapshot(clips: dict[str, Path]) -> None:
    from ringwatch.contract.zones import CameraZones
    from ringwatch.edge.agent import CameraPipeline, Ident
    from ringwatch.edge.capture import Frame
    from ringwatch.models.detections import Detections

    class NothingFound:
        faces = persons = fire = Detections.empty()

    pipeline = CameraPipeline(
        Ident("campus-n", "box-1", "gate"), CameraZones(), tamper=TamperWatch(TamperConfig())
    )
    events = []
    for i, (at, image) in enumerate(frames(clips["black"])):
        frame = Frame(image, i, (at - T0).total_seconds(), at.timestamp())
        events += pipeline.process(frame, NothingFound())
    [start] = [e for e in events if e.kind is EventKind.TAMPER]
    assert start.snapshot_jpeg is not None  # the technician sees what the camera sees
    ended = pipeline.close(T0 + dt.timedelta(seconds=13))
    assert [e.phase for e in ended if e.kind is EventKind.TAMPER] == [Phase.END]


def test_the_hub_makes_a_technical_incident_for_the_technicians(desk: Desk) -> None:  # noqa: F811
    detail = "camera covered: brightness 2% and edges 1% of the reference view, scene match 0.01"
    desk.send(event(EventKind.TAMPER, 0, "gate", detail=detail))
    desk.send(event(EventKind.TAMPER, 5, "gate", detail=detail, phase="update"))
    [incident] = _tamper(desk)
    assert incident.status == "open" and incident.camera_id == "gate"
    assert incident.detail == {"finding": detail}
    assert [a.recipient for a in alerts(desk, incident.id)] == ["technicians"]
    tech = desk.users["tech"]
    board = desk.client.get("/api/v1/incidents", headers=tech).json()
    assert [i["kind"] for i in board] == ["camera_tamper"]
    assert desk.client.get("/api/v1/incidents", headers=desk.users["north-officer"]).json() == []
    desk.send(event(EventKind.TAMPER, 20, "gate", phase="end", detail="camera view restored"))
    [incident] = _tamper(desk)
    assert incident.status == "closed"


def _tamper(desk: Desk) -> list[Any]:  # noqa: F811
    from ringwatch.hub.incident_tables import Incident

    return desk.rows(Incident, Incident.kind == "camera_tamper")
