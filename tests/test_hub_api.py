"""The REST API over HTTP (TestClient) on SQLite and PostgreSQL: station scopes, the
auditor's read-only role, enrolment refusals, no LFW face matching the enrolled gallery,
templates encrypted at rest, delisting and review dates."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, encode
from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.errors import ConfigError
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.ingest import Inbound, Ingestor
from ringwatch.hub.matching import bump_generation
from ringwatch.hub.settings import HubSettings
from ringwatch.models.faces import FacePipeline, read_image
from ringwatch.models.identification import threshold_for_gallery
from tests.hub_fixtures import (
    BACKENDS,
    create_admin,
    database,
    hub_config,
    make_user,
    review_due,
    settings,
    token,
)

WATCHLIST = "faces/watchlist_demo"
LFW_EVERY = 4  # 194 of the 776 LFW photos: the whole set takes ~1 min on this machine


@functools.cache
def _pipeline(models_dir: Path) -> FacePipeline:
    return FacePipeline.from_models_dir(models_dir)


@pytest.fixture(params=BACKENDS)
def api(
    request: pytest.FixtureRequest, models_dir: Path, tmp_path: Path
) -> Iterator[tuple[TestClient, Hub, dict[str, str]]]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        create_admin(url)
        app = create_app(settings(url), hub_config(), faces=_pipeline(models_dir), ingest=False)
        with TestClient(app) as client:
            yield client, app.state.hub, token(client, "admin", "admin-password")


def _person(client: TestClient, auth: dict[str, str], name: str, station: str) -> int:
    body = {
        "display_name": name,
        "tier": "orange",
        "reason": "test entry",
        "case_reference": f"C-{name}",
        "legal_basis": "court order (test)",
        "station_id": station,
        "review_due": review_due(),
    }
    res = client.post("/api/v1/persons", json=body, headers=auth)
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def _enrol(client: TestClient, auth: dict[str, str], person: int, photo: Path) -> int:
    res = client.post(
        f"/api/v1/persons/{person}/photos",
        files={"photo": (photo.name, photo.read_bytes())},
        headers=auth,
    )
    return res.status_code


def _face_event(hub: Hub, site: str, device: str, camera: str, photo: Path) -> Inbound:
    """A face event carrying the embedding of the face in a real photo, ingested directly."""
    faces = _pipeline_of(hub).detect_and_embed(read_image(photo))
    assert faces.embeddings is not None
    event = Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": "2026-11-25T08:00:00Z",
            "site": site,
            "device": device,
            "camera": camera,
            "kind": "face",
            "phase": "update",
            "frame_width": 640,
            "frame_height": 360,
            "embedding": [float(v) for v in faces.embeddings[0]],
        }
    )
    return Inbound(event_topic(site, device, EventKind.FACE), encode(event))


def _pipeline_of(hub: Hub) -> FacePipeline:
    assert isinstance(hub.faces, FacePipeline)
    return hub.faces


@pytest.mark.data
def test_station_officer_sees_only_their_station_and_auditor_changes_nothing(
    api: tuple[TestClient, Hub, dict[str, str]], data_dir: Path
) -> None:
    client, hub, admin = api
    north = _person(client, admin, "Lin", "st-north")
    south = _person(client, admin, "Obama", "st-south")
    assert _enrol(client, admin, north, data_dir / WATCHLIST / "lin-manuel-miranda.png") == 201
    assert _enrol(client, admin, south, data_dir / WATCHLIST / "knn/train/obama/obama.jpg") == 201
    ingest = Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats)
    result = ingest.ingest(
        [
            _face_event(
                hub, "campus-n", "box-1", "gate", data_dir / WATCHLIST / "lin-manuel-miranda.png"
            ),
            _face_event(
                hub,
                "campus-s",
                "box-9",
                "door",
                data_dir / WATCHLIST / "knn/train/obama/obama2.jpg",
            ),
        ]
    )
    assert result.sightings == 2

    officer = make_user(client, admin, "officer-n", "station_officer", stations=["st-north"])
    persons = client.get("/api/v1/persons", headers=officer).json()
    assert [p["id"] for p in persons] == [north]
    assert client.get(f"/api/v1/persons/{south}", headers=officer).status_code == 403
    sightings = client.get("/api/v1/sightings", headers=officer).json()
    assert [s["person_id"] for s in sightings] == [north]
    all_sightings = client.get("/api/v1/sightings", headers=admin).json()
    theirs = next(s["id"] for s in all_sightings if s["person_id"] == south)
    assert client.get(f"/api/v1/sightings/{theirs}", headers=officer).status_code == 403
    body = {"display_name": "x", "why": "test"}
    assert client.patch(f"/api/v1/persons/{south}", json=body, headers=officer).status_code == 403
    assert client.get("/api/v1/audit", headers=officer).status_code == 403
    assert client.get("/api/v1/persons").status_code == 401

    auditor = make_user(client, admin, "auditor-1", "auditor")
    log = client.get("/api/v1/audit", headers=auditor).json()
    actions = {(e["action"], e["entity"]) for e in log}
    assert {("match", "person"), ("enrol", "template"), ("read", "person")} <= actions
    assert any(e["actor"] == "officer-n" and e["action"] == "read" for e in log)
    refused = [
        client.post("/api/v1/persons", json={}, headers=auditor),
        client.patch(f"/api/v1/persons/{north}", json=body, headers=auditor),
        client.post(
            f"/api/v1/persons/{north}/photos", files={"photo": ("a.jpg", b"x")}, headers=auditor
        ),
        client.delete(f"/api/v1/persons/{north}/photos/1", headers=auditor),
        client.post("/api/v1/users", json={}, headers=auditor),
        client.post("/api/v1/sites", json={"id": "x", "name": "x"}, headers=auditor),
        client.post("/api/v1/stations", json={"id": "x", "name": "x"}, headers=auditor),
        client.post("/api/v1/sites/campus-n/cameras", json={}, headers=auditor),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    with hub.sessions() as session, pytest.raises(sa.exc.DBAPIError):
        session.execute(sa.text("DELETE FROM audit_log"))
        session.commit()


@pytest.mark.data
def test_enrolment_refuses_bad_photos_with_the_reason(
    api: tuple[TestClient, Hub, dict[str, str]], data_dir: Path
) -> None:
    client, _hub, admin = api
    person = _person(client, admin, "Someone", "st-north")
    two = (data_dir / WATCHLIST / "two_people.jpg").read_bytes()
    no_face = _no_face_photo(data_dir)
    jpeg = (data_dir / WATCHLIST / "obama_small.jpg").read_bytes()
    cases = {
        "several_faces": two,
        "no_face": no_face,
        "undecodable": jpeg[: len(jpeg) // 8],
        "empty": b"",
    }
    for code, data in cases.items():
        res = client.post(
            f"/api/v1/persons/{person}/photos", files={"photo": ("p.jpg", data)}, headers=admin
        )
        assert res.status_code == 422, (code, res.text)
        assert res.json()["detail"]["code"] == code, res.text
    garbage = client.post(
        f"/api/v1/persons/{person}/photos",
        files={"photo": ("p.jpg", b"not an image")},
        headers=admin,
    )
    assert garbage.json()["detail"]["code"] == "undecodable"
    assert "cannot be decoded" in garbage.json()["detail"]["message"]


def _no_face_photo(data_dir: Path) -> bytes:
    """A real photo in which YuNet finds no face (a house fire)."""
    return (data_dir / "fire/images/fire/fire__fire_007.jpg").read_bytes()


@functools.cache
def _lfw_embeddings(models_dir: Path, lfw: Path) -> np.ndarray:
    pipeline = _pipeline(models_dir)
    rows = []
    for path in sorted(lfw.glob("images/*/*.jpg"))[::LFW_EVERY]:
        faces = pipeline.detect_and_embed(read_image(path))
        if faces.embeddings is not None and len(faces):
            rows.append(faces.embeddings)
    return np.concatenate(rows).astype(np.float32)


@pytest.mark.data
@pytest.mark.slow
def test_lfw_faces_rarely_match_the_enrolled_gallery(
    api: tuple[TestClient, Hub, dict[str, str]], data_dir: Path, models_dir: Path
) -> None:
    client, hub, admin = api
    gallery = sorted((data_dir / WATCHLIST / "knn/train").glob("*/*"))
    enrolled = 0
    for folder in sorted({p.parent for p in gallery}):
        person = _person(client, admin, folder.name, "st-north")
        codes = [_enrol(client, admin, person, photo) for photo in sorted(folder.iterdir())]
        assert 201 in codes, folder  # a photo with a second face in it is refused (422)
        enrolled += codes.count(201)
    probes = _lfw_embeddings(models_dir, data_dir / "faces/lfw_dev")
    assert len(probes) >= 180
    with hub.sessions() as session:
        assert len(hub.matcher.current_index(session)) == enrolled >= len(gallery) - 2
        assert hub.matcher.threshold == threshold_for_gallery(enrolled) < 0.5
        matches = hub.matcher.match(session, probes)
    assert sum(len(m) for m in matches) <= 0.01 * len(probes)  # FPIR <= 1%


@pytest.mark.data
def test_templates_are_encrypted_and_delisted_or_overdue_persons_are_not_matched(
    api: tuple[TestClient, Hub, dict[str, str]], data_dir: Path
) -> None:
    client, hub, admin = api
    lin_photo = data_dir / WATCHLIST / "lin-manuel-miranda.png"
    person = _person(client, admin, "Lin", "st-north")
    assert _enrol(client, admin, person, lin_photo) == 201
    probe = _face_event(hub, "campus-n", "box-1", "gate", lin_photo)
    faces = _pipeline_of(hub).detect_and_embed(read_image(lin_photo))
    assert faces.embeddings is not None
    with hub.sessions() as session:
        stored = session.execute(sa.text("SELECT embedding_enc FROM templates")).scalar_one()
        assert faces.embeddings[0].astype("<f4").tobytes()[:16] not in bytes(stored)
    ingest = Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats)

    def sightings_after(change: dict[str, str] | None) -> int:
        if change is not None:
            res = client.patch(
                f"/api/v1/persons/{person}", json={**change, "why": "test"}, headers=admin
            )
            assert res.status_code == 200, res.text
        event = Event.model_validate_json(probe.payload)
        fresh = Inbound(probe.topic, encode(event.model_copy(update={"event_id": new_event_id()})))
        return ingest.ingest([fresh]).sightings

    assert sightings_after(None) == 1
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    res = client.patch(
        f"/api/v1/persons/{person}",
        json={"review_due": yesterday.isoformat(), "why": "test"},
        headers=admin,
    )
    assert res.status_code == 422, "a review date is after today"
    with hub.sessions.begin() as session:  # an entry whose review has lapsed since
        session.execute(
            sa.update(t.Person).where(t.Person.id == person).values(review_due=yesterday)
        )
        bump_generation(session)
    assert sightings_after(None) == 0
    assert sightings_after({"review_due": review_due()}) == 1
    assert sightings_after({"tier": "green"}) == 0
    delist = client.get("/api/v1/audit?action=delist", headers=admin).json()
    assert [e["entity_id"] for e in delist] == [str(person)]


def test_default_secrets_are_refused() -> None:
    with pytest.raises(ConfigError, match="jwt_secret, template_key"):
        HubSettings(database_url="sqlite:///x.db").check_secrets()
