"""Enrolment from photos with bystanders: the officer picks the subject (a point or a box;
the largest face by default), and cut-off, small or poor faces are refused with the reason.
Real photos, the real face pipeline, and once through the HTTP route."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.registry import (
    LARGEST,
    EnrolmentRefused,
    PhotoEnroller,
    Subject,
    face_crop_jpeg,
    parse_subject,
)
from ringwatch.models.faces import FacePipeline, read_image
from ringwatch.models.sface import cosine
from tests.hub_fixtures import create_admin, database, hub_config, review_due, settings, token

pytestmark = [pytest.mark.data]
DEMO = "faces/watchlist_demo"
# two_people.jpg (1126x661): Obama on the left, face ~(241,31)-(383,227); Biden on the
# right, face ~(787,48)-(936,255) — close in size, so the largest is not a safe default.
OBAMA_POINT = (310.0, 130.0)
BIDEN_BOX = (780.0, 40.0, 940.0, 260.0)


@pytest.fixture(scope="module")
def pipeline(models_dir: Path) -> FacePipeline:
    return FacePipeline.from_models_dir(models_dir)


@pytest.fixture(scope="module")
def enroller(pipeline: FacePipeline) -> PhotoEnroller:
    return PhotoEnroller(pipeline)


def _bytes(data_dir: Path, name: str) -> bytes:
    return (data_dir / DEMO / name).read_bytes()


def _refused(enroller: PhotoEnroller, data: bytes, subject: Subject = LARGEST) -> str:
    with pytest.raises(EnrolmentRefused) as caught:
        enroller.enrol(data, "p.jpg", subject)
    return caught.value.code


def _reference(pipeline: FacePipeline, data_dir: Path, rel: str) -> np.ndarray:
    return pipeline.largest_face_embedding(read_image(data_dir / DEMO / rel))[1]


def test_similar_faces_need_the_officers_pick(enroller: PhotoEnroller, data_dir: Path) -> None:
    with pytest.raises(EnrolmentRefused) as caught:
        enroller.enrol(_bytes(data_dir, "two_people.jpg"), "two_people.jpg")
    assert caught.value.code == "several_faces"
    assert "point=x,y or box=x1,y1,x2,y2" in str(caught.value)


@pytest.mark.parametrize(("left", "right", "who"), [(500, 0, "obama"), (0, 600, "biden")])
def test_of_similar_faces_the_one_at_the_photos_centre_is_the_default(
    enroller: PhotoEnroller,
    pipeline: FacePipeline,
    data_dir: Path,
    left: int,
    right: int,
    who: str,
) -> None:
    """two_people.jpg's top 300 rows, padded so that one man's face holds the centre (a
    portrait of him with the other beside him): he is enrolled, without a pick."""
    top = read_image(data_dir / DEMO / "two_people.jpg")[:300]
    framed = np.asarray(
        cv2.copyMakeBorder(top, 0, 0, left, right, cv2.BORDER_CONSTANT, value=(128, 128, 128)),
        np.uint8,
    )
    assert len(pipeline.detect(framed)) == 2
    ok, jpeg = cv2.imencode(".jpg", framed)
    assert ok
    face = enroller.enrol(jpeg.tobytes())
    other = "biden" if who == "obama" else "obama"
    own = _reference(pipeline, data_dir, f"knn/train/{who}/{who}.jpg")
    theirs = _reference(pipeline, data_dir, f"knn/train/{other}/{other}.jpg")
    assert float(cosine(face.embedding, own)) > 0.5 > float(cosine(face.embedding, theirs))


def test_the_picked_face_is_the_one_enrolled(
    enroller: PhotoEnroller, pipeline: FacePipeline, data_dir: Path
) -> None:
    data = _bytes(data_dir, "two_people.jpg")
    obama = _reference(pipeline, data_dir, "knn/train/obama/obama.jpg")
    biden = _reference(pipeline, data_dir, "knn/train/biden/biden.jpg")
    by_point = enroller.enrol(data, subject=Subject(point=OBAMA_POINT))
    by_box = enroller.enrol(data, subject=Subject(box=BIDEN_BOX))
    assert float(cosine(by_point.embedding, obama)) > 0.5 > float(cosine(by_point.embedding, biden))
    assert float(cosine(by_box.embedding, biden)) > 0.5 > float(cosine(by_box.embedding, obama))


def test_largest_face_is_the_default_beside_cut_off_bystanders(
    enroller: PhotoEnroller, pipeline: FacePipeline, data_dir: Path
) -> None:
    """biden2.jpg shows him with two people cut off by the photo's left edge."""
    data = _bytes(data_dir, "knn/train/biden/biden2.jpg")
    assert len(pipeline.detect(read_image(data_dir / DEMO / "knn/train/biden/biden2.jpg"))) == 3
    face = enroller.enrol(data)
    biden = _reference(pipeline, data_dir, "knn/train/biden/biden.jpg")
    assert float(cosine(face.embedding, biden)) > 0.5


def test_cut_off_small_and_missed_faces_are_refused(
    enroller: PhotoEnroller, data_dir: Path
) -> None:
    assert _refused(enroller, _bytes(data_dir, "tests/obama_partial_face.jpg")) == "cut_off"
    small = cv2.resize(read_image(data_dir / DEMO / "obama_small.jpg"), None, fx=0.35, fy=0.35)
    ok, jpeg = cv2.imencode(".jpg", small)
    assert ok
    assert _refused(enroller, jpeg.tobytes()) in {"too_small", "no_face"}
    two = _bytes(data_dir, "two_people.jpg")
    assert _refused(enroller, two, Subject(point=(600.0, 500.0))) == "no_face_at_point"
    assert _refused(enroller, two, Subject(box=(0.0, 400.0, 100.0, 500.0))) == "no_face_in_box"


def test_a_small_face_gets_the_size_in_the_reason(pipeline: FacePipeline, data_dir: Path) -> None:
    """obama-240p.jpg's face is ~55 px across: enrolled at the default 48 px, refused at 64."""
    data = _bytes(data_dir, "obama-240p.jpg")
    assert PhotoEnroller(pipeline).enrol(data).quality > 0.5
    with pytest.raises(EnrolmentRefused) as caught:
        PhotoEnroller(pipeline, min_face_px=64).enrol(data, "obama-240p.jpg")
    assert caught.value.code == "too_small" and "below 64 px" in str(caught.value)


@pytest.mark.parametrize(
    ("point", "box"),
    [("1,2,3", None), ("a,b", None), ("-1,5", None), (None, "5,5,1,1"), ("1,1", "1,1,2,2")],
)
def test_bad_subject_parameters_say_what_is_wrong(point: str | None, box: str | None) -> None:
    with pytest.raises(EnrolmentRefused) as caught:
        parse_subject(point, box)
    assert caught.value.code == "bad_subject"


def test_parse_subject() -> None:
    assert parse_subject(None, None) == Subject()
    assert parse_subject("10,20.5", None) == Subject(point=(10.0, 20.5))
    assert parse_subject(None, "1,2,30,40") == Subject(box=(1.0, 2.0, 30.0, 40.0))


Client = tuple[TestClient, dict[str, str], int, Hub]


@pytest.fixture
def client(pipeline: FacePipeline, tmp_path: Path) -> Iterator[Client]:
    with database("sqlite", tmp_path, None) as url:
        create_admin(url)
        app = create_app(settings(url), hub_config(), faces=pipeline, ingest=False)
        with TestClient(app) as client:
            auth = token(client, "admin", "admin-password")
            body = {
                "display_name": "Subject",
                "tier": "orange",
                "reason": "test entry",
                "case_reference": "C-1",
                "legal_basis": "court order (test)",
                "station_id": "st-north",
                "review_due": review_due(),
            }
            res = client.post("/api/v1/persons", json=body, headers=auth)
            assert res.status_code == 201, res.text
            yield client, auth, int(res.json()["id"]), app.state.hub


def test_the_enrol_route_takes_the_officers_pick(client: Client, data_dir: Path) -> None:
    http, auth, person, _ = client
    files = {"photo": ("two_people.jpg", _bytes(data_dir, "two_people.jpg"))}
    url = f"/api/v1/persons/{person}/photos"
    refused = http.post(url, files=files, headers=auth)
    assert refused.status_code == 422 and refused.json()["detail"]["code"] == "several_faces"
    # the boxes to click on, largest first: Biden's (149 px wide), then Obama's (142 px)
    faces = refused.json()["detail"]["faces"]
    assert len(faces) == 2 and all(
        len(b) == 4 and all(isinstance(v, int) for v in b) for b in faces
    )
    (bx1, by1, bx2, by2), (ox1, oy1, ox2, oy2) = faces
    assert bx1 <= 861 <= bx2 and by1 <= 151 <= by2 and ox1 <= 310 <= ox2 and oy1 <= 130 <= oy2
    picked = http.post(url, params={"point": "310,130"}, files=files, headers=auth)
    assert picked.status_code == 201, picked.text
    bad = http.post(url, params={"box": "1,2"}, files=files, headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"]["code"] == "bad_subject"


def _sighting(hub: Hub, person: int, crop: bytes) -> int:
    """A stored match of ``person`` (as ingest writes it) holding ``crop`` as its live shot."""
    now = dt.datetime.now(dt.UTC)
    with hub.sessions.begin() as session:
        session.add(
            t.Event(
                id=new_event_id(),
                site_id="campus-n",
                device_id="box-1",
                camera_id="gate",
                kind="face",
                phase="start",
                captured_at=now,
                received_at=now,
                payload={},
            )
        )
        session.flush()
        event_id = session.scalars(sa.select(t.Event.id)).one()
        row = t.Sighting(
            event_id=event_id,
            person_id=person,
            site_id="campus-n",
            device_id="box-1",
            camera_id="gate",
            captured_at=now,
            similarity=0.7,
            threshold=0.5,
            rank=1,
            crop_jpeg=crop,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return int(row.id)


def test_a_confirmed_live_shot_becomes_a_template_with_consent(
    client: Client, data_dir: Path
) -> None:
    http, auth, person, hub = client
    url = f"/api/v1/persons/{person}/photos"
    photo = {"photo": ("obama.jpg", _bytes(data_dir, "knn/train/obama/obama.jpg"))}
    assert http.post(url, files=photo, headers=auth).status_code == 201
    live = read_image(data_dir / DEMO / "knn/test/obama1.jpg")
    faces = hub.enroller().faces.detect_and_embed(live)
    sighting = _sighting(hub, person, face_crop_jpeg(live, faces.xyxy[0]))
    consent = "Officer confirmed the match on camera gate; case C-1, court order"
    res = http.post(
        f"{url}/from-sighting", json={"sighting_id": sighting, "consent": consent}, headers=auth
    )
    assert res.status_code == 201, res.text
    assert len(http.get(url, headers=auth).json()) == 2
    with hub.sessions() as session:
        source = session.get(t.TemplateSource, res.json()["id"])
        assert source is not None and source.consent == consent
        assert source.sighting_id == sighting and source.confirmed_by == "admin"
        actions = session.scalars(sa.select(t.AuditEntry.action)).all()
        assert "enrol_live" in actions
    missing = http.post(
        f"{url}/from-sighting", json={"sighting_id": 999, "consent": consent}, headers=auth
    )
    assert missing.status_code == 404
    short = http.post(
        f"{url}/from-sighting", json={"sighting_id": sighting, "consent": "ok"}, headers=auth
    )
    assert short.status_code == 422
