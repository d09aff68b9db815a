"""MQTT ingest end to end on SQLite and PostgreSQL with a real Mosquitto: real face events
from short_hamilton_clip.mp4 (P1's face pipeline over its frames, published as contract
events) produce sightings of the enrolled lin-manuel-miranda.png; replays store nothing
twice and are receipted every time; bad messages go to dead letters and ingest goes on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ringwatch.contract.messages import MAX_MESSAGE_BYTES, Event, encode
from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.inventory import default_threshold
from ringwatch.models.faces import FacePipeline, read_image
from tests.hub_fixtures import (
    BACKENDS,
    Edge,
    clip_face_events,
    create_admin,
    database,
    hub_config,
    review_due,
    settings,
    token,
)
from tests.services import Broker

WATCHLIST = "faces/watchlist_demo"


def _expected(pipeline: FacePipeline, photo: Path, events: Sequence[Event]) -> dict[str, float]:
    """Event id -> similarity for the events whose face matches the one in ``photo``."""
    faces = pipeline.detect_and_embed(read_image(photo))
    assert faces.embeddings is not None and len(faces) == 1
    sims = {e.event_id: float(np.dot(np.asarray(e.embedding), faces.embeddings[0])) for e in events}
    return {k: v for k, v in sims.items() if v >= default_threshold()}


def _person(client: TestClient, admin: dict[str, str], name: str, photo: Path) -> int:
    body = {
        "display_name": name,
        "tier": "red",
        "reason": "test watch-list entry",
        "case_reference": f"CASE-{name}",
        "legal_basis": "court order (test)",
        "station_id": "st-north",
        "review_due": review_due(),
    }
    res = client.post("/api/v1/persons", json=body, headers=admin)
    assert res.status_code == 201, res.text
    person_id: int = res.json()["id"]
    with photo.open("rb") as fh:
        res = client.post(
            f"/api/v1/persons/{person_id}/photos", files={"photo": (photo.name, fh)}, headers=admin
        )
    assert res.status_code == 201, res.text
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
