"""Hostile payloads at ingest (issue 11): JSON bombs, times out of bounds, image bombs,
control characters, and the received counter. A real hub on SQLite, no MQTT (the fuzz
suite in test_fuzz_payloads.py drives a real broker)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from ringwatch.contract.errors import ContractError
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.images import ImageRefused, check_image, image_size
from ringwatch.contract.messages import (
    Event,
    SnapshotReply,
    TimeBounds,
    TimeOutOfBounds,
    decode,
)
from ringwatch.contract.topics import EventKind, event_topic, health_topic, sensor_topic
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.db import WriteTurns
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats, lenient_event_id, strip_biometrics
from ringwatch.hub.intake import SAMPLES_PER_MINUTE, Intake, bound_heap
from ringwatch.hub.mqtt import IngestWorker
from ringwatch.hub.registry import EnrolmentRefused, PhotoEnroller, decode_image
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.zone_configs import Snapshot
from tests.hub_fixtures import create_admin, database, hub_config, settings, token

BOMB = b"[" * 5000 + b"]" * 5000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[TestClient, Hub]]:
    with database("sqlite", tmp_path, None) as url:
        create_admin(url)
        app = create_app(settings(url), hub_config(), ingest=False)
        with TestClient(app) as client:
            yield client, app.state.hub


def _event_json(at: dt.datetime | str, **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": new_event_id(),
        "captured_at": at if isinstance(at, str) else at.isoformat(),
        "site": "campus-n",
        "device": "box-1",
        "camera": "gate",
        "kind": "intrusion",
        "phase": "start",
        "frame_width": 640,
        "frame_height": 480,
        **extra,
    }


TOPIC = event_topic("campus-n", "box-1", EventKind.INTRUSION)


def _inbound(body: dict[str, Any]) -> Inbound:
    return Inbound(TOPIC, json.dumps(body).encode())


def _stored(hub: Hub) -> set[str]:
    with hub.sessions.begin() as session:
        return set(session.scalars(sa.select(t.Event.id)))


def _dead(hub: Hub) -> list[t.DeadLetter]:
    with hub.sessions.begin() as session:
        return list(session.scalars(sa.select(t.DeadLetter).order_by(t.DeadLetter.id)))


def test_deeply_nested_json_is_dead_lettered_with_the_rest_of_its_batch_stored(
    hub: tuple[TestClient, Hub],
) -> None:
    _, app_hub = hub
    now = app_hub.clock()
    good = [_event_json(now), _event_json(now)]
    named = _event_json(now)
    wrapped = (
        (b'{"event_id": "' + named["event_id"].encode() + b'", "x": ' + b"[" * 900)
        + b"]" * 900
        + b"}"
    )
    assert strip_biometrics(BOMB).startswith("(not a JSON object")
    assert lenient_event_id(BOMB) is None
    stats = IngestStats()
    ingestor = Ingestor(app_hub.sessions, app_hub.matcher, app_hub.clock, stats)
    batch = [_inbound(good[0]), Inbound(TOPIC, BOMB), Inbound(TOPIC, wrapped), _inbound(good[1])]
    result = ingestor.ingest(batch)  # raised RecursionError before
    assert _stored(app_hub) == {g["event_id"] for g in good}
    assert sorted(result.dead) == ["invalid", "invalid"]
    dead = _dead(app_hub)
    assert all(len(d.payload) < 3000 and "recursion" in d.detail.lower() for d in dead)
    # the wrapped one still names its event: receipted, so the device stops re-sending it
    assert named["event_id"] in result.receipts[("campus-n", "box-1")]
    assert stats.snapshot()["received"] == 4 and stats.dead_letters == 2


class FailOnce:
    """An incidents hook that fails the first batch (the worker then goes one by one)."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, events: list[Event], now: dt.datetime, session: Session) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("first batch fails")


def test_received_counts_each_message_once_when_a_batch_is_taken_one_by_one(
    hub: tuple[TestClient, Hub],
) -> None:
    _, app_hub = hub
    stats = IngestStats()
    hook = FailOnce()
    ingestor = Ingestor(app_hub.sessions, app_hub.matcher, app_hub.clock, stats, hook)
    worker = IngestWorker(ingestor, app_hub.clock, retry_s=(0.01, 0.02))
    batch = [_inbound(_event_json(app_hub.clock())) for _ in range(3)]
    worker.process(batch)
    assert hook.failed and len(_stored(app_hub)) == 3
    assert stats.snapshot()["received"] == 3  # was 6: the failed batch, then each again


def _sensor(at: str) -> Inbound:
    body = {
        "site": "campus-n",
        "shed": "shed-1",
        "bay": "b1",
        "current_a": 1.0,
        "voltage_v": 48.0,
        "temperature_c": 20.0,
        "measured_at": at,
    }
    return Inbound(sensor_topic("campus-n", "shed-1", "b1"), json.dumps(body).encode())


def _health(at: str) -> Inbound:
    body = {
        "site": "campus-n",
        "device": "box-1",
        "at": at,
        "agent_version": "1",
        "uptime_s": 1,
        "outbox_depth": 0,
        "outbox_dropped": 0,
    }
    return Inbound(health_topic("campus-n", "box-1"), json.dumps(body).encode())


def test_times_out_of_bounds_are_dead_lettered_with_the_reason(
    hub: tuple[TestClient, Hub],
) -> None:
    _, app_hub = hub
    now = app_hub.clock()
    soon = _event_json(now + dt.timedelta(hours=1))
    far = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"]
    batch = [_inbound(_event_json(at)) for at in far]
    batch += [_inbound(_event_json(now + dt.timedelta(days=2))), _inbound(soon)]
    batch += [_health("9999-12-31T23:59:59Z"), _sensor("9999-12-31T23:59:59Z")]
    stats = IngestStats()
    ingestor = Ingestor(app_hub.sessions, app_hub.matcher, app_hub.clock, stats)
    result = ingestor.ingest(batch)
    assert _stored(app_hub) == {soon["event_id"]}
    assert result.dead == ["time_out_of_bounds"] * 6
    details = [d.detail for d in _dead(app_hub)]
    assert "captured_at: time 9999-12-31T23:59:59Z lies outside" in details[0]
    assert "ahead of the receiver's clock" in details[3]
    assert details[4].startswith("Health: at: time 9999-12-31")
    assert details[5].startswith("SensorReading: measured_at: time 9999")
    with app_hub.sessions.begin() as session:
        device = session.get(t.Device, ("campus-n", "box-1"))
        assert device is not None and device.last_seen_at is None  # not "online" until 9999
    assert stats.dead_by_reason == {"time_out_of_bounds": 6}


def test_time_bounds_are_configurable(hub: tuple[TestClient, Hub]) -> None:
    _, app_hub = hub
    bounds = HubSettings(
        jwt_secret="x" * 16, template_key="y" * 16, max_clock_ahead_s=60, max_message_age_s=3600
    ).time_bounds()
    assert bounds == TimeBounds(dt.timedelta(seconds=60), dt.timedelta(hours=1))
    now = app_hub.clock()
    ingestor = Ingestor(
        app_hub.sessions, app_hub.matcher, app_hub.clock, IngestStats(), time_bounds=bounds
    )
    early, late, fine = (_event_json(now + dt.timedelta(minutes=m)) for m in (-120, 5, 0))
    result = ingestor.ingest([_inbound(early), _inbound(late), _inbound(fine)])
    assert result.dead == ["time_out_of_bounds"] * 2
    assert _stored(app_hub) == {fine["event_id"]}
    assert TimeBounds().behind is None  # default: an outbox replayed after any outage


def test_the_contract_refuses_unrepresentable_times_without_a_clock() -> None:
    for at in ("9999-12-31T23:59:59Z", "1999-12-31T23:59:59Z"):
        with pytest.raises(TimeOutOfBounds, match="captured_at: time"):
            decode(Event, json.dumps(_event_json(at)).encode())
    both = _event_json("9999-12-31T23:59:59Z", frame_width=0)
    with pytest.raises(ContractError) as info:
        decode(Event, json.dumps(both).encode())
    assert not isinstance(info.value, TimeOutOfBounds)  # also wrong otherwise: "invalid"


# --- images -------------------------------------------------------------------------------


def _png_bomb(side: int) -> bytes:
    """A real 1-bit greyscale PNG of side x side black pixels (tiny compressed)."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    data = zlib.compress(row * side, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


class NoFaces:
    def detect_and_embed(self, bgr: Any) -> Any:
        raise AssertionError("a refused photo must not reach the face pipeline")


def test_an_image_bomb_is_refused_from_its_header_before_decoding() -> None:
    bomb = _png_bomb(30000)
    assert len(bomb) < 1_000_000
    start = time.monotonic()
    with pytest.raises(EnrolmentRefused, match="30000x30000") as info:
        PhotoEnroller(NoFaces()).enrol(bomb, "bomb.png")
    assert info.value.code == "too_many_pixels"
    assert time.monotonic() - start < 5  # decoding it took 23 s and 5 GB
    small = _png_bomb(64)
    assert decode_image(small).shape == (64, 64, 3)
    with pytest.raises(EnrolmentRefused, match="not a JPEG, PNG or WebP") as info:
        decode_image(b"BM" + b"\x00" * 100)  # a BMP: cv2 would decode it, unchecked
    assert info.value.code == "undecodable"


def _jpeg(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))
    assert ok
    return bytes(buf)


def _claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header rewritten to declare ``width`` x ``height``."""
    pos = jpeg.index(b"\xff\xc0")
    return jpeg[: pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9 :]


def test_image_sizes_are_read_from_headers() -> None:
    size = image_size(_jpeg(64, 48))
    assert (size.format, size.width, size.height) == ("jpeg", 64, 48)
    for ext in (".png", ".webp"):
        ok, buf = cv2.imencode(ext, np.zeros((30, 50, 3), np.uint8))
        assert ok
        size = image_size(bytes(buf))
        assert (size.format, size.width, size.height) == (ext[1:], 50, 30)
    with pytest.raises(ImageRefused, match="20000x20000"):
        check_image(_claiming(_jpeg(64, 48), 20000, 20000))
    with pytest.raises(ImageRefused, match="cut off"):
        image_size(_jpeg(64, 48)[:10])


def test_snapshot_replies_are_checked_and_say_when_the_frame_was_taken() -> None:
    import base64

    def reply(jpeg: bytes, **extra: Any) -> bytes:
        body = {"request_id": "r1", "camera": "gate", "width": 64, "height": 48, **extra}
        return json.dumps({**body, "jpeg": base64.b64encode(jpeg).decode()}).encode()

    with pytest.raises(ContractError, match="too_many_pixels|pixels"):
        decode(SnapshotReply, reply(_claiming(_jpeg(64, 48), 20000, 20000)))
    with pytest.raises(ContractError, match="not a JPEG"):
        decode(SnapshotReply, reply(_png_bomb(8)))
    at = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    good = decode(SnapshotReply, reply(_jpeg(64, 48), captured_at=at.isoformat()))
    assert good.captured_at == at
    fresh = Snapshot(b"", 64, 48, at + dt.timedelta(seconds=2), at)
    old = Snapshot(b"", 64, 48, at + dt.timedelta(minutes=5), at)
    unknown = Snapshot(b"", 64, 48, at)
    assert (fresh.stale, old.stale, unknown.stale) == (False, True, True)


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["North\x1b[2J", "a\x07b", "line\nforged", "evil\u202eexe.txt"])
def test_site_names_with_control_characters_are_refused(
    hub: tuple[TestClient, Hub], name: str
) -> None:
    client, _ = hub
    admin = token(client, "admin", "admin-password")
    res = client.post("/api/v1/sites", json={"id": "s-x", "name": name}, headers=admin)
    assert res.status_code == 422, res.text
    assert "control character" in res.text
    res = client.post("/api/v1/sites", json={"id": "s-ok", "name": "北校区 (east)"}, headers=admin)
    assert res.status_code == 201, res.text


class AckLink:
    """What the intake needs of a broker link: acks and receipts, recorded."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        self.published.append((topic, payload))
        return True


def test_malformed_payloads_are_rejected_on_receipt_and_dead_lettered_in_bulk(
    hub: tuple[TestClient, Hub],
) -> None:
    """Bad payloads never reach the valid events' batches; each gets its own dead-letter
    row with its reason (exact counts), a payload kept for the first ones of a reason each
    minute only, an ack after their commit, and a receipt when it names its event."""
    _, app_hub = hub
    now = app_hub.clock()
    stats = IngestStats()
    forwarded: list[Inbound] = []
    intake = Intake(app_hub.sessions, lambda: now, stats, forwarded.append)  # one minute
    link = AckLink()
    intake.attach(link)
    named = _event_json(now, fuzz=1)  # an unknown field: invalid, yet it names its event
    bad = [Inbound(TOPIC, BOMB, mid=i) for i in range(1, SAMPLES_PER_MINUTE + 6)]
    bad += [
        Inbound(TOPIC, b"\xff" * 10, mid=100),
        Inbound(TOPIC, b"x" * 2_000_000, mid=101),
        Inbound(TOPIC, json.dumps(named).encode(), mid=102),
        Inbound(TOPIC, json.dumps(_event_json("9999-12-31T23:59:59Z")).encode(), mid=103),
    ]
    good = _inbound(_event_json(now))
    for message in [*bad[:3], good, *bad[3:]]:
        intake.receive(message)
    assert forwarded == [good]  # only the valid one goes on to the ingest worker
    intake.start()
    try:
        deadline = time.monotonic() + 30
        while stats.dead_letters < len(bad) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        intake.stop()
    dead = _dead(app_hub)
    assert len(dead) == len(bad) == stats.dead_letters == stats.snapshot()["received"]
    reasons = collections.Counter(d.reason for d in dead)
    assert reasons == {"invalid": SAMPLES_PER_MINUTE + 7, "oversized": 1, "time_out_of_bounds": 1}
    assert stats.dead_by_reason == dict(reasons)
    bombs = [d for d in dead if d.size == len(BOMB)]
    assert sum(d.payload.startswith("(not a JSON object") for d in bombs) == SAMPLES_PER_MINUTE
    assert all("recursion" in d.detail.lower() for d in bombs)
    not_kept = [d for d in dead if d.payload.startswith("(payload not kept")]
    assert len(not_kept) == 7  # 5 bombs, the bytes and the named event: over the sample
    assert sorted(link.acked) == sorted(m.mid for m in bad)
    assert len(link.published) == 1 and named["event_id"].encode() in link.published[0][1]


def test_the_heap_gives_large_payloads_back() -> None:
    assert bound_heap()  # glibc: blocks of 256 kB and more are mmapped, freed at once


def test_write_turns_are_first_come_first_served() -> None:
    """A writer that commits back to back cannot take the turn again before one that was
    already waiting (SQLite's busy handler let the ingest worker starve the dead-letter
    thread)."""
    turns = WriteTurns(enabled=True)
    order: list[str] = []
    waiting = threading.Event()

    def other() -> None:
        waiting.set()
        with turns.turn():
            order.append("other")

    with turns.turn():
        order.append("busy 1")
        thread = threading.Thread(target=other)
        thread.start()
        assert waiting.wait(5)
        deadline = time.monotonic() + 5
        while turns._next < 2 and time.monotonic() < deadline:  # its ticket is drawn
            time.sleep(0.001)
    with turns.turn():  # straight back for the next one
        order.append("busy 2")
    thread.join(5)
    assert order == ["busy 1", "other", "busy 2"]
    assert WriteTurns.for_engine(sa.create_engine("sqlite://")).enabled


def test_dead_letters_are_stored_while_valid_batches_commit_back_to_back(
    hub: tuple[TestClient, Hub],
) -> None:
    """With the turns shared, malformed payloads are dead-lettered (and so acked) while the
    ingest worker commits batch after batch; before, on SQLite, none was stored until
    valid ingest paused, and their unacked messages held the broker's in-flight window."""
    _, app_hub = hub
    now = app_hub.clock()
    stats = IngestStats()
    turns = WriteTurns.for_engine(app_hub.engine)
    ingestor = Ingestor(
        app_hub.sessions, app_hub.matcher, lambda: now, stats, app_hub._stored, turns=turns
    )
    intake = Intake(app_hub.sessions, lambda: now, stats, lambda m: None, turns=turns)
    intake.attach(AckLink())
    stop = threading.Event()
    batches = 0

    def ingest_back_to_back() -> None:
        nonlocal batches
        while not stop.is_set():
            ingestor.ingest([_inbound(_event_json(now)) for _ in range(200)])
            batches += 1

    busy = threading.Thread(target=ingest_back_to_back)
    busy.start()
    intake.start()
    try:
        for i in range(50):
            intake.receive(Inbound(TOPIC, b"\xff" * 10, mid=i + 1))
            time.sleep(0.02)
        sent_at = batches
        deadline = time.monotonic() + 60
        while stats.dead_letters < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        dead, waited = stats.dead_letters, batches - sent_at
    finally:
        stop.set()
        busy.join(30)
        intake.stop()
    assert batches >= 3, "the ingest worker was not busy"
    assert dead == 50
    # each dead-letter round waits for at most the batch in progress (and one more drawn
    # before it): counted in batches, not seconds
    assert waited <= 3, f"the last dead letters waited for {waited} valid batches"
