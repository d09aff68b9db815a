"""Evidence clips on the edge: pre-roll bounds, when a clip ends, a real ffmpeg H.264 MP4 with
the privacy mask burnt in, the durable media queue, and the signed uploader's retries."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.media import MediaKind, MediaMeta
from ringwatch.contract.messages import AlertLevel, Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.contract.zones import Mask
from ringwatch.edge.clips import CameraClips, CameraRef, ClipWindow, PreRoll, Shot
from ringwatch.edge.clips_queue import MediaQueue, MediaQueueFull
from ringwatch.edge.clips_upload import Uploader, UploadResult
from ringwatch.edge.config import ClipsConfig
from ringwatch.edge.privacy import PrivacyMask
from tests.services import wait_for

T0 = dt.datetime(2026, 11, 29, 22, 0, tzinfo=dt.UTC).timestamp()


def event(kind: EventKind, phase: Phase, at: float, track: int = 1) -> Event:
    return Event(
        event_id=new_event_id(),
        captured_at=dt.datetime.fromtimestamp(at, dt.UTC),
        site="campus",
        device="box-1",
        camera="gate",
        kind=kind,
        phase=phase,
        zone_id="yard",
        track_id=track,
        level=AlertLevel.ALARM if kind is EventKind.SHED else None,
        frame_width=320,
        frame_height=240,
    )


def shot(at: float, size: int = 1000) -> Shot:
    return Shot(at, b"x" * size, 320, 240)


def test_pre_roll_is_bounded_by_time_frames_and_bytes() -> None:
    roll = PreRoll(seconds=2.0, max_frames=100, max_bytes=10**9)
    for i in range(50):
        roll.add(shot(T0 + i * 0.2))
    assert len(roll) == 11 and roll.shots()[0].at == pytest.approx(T0 + 7.8)
    few = PreRoll(seconds=60, max_frames=5, max_bytes=10**9)
    for i in range(20):
        few.add(shot(T0 + i))
    assert len(few) == 5
    small = PreRoll(seconds=60, max_frames=100, max_bytes=3500)
    for i in range(20):
        small.add(shot(T0 + i))
    assert len(small) == 3 and small.bytes == 3000


@pytest.mark.parametrize(
    ("script", "ends_at"),
    [
        # an intrusion stays open until its end, then 10 s of post-roll
        ([(0, EventKind.INTRUSION, Phase.START), (20, EventKind.INTRUSION, Phase.END)], 30),
        # a line crossing is instant: 10 s after it
        ([(0, EventKind.LINE_CROSSING, Phase.START)], 10),
        # a face seen again extends the clip
        ([(0, EventKind.FACE, Phase.START), (6, EventKind.FACE, Phase.UPDATE)], 16),
        # an intrusion that never ends is cut at the cap (60 s from the first pre-roll frame)
        ([(0, EventKind.INTRUSION, Phase.START)], 55),
    ],
)
def test_clip_window_ends_post_roll_after_the_last_activity_or_at_the_cap(
    script: list[tuple[float, EventKind, Phase]], ends_at: float
) -> None:
    window = ClipWindow(started_at=T0 - 5, post_roll_s=10, max_s=60)
    ended = None
    for step in range(0, 120):
        at = T0 + step
        window.absorb([event(k, p, at) for s, k, p in script if s == step], at)
        if window.done(at):
            ended = step
            break
    assert ended == ends_at


class ListSink:
    def __init__(self) -> None:
        self.items: list[tuple[MediaMeta, bytes]] = []

    def put(self, meta: MediaMeta, data: bytes) -> None:
        self.items.append((meta, data))


def probe(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,pix_fmt,width,height,nb_frames:format=duration", "-of",
         "default=noprint_wrappers=1", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_an_intrusion_records_pre_to_post_roll_as_masked_h264(tmp_path: Path) -> None:
    import cv2

    config = ClipsConfig(pre_roll_s=2, post_roll_s=2, max_s=60)
    sink = ListSink()
    clips = CameraClips(CameraRef("campus", "box-1", "gate"), config, 5.0, sink, tmp_path)
    mask = PrivacyMask.for_frame([Mask(id="w", polygon=[(0.5, 0), (1, 0), (1, 0.5), (0.5, 0.5)])],
                                 (320, 240))  # fmt: skip
    rng = np.random.default_rng(1)
    start = end = crossing = None
    for i in range(50):  # 10 s at 5 fps: intrusion from 4 s to 6 s, a line crossed at 5 s
        at = T0 + i / 5
        evs = []
        if i == 20:
            start = event(EventKind.INTRUSION, Phase.START, at)
            evs.append(start)
        if i == 25:
            crossing = event(EventKind.LINE_CROSSING, Phase.START, at, track=7)
            evs.append(crossing)
        if i == 30:
            end = event(EventKind.INTRUSION, Phase.END, at)
            evs.append(end)
        evs.append(event(EventKind.ZONE, Phase.START, at, track=i))  # not a clip kind
        image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        clips.observe(image, at, evs, mask)
        wait_for(lambda: clips.backlog < 3, 10, "the clips thread")  # never faster than it
    clips.close()
    assert start is not None and end is not None and crossing is not None
    kinds = [m.kind for m, _ in sink.items]
    # the crossing gets a snapshot (the intrusion event carries its own), one clip for both
    assert kinds == [MediaKind.SNAPSHOT, MediaKind.CLIP], clips.stats
    assert sink.items[0][0].event_ids == [crossing.event_id]
    meta, data = sink.items[1]
    assert meta.event_ids == [start.event_id, crossing.event_id] and meta.frames == 31
    # pre-roll from 2 s before the start (t=4 s) to 2 s after the end (t=6 s)
    assert meta.started_at.timestamp() == pytest.approx(T0 + 2.0, abs=0.01)
    assert meta.ended_at.timestamp() == pytest.approx(T0 + 8.0, abs=0.01)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    info = probe(path)
    assert (info["codec_name"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["width"], info["height"]) == ("320", "240")
    assert float(info["duration"]) == pytest.approx(6.2, abs=0.25)
    assert data[:64].find(b"ftyp") >= 0 and data.find(b"moov") < data.find(b"mdat")  # faststart
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    assert float(frame[10:110, 170:310].std()) < 15 < float(frame[130:230, 10:150].std())
    snap = cv2.imdecode(np.frombuffer(sink.items[0][1], np.uint8), cv2.IMREAD_COLOR)
    assert snap is not None
    assert float(snap[10:110, 170:310].std()) < 15 < float(snap[130:230, 10:150].std())
    assert clips.stats.dropped_frames == 0 and clips.stats.clip_errors == 0


def test_a_shed_sensor_alarm_without_a_frame_records_from_the_pre_roll(tmp_path: Path) -> None:
    config = ClipsConfig(pre_roll_s=1, post_roll_s=1)
    sink = ListSink()
    clips = CameraClips(CameraRef("campus", "box-1", "shed"), config, 4.0, sink, tmp_path)
    image = np.full((120, 160, 3), 90, np.uint8)
    for i in range(8):
        clips.observe(image, T0 + i / 4, [], None)
        if i == 4:
            clips.alert([event(EventKind.SHED, Phase.START, T0 + i / 4)])
    clips.close()
    assert [m.kind for m, _ in sink.items] == [MediaKind.CLIP]  # the event has the snapshot


def test_a_clips_thread_that_falls_behind_drops_frames_instead_of_holding_the_camera(
    tmp_path: Path,
) -> None:
    sink = ListSink()
    clips = CameraClips(CameraRef("campus", "box-1", "gate"), ClipsConfig(), 5.0, sink, tmp_path)
    image = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    for i in range(60):  # far faster than the thread can JPEG-encode 1080p frames
        clips.observe(image, T0 + i / 5, [], None)
    clips.close()
    assert clips.stats.dropped_frames > 0
    assert clips.stats.frames + clips.stats.dropped_frames == 60
    assert clips.stats.preroll_frames <= 27  # 5 s at 5 fps (+2), whatever came through
    assert sink.items == []  # no alert, no clip


def meta(kind: MediaKind = MediaKind.CLIP) -> MediaMeta:
    at = dt.datetime.fromtimestamp(T0, dt.UTC)
    return MediaMeta(
        media_id=new_event_id(), kind=kind, site="campus", device="box-1", camera="gate",
        event_ids=[new_event_id()], started_at=at, ended_at=at, width=320, height=240,
    )  # fmt: skip


def test_media_queue_bound_drops_snapshots_first_and_refuses_the_oversized(
    tmp_path: Path,
) -> None:
    q = MediaQueue(tmp_path, max_bytes=3000)
    clip, snap = meta(), meta(MediaKind.SNAPSHOT)
    q.put(clip, b"c" * 1000)
    q.put(snap, b"s" * 1000)
    q.put(clip, b"again")  # the same id twice is one item
    newer = meta()
    q.put(newer, b"n" * 1500)  # pushes out the snapshot, not the older clip
    assert q.stats().depth == 2 and q.stats().dropped == 1
    first = q.due(time.time())
    assert first is not None and first.id == clip.media_id
    with pytest.raises(MediaQueueFull, match="queue_max_mb"):
        q.put(meta(), b"x" * 3001)
    assert q.stats().refused == 1
    assert not q.confirm(clip.media_id, "0" * 64)  # a wrong digest keeps it
    assert q.confirm(clip.media_id, hashlib.sha256(b"c" * 1000).hexdigest())
    assert not (tmp_path / "files" / f"{clip.media_id}.mp4").exists()
    q.close()


def test_media_queue_recovers_after_a_crash_between_file_and_row(tmp_path: Path) -> None:
    q = MediaQueue(tmp_path, max_bytes=10**6)
    kept = meta()
    q.put(kept, b"kept")
    q.close()
    (tmp_path / "files" / "orphan.mp4.tmp").write_bytes(b"half written")
    gone = meta()
    q = MediaQueue(tmp_path, max_bytes=10**6)
    q.put(gone, b"gone")
    q.close()
    (tmp_path / "files" / f"{gone.media_id}.mp4").unlink()
    q = MediaQueue(tmp_path, max_bytes=10**6)
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [f"{kept.media_id}.mp4"]
    stats = q.stats()
    assert (stats.depth, stats.lost) == (1, 1)
    q.close()


class ScriptedHub:
    """Answers uploads from a script: None (link down), a status, or 'wrong' (bad digest)."""

    def __init__(self, script: list[int | str | None]) -> None:
        self.script = script
        self.seen: list[dict[str, str]] = []

    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> UploadResult:
        self.seen.append(headers)
        answer = self.script.pop(0) if self.script else 201
        if answer is None:
            return UploadResult(None, b"", "ConnectionRefusedError")
        digest = hashlib.sha256(body).hexdigest() if answer != "wrong" else "0" * 64
        code = 201 if answer == "wrong" else int(answer)
        return UploadResult(code, json.dumps({"sha256": digest}).encode())


def test_uploader_retries_with_backoff_and_deletes_only_on_the_same_digest(
    tmp_path: Path,
) -> None:
    q = MediaQueue(tmp_path, max_bytes=10**6)
    item = meta()
    q.put(item, b"clip bytes")
    now = [T0]
    hub = ScriptedHub([None, 503, "wrong", 201])
    up = Uploader(q, "http://hub", "campus", "box-1", b"k" * 32, hub, clock=lambda: now[0])
    waits = []
    while q.stats().depth:
        if not up.step():
            now[0] += 0.5
            continue
        row = q.due(now[0] + 1000)
        if row is not None:
            waits.append(q._db.execute("SELECT next_at FROM media").fetchone()[0] - now[0])
    assert waits == [1.0, 2.0, 4.0]
    assert len(hub.seen) == 4 and {h["X-Ringwatch-Device"] for h in hub.seen} == {"campus/box-1"}
    assert up.stats.uploaded == 1 and q.stats().uploaded == 1
    q.close()


def test_uploader_thread_stops_when_asked(tmp_path: Path) -> None:
    q = MediaQueue(tmp_path, max_bytes=10**6)
    up = Uploader(q, "http://hub", "campus", "box-1", b"k" * 32, ScriptedHub([]))
    stop = threading.Event()
    thread = threading.Thread(target=up.run, args=(stop, 0.05))
    thread.start()
    q.put(meta(), b"later")
    wait_for(lambda: q.stats().depth == 0, 5, "the queue to drain")
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    q.close()
