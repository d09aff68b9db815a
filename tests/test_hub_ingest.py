"""MQTT ingest end to end on SQLite and PostgreSQL with a real Mosquitto: real face events
from short_hamilton_clip.mp4 (P1's face pipeline over its frames, published as contract
events) produce sightings of the enrolled lin-manuel-miranda.png; replays store nothing
twice and are receipted every time; bad messages go to dead letters and ingest goes on."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import EMBEDDING_DIM, MAX_MESSAGE_BYTES, Event, encode
from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub import incident_tables as it
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.ingest import BatchResult, Inbound, Ingestor, IngestStats
from ringwatch.hub.mqtt import IngestWorker
from ringwatch.models.faces import FacePipeline, read_image
from ringwatch.models.identification import threshold_for_gallery
from tests.hub_fixtures import (
    BACKENDS,
    Edge,
    clip_face_events,
    create_admin,
    database,
    enrol_person,
    hub_config,
    settings,
    token,
)
from tests.services import Broker

WATCHLIST = "faces/watchlist_demo"
THRESHOLD = threshold_for_gallery(2)  # the hub's, with the two photos enrolled below


def _expected(pipeline: FacePipeline, photo: Path, events: Sequence[Event]) -> dict[str, float]:
    """Event id -> similarity for the events whose face matches the one in ``photo``."""
    faces = pipeline.detect_and_embed(read_image(photo))
    assert faces.embeddings is not None and len(faces) == 1
    sims = {e.event_id: float(np.dot(np.asarray(e.embedding), faces.embeddings[0])) for e in events}
    return {k: v for k, v in sims.items() if v >= THRESHOLD}


def _person(client: TestClient, admin: dict[str, str], name: str, photo: Path) -> int:
    person_id = enrol_person(client, admin, name, photo)
    assert person_id is not None
    return person_id


@pytest.mark.data
@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_faces_become_sightings_and_replays_are_idempotent(
    backend: str,
    broker: Broker,
    models_dir: Path,
    data_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    events = clip_face_events(models_dir, data_dir / WATCHLIST / "short_hamilton_clip.mp4")
    pipeline = FacePipeline.from_models_dir(models_dir)
    lin_photo = data_dir / WATCHLIST / "lin-manuel-miranda.png"
    obama_photo = data_dir / WATCHLIST / "knn/train/obama/obama.jpg"
    # Who should be sighted, worked out here from the same pipeline: Lin-Manuel Miranda
    # fills most of the clip, Obama appears in its last 1.5 s.
    lin = _expected(pipeline, lin_photo, events)
    obama = _expected(pipeline, obama_photo, events)
    assert len(lin) >= 5, "the clip should show Lin-Manuel Miranda in several frames"
    assert len(obama) >= 2 and not set(lin) & set(obama)
    assert len(events) > len(lin) + len(obama), "and other faces too"

    pg = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with database(backend, tmp_path, pg) as url:
        create_admin(url)
        tag = uuid.uuid4().hex[:8]
        config = hub_config(
            ingest={"group": f"g{tag}", "worker": f"w{tag}", "session_expiry_s": 60}
        )
        app = create_app(settings(url, broker.url), config, faces=pipeline)
        hub: Hub = app.state.hub
        with TestClient(app) as client:
            admin = token(client, "admin", "admin-password")
            lin_id = _person(client, admin, "Lin-Manuel Miranda", lin_photo)
            obama_id = _person(client, admin, "Obama", obama_photo)
            assert hub.link is not None and hub.link.connected.wait(10)
            edge = Edge(broker.host, broker.port, "campus-n", "box-1")
            try:
                for event in events:
                    edge.publish(event)
                got = edge.receipted_ids({e.event_id: 1 for e in events})
                assert set(got) == {e.event_id for e in events}

                sightings = client.get("/api/v1/sightings?limit=5000", headers=admin).json()
                want = {(i, lin_id): v for i, v in lin.items()}
                want |= {(i, obama_id): v for i, v in obama.items()}
                assert {(s["event_id"], s["person_id"]) for s in sightings} == set(want)
                for s in sightings:
                    similarity = want[(s["event_id"], s["person_id"])]
                    assert s["similarity"] == pytest.approx(similarity, abs=1e-4)
                    assert s["ring"] == "perimeter" and s["has_crop"]
                stored = client.get("/api/v1/events?limit=5000", headers=admin).json()
                assert len(stored) == len(events)
                assert all("embedding" not in e["payload"] for e in stored)
                assert all("face_crop_jpeg" not in e["payload"] for e in stored)

                for _ in range(2):  # replay every event twice
                    for event in events:
                        edge.publish(event)
                got = edge.receipted_ids({e.event_id: 2 for e in events})
                assert all(got.get(e.event_id, 0) >= 2 for e in events), "each replay receipted"
                again = client.get("/api/v1/sightings?limit=5000", headers=admin).json()
                assert len(again) == len(sightings)
                assert len(client.get("/api/v1/events?limit=5000", headers=admin).json()) == len(
                    events
                )
                assert hub.stats.duplicates >= 2 * len(events)
                matches = client.get("/api/v1/audit?action=match", headers=admin).json()
                assert len(matches) == len(want)
            finally:
                edge.close()


@pytest.mark.data
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_messages_go_to_dead_letters_and_ingest_goes_on(
    backend: str,
    broker: Broker,
    models_dir: Path,
    data_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    events = clip_face_events(models_dir, data_dir / WATCHLIST / "short_hamilton_clip.mp4")
    face = events[0]
    pg = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with database(backend, tmp_path, pg) as url:
        create_admin(url)
        tag = uuid.uuid4().hex[:8]
        config = hub_config(
            ingest={"group": f"g{tag}", "worker": f"w{tag}", "session_expiry_s": 60}
        )
        app = create_app(settings(url, broker.url), config)
        hub: Hub = app.state.hub
        with TestClient(app) as client:
            admin = token(client, "admin", "admin-password")
            assert hub.link is not None and hub.link.connected.wait(10)
            edge = Edge(broker.host, broker.port, "campus-n", "box-1")
            try:
                topic = event_topic("campus-n", "box-1", EventKind.FACE)
                edge.publish_raw(topic, b"{not json")
                edge.publish_raw(topic, b"x" * (MAX_MESSAGE_BYTES + 10))
                stranger = face.model_copy(update={"device": "box-404"})
                edge.publish_raw(
                    event_topic("campus-n", "box-404", EventKind.FACE), encode(stranger)
                )
                edge.publish(face)  # a good one after the bad ones is still stored
                assert edge.receipted_ids({face.event_id: 1}) == {face.event_id: 1}
                dead = client.get("/api/v1/dead-letters", headers=admin).json()
            finally:
                edge.close()
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["invalid", "oversized", "unknown_device"]
    unknown = next(d for d in dead if d["reason"] == "unknown_device")
    kept = json.loads(unknown["payload"])
    assert kept["embedding"] == "(stripped)" and kept["face_crop_jpeg"] == "(stripped)"
    assert kept["event_id"] == face.event_id
    assert hub.stats.dead_letters == 3 and hub.stats.stored == 1


# --- ingest failure handling (no models: synthetic events) ---------------------------------

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def _event(kind: EventKind = EventKind.INTRUSION, device: str = "box-1", **extra: Any) -> Event:
    return Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": T0,
            "site": "campus-n",
            "device": device,
            "camera": "gate",
            "kind": kind,
            "phase": "start",
            "frame_width": 640,
            "frame_height": 480,
            **extra,
        }
    )


def _face_event() -> Event:
    rng = np.random.default_rng(7)
    vector = rng.normal(size=EMBEDDING_DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    return _event(
        EventKind.FACE,
        embedding=[float(v) for v in vector],
        face_crop_jpeg=base64.b64encode(jpeg.tobytes()).decode(),
    )


def _inbound(event: Event) -> Inbound:
    return Inbound(event_topic(event.site, event.device, event.kind), encode(event))


@pytest.fixture(params=BACKENDS)
def plain_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A hub on SQLite or PostgreSQL without MQTT."""
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        app = create_app(settings(url), hub_config(), ingest=False)
        with TestClient(app):
            yield app.state.hub


def _stored_ids(hub: Hub) -> set[str]:
    with hub.sessions.begin() as session:
        return set(session.scalars(sa.select(t.Event.id)))


def _dead_letters(hub: Hub) -> list[tuple[str, str, str]]:
    with hub.sessions.begin() as session:
        rows = session.scalars(sa.select(t.DeadLetter).order_by(t.DeadLetter.id))
        return [(d.reason, d.topic, d.payload) for d in rows]


class PoisonIngest:
    """A real :class:`Ingestor` behind the worker's protocol that fails the way a database
    does: connection errors for the first ``outages`` calls, then a DataError for any batch
    holding ``poison`` (and, when ``dead_fails``, for dead-lettering it too)."""

    def __init__(
        self, real: Ingestor, poison: str, outages: int = 0, dead_fails: bool = False
    ) -> None:
        self.real = real
        self.poison = poison.encode()
        self.outages = outages
        self.dead_fails = dead_fails
        self.calls = 0

    @property
    def stats(self) -> IngestStats:
        return self.real.stats

    def ingest(self, batch: Sequence[Inbound]) -> BatchResult:
        self.calls += 1
        if self.outages > 0:
            self.outages -= 1
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        if any(self.poison in m.payload for m in batch):
            raise DataError("INSERT INTO events", {}, Exception("value out of range"))
        return self.real.ingest(batch)

    def dead_letter(self, message: Inbound, reason: str, detail: str) -> BatchResult:
        if self.dead_fails:
            raise DataError("INSERT INTO dead_letters", {}, Exception("refused"))
        return self.real.dead_letter(message, reason, detail)


def _process_bounded(worker: IngestWorker, batch: list[Inbound], timeout_s: float = 20) -> None:
    """worker.process(batch) in a thread; fails (instead of hanging) if it never returns."""
    thread = threading.Thread(target=worker.process, args=(batch,), daemon=True)
    thread.start()
    thread.join(timeout_s)
    stuck = thread.is_alive()
    worker.stop()  # ends a stuck retry loop
    thread.join(5)
    assert not stuck, "the worker kept retrying the batch"


def test_a_poison_message_is_dead_lettered_and_the_rest_of_its_batch_stored(
    plain_hub: Hub,
) -> None:
    hub = plain_hub
    events = [_event() for _ in range(3)]
    poison = events[1]
    fake = PoisonIngest(
        Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats()), poison.event_id, 2
    )
    worker = IngestWorker(fake, hub.clock, retry_s=(0.01, 0.02))
    _process_bounded(worker, [_inbound(e) for e in events])
    # two outages retried as a whole, then the DataError: one by one
    assert fake.calls == 2 + 1 + len(events)
    assert _stored_ids(hub) == {events[0].event_id, events[2].event_id}
    dead = _dead_letters(hub)
    assert [(r, tp) for r, tp, _ in dead] == [("internal_error: DataError", _inbound(poison).topic)]
    assert json.loads(dead[0][2])["event_id"] == poison.event_id
    assert fake.stats.errors == 3 and fake.stats.dead_letters == 1


def test_the_ingest_thread_survives_when_dead_lettering_fails(plain_hub: Hub) -> None:
    hub = plain_hub
    poison, good = _event(), _event()
    fake = PoisonIngest(
        Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats()),
        poison.event_id,
        dead_fails=True,
    )
    worker = IngestWorker(fake, hub.clock, retry_s=(0.01, 0.02))
    worker.start()
    try:
        worker.submit(_inbound(poison))
        deadline = time.monotonic() + 20
        while fake.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.submit(_inbound(good))
        while good.event_id not in _stored_ids(hub) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.running
        assert _stored_ids(hub) == {good.event_id}
        assert _dead_letters(hub) == []
        assert fake.stats.errors >= 2  # the DataError and the failed dead letter
    finally:
        worker.stop()


class FailingIncidents:
    """An incidents hook that fails: the batch must roll back, not stay stored."""

    def __call__(self, events: list[Event], now: dt.datetime, session: Session) -> None:
        raise RuntimeError("incident step failed")


def test_a_failing_incident_step_rolls_the_batch_back(plain_hub: Hub) -> None:
    hub = plain_hub
    ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats(), FailingIncidents())
    event = _event()
    with pytest.raises(RuntimeError, match="incident step failed"):
        ingestor.ingest([_inbound(event)])
    assert _stored_ids(hub) == set()
    # through the worker it becomes a dead letter (and the batch is not stuck)
    worker = IngestWorker(ingestor, hub.clock, retry_s=(0.01, 0.02))
    _process_bounded(worker, [_inbound(event)])
    assert [r for r, _, _ in _dead_letters(hub)] == ["internal_error: RuntimeError"]


def test_incidents_are_made_in_the_ingest_transaction(plain_hub: Hub) -> None:
    hub = plain_hub
    assert hub.incidents is not None
    ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats(), hub._stored)
    event = _event()
    ingestor.ingest([_inbound(event)])
    with hub.sessions.begin() as session:
        incidents = session.scalars(sa.select(it.Incident)).all()
    assert len(incidents) == 1 and incidents[0].site_id == "campus-n"


def _malformed_faces(face: Event) -> dict[str, bytes]:
    text = encode(face).decode()
    return {
        "truncated": text[: len(text) * 2 // 3].encode(),
        "list": f"[{text}]".encode(),
        "trailing_comma": (text[:-1] + ",}").encode(),
        "oversized": (text[:-1] + ', "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}').encode(),
    }


def _assert_no_biometrics(kept: str, face: Event) -> None:
    assert face.embedding is not None and face.face_crop_jpeg is not None
    for value in face.embedding:
        assert json.dumps(value) not in kept
    crop = base64.b64encode(face.face_crop_jpeg).decode()
    for start in range(0, len(crop) - 16, 16):
        assert crop[start : start + 16] not in kept


def test_malformed_face_payloads_keep_no_biometrics_in_dead_letters(plain_hub: Hub) -> None:
    hub = plain_hub
    face = _face_event()
    topic = event_topic("campus-n", "box-1", EventKind.FACE)
    payloads = _malformed_faces(face)
    assert all(b'"embedding"' in p and b"_jpeg" in p for p in payloads.values())
    ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats())
    result = ingestor.ingest([Inbound(topic, p) for p in payloads.values()])
    assert sorted(result.dead) == ["invalid", "invalid", "invalid", "oversized"]
    dead = _dead_letters(hub)
    assert len(dead) == len(payloads)
    for _reason, _topic, kept in dead:
        _assert_no_biometrics(kept, face)
        assert len(kept) < 3000
    oversized = payloads["oversized"]
    assert any(hashlib.sha256(oversized).hexdigest() in kept for _, _, kept in dead)
    # each still names its event and is receipted (the hub has kept it)
    assert result.receipts == {("campus-n", "box-1"): [face.event_id] * len(payloads)}


def test_an_event_from_an_unknown_device_is_dead_lettered_and_receipted(
    broker: Broker, tmp_path: Path
) -> None:
    with database("sqlite", tmp_path, None) as url:
        tag = uuid.uuid4().hex[:8]
        config = hub_config(
            ingest={"group": f"g{tag}", "worker": f"w{tag}", "session_expiry_s": 60}
        )
        app = create_app(settings(url, broker.url), config)
        hub: Hub = app.state.hub
        with TestClient(app):
            assert hub.link is not None and hub.link.connected.wait(10)
            edge = Edge(broker.host, broker.port, "campus-n", "box-404")
            try:
                stranger = _event(device="box-404")
                edge.publish(stranger)
                broken = _event(device="box-404")
                payload = json.loads(encode(broken))
                del payload["camera"]  # invalid, but its event id is readable
                edge.publish_raw(_inbound(broken).topic, json.dumps(payload).encode())
                want = {stranger.event_id: 1, broken.event_id: 1}
                assert edge.receipted_ids(want) == want
            finally:
                edge.close()
            reasons = sorted(r for r, _, _ in _dead_letters(hub))
    assert reasons == ["invalid", "unknown_device"]
