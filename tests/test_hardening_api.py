"""The hub's HTTP surface under hostile requests (issue 11): bounded parameters, security
headers, what /health tells strangers, NUL characters, login throttling. A real hub on
SQLite (and PostgreSQL where the database is what breaks), real HTTP through TestClient."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from tests.hub_fixtures import (
    BACKENDS,
    create_admin,
    database,
    hub_config,
    make_user,
    settings,
    token,
)
from tests.services import Broker
from tests.test_zone_editor import Device

HUGE = "2872684021229396514080"
Api = tuple[TestClient, Hub, dict[str, str]]  # a running hub and an admin's headers


@contextmanager
def _hub(backend: str, tmp: Path, pg_url: str | None) -> Iterator[Api]:
    with database(backend, tmp, pg_url) as url:
        create_admin(url)
        app = create_app(settings(url), hub_config(), ingest=False)
        with TestClient(app) as client:
            yield client, app.state.hub, token(client, "admin", "admin-password")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One hub on SQLite for the module (these tests change nothing)."""
    with _hub("sqlite", tmp_path_factory.mktemp("api"), None) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def both(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with _hub(request.param, tmp_path_factory.mktemp("both"), pg) as running:
        yield running


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/sightings/{HUGE}",
        f"/api/v1/sightings/{HUGE}/crop",
        f"/api/v1/persons/{HUGE}",
        f"/api/v1/persons/1/photos/{HUGE}/image",
        "/api/v1/sightings/0",
        f"/api/v1/sightings?person_id={HUGE}",
        "/api/v1/audit?limit=-1",
        "/api/v1/audit?limit=0",
        "/api/v1/audit?limit=5001",
        f"/api/v1/audit?after_id={HUGE}",
        "/api/v1/audit?after_id=-1",
        "/api/v1/events?limit=-1",
        "/api/v1/dead-letters?limit=100000",
        "/api/v1/incidents?limit=-5",
        "/api/v1/persons?limit=0",
        "/api/v1/dashboard/sheds?points=1",
        f"/api/v1/events?site_id={'x' * 300}",
    ],
)
def test_out_of_range_parameters_are_a_422(api: Api, path: str) -> None:
    client, _, admin = api
    res = client.get(path, headers=admin)
    assert res.status_code == 422, (path, res.status_code, res.text)


@pytest.mark.parametrize(
    "body", [{"sighting_id": 1, "consent": "officer consent"}, {"sighting_id": int(HUGE)}]
)
def test_out_of_range_ids_in_a_post_are_a_422(api: Api, body: dict[str, object]) -> None:
    """Found by the API fuzz: a live shot's person id (path) and sighting id (body) were
    unbounded, an OverflowError (500) on SQLite."""
    client, _, admin = api
    person = HUGE if "consent" in body else "1"
    res = client.post(f"/api/v1/persons/{person}/photos/from-sighting", json=body, headers=admin)
    assert res.status_code == 422, res.text


def test_every_integer_parameter_of_every_route_is_bounded(api: Api) -> None:
    """Every integer path or query parameter in the OpenAPI schema has a maximum (an
    unbounded one reaches the database as an overflow), and every integer field of a
    request body."""
    client, _, _ = api
    schema = client.app.openapi()  # type: ignore[attr-defined]
    unbounded = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            for param in op.get("parameters", []):
                kinds = [param.get("schema", {}), *param.get("schema", {}).get("anyOf", [])]
                for kind in kinds:
                    if kind.get("type") == "integer" and "maximum" not in kind:
                        unbounded.append(f"{method} {path} {param['name']}")
    bodies = set()  # the request bodies' models (responses may be unbounded)
    for methods in schema["paths"].values():
        for op in methods.values():
            for content in op.get("requestBody", {}).get("content", {}).values():
                refs = [content.get("schema", {}), *content.get("schema", {}).get("anyOf", [])]
                bodies |= {r["$ref"].rsplit("/", 1)[1] for r in refs if "$ref" in r}
    for name in sorted(bodies):
        for field, spec in schema["components"]["schemas"][name].get("properties", {}).items():
            kinds = [spec, *spec.get("anyOf", [])]
            for kind in kinds:
                if kind.get("type") == "integer" and "maximum" not in kind:
                    unbounded.append(f"{name}.{field}")
    assert unbounded == [], unbounded


def test_a_huge_last_event_id_is_ignored_not_a_500(api: Api) -> None:
    from ringwatch.hub.api.deps import last_event_id

    assert last_event_id(HUGE) is None and last_event_id("-1") is None
    assert last_event_id("42") == 42 and last_event_id(str(2**63 - 1)) == 2**63 - 1


def test_security_headers_on_the_dashboard_and_the_api(api: Api) -> None:
    client, _, _ = api
    for path in ("/dashboard/", "/dashboard/zones.html", "/api/v1/health", "/api/v1/nope"):
        res = client.get(path)
        assert res.headers["x-frame-options"] == "DENY", path
        assert res.headers["x-content-type-options"] == "nosniff", path
        csp = res.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    # no page carries an inline <style> any more (the zones page's moved into style.css), so
    # styles come from the hub itself only; clips play from blobs
    csp = client.get("/dashboard/zones.html").headers["content-security-policy"]
    assert "style-src 'self'" in csp and "media-src 'self' blob:" in csp


def test_health_without_login_says_only_up_or_down(api: Api) -> None:
    client, _, admin = api
    res = client.get("/api/v1/health")
    assert res.status_code == 200 and res.json() == {"status": "ok"}
    bad = client.get("/api/v1/health", headers={"Authorization": "Bearer forged"})
    assert bad.json() == {"status": "ok"}
    full = client.get("/api/v1/health", headers=admin)
    assert {"database", "migration", "broker_url", "ingest"} <= set(full.json())


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/api/v1/sites/campus%00n", {}),
        ("get", "/api/v1/events?site_id=a%00b", {}),
        ("post", "/api/v1/sites", {"json": {"id": "s-1", "name": "a\u0000b"}}),
        ("post", "/api/v1/login/access-token", {"data": {"username": "a\x00", "password": "x"}}),
    ],
)
def test_nul_characters_are_refused_before_the_database_sees_them(
    both: Api, method: str, path: str, kwargs: dict[str, object]
) -> None:
    client, _, admin = both
    res = getattr(client, method)(path, headers=admin, **kwargs)
    assert res.status_code == 400, res.text
    assert "NUL" in res.json()["detail"]


def test_reads_and_writes_next_to_a_busy_ingest_never_say_database_is_locked(
    tmp_path: Path,
) -> None:
    """SQLite in WAL: GET /incidents/{id} (reads, then its audit entry) and POST .../close
    while the real ingest commits batch after batch: every answer is a 200."""
    from tests.test_hardening_ingest import _event_json, _inbound

    with _hub("sqlite", tmp_path, None) as (client, hub, admin):
        ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats(), hub._stored)
        ingestor.ingest([_inbound(_event_json(hub.clock()))])
        incidents = client.get("/api/v1/incidents", headers=admin).json()
        assert len(incidents) == 1
        url = f"/api/v1/incidents/{incidents[0]['id']}"
        stop = threading.Event()

        def busy() -> None:
            while not stop.is_set():
                ingestor.ingest([_inbound(_event_json(hub.clock())) for _ in range(5)])

        writer = threading.Thread(target=busy, daemon=True)
        writer.start()
        try:
            codes = [client.get(url, headers=admin).status_code for _ in range(40)]
            codes.append(
                client.post(f"{url}/close", json={"reason": "test"}, headers=admin).status_code
            )
        finally:
            stop.set()
            writer.join(30)
        assert codes == [200] * 41, codes


# --- roles: dead letters, images, login -----------------------------------------------------


def test_dead_letters_are_scoped_by_site_and_kind(api: Api) -> None:
    from tests.test_hardening_ingest import _event_json

    client, hub, admin = api
    ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats())
    north, south = (
        event_topic("campus-n", "box-1", EventKind.INTRUSION),
        event_topic("campus-s", "box-9", EventKind.INTRUSION),
    )
    face = event_topic("campus-n", "box-1", EventKind.FACE)
    bad = {**_event_json(hub.clock()), "frame_width": -1}
    ingestor.ingest(
        [
            Inbound(north, json.dumps(bad).encode()),
            Inbound(south, json.dumps(bad).encode()),
            Inbound(face, json.dumps(bad).encode()),
            Inbound("ringwatch/v1/events/campus-n", b"no device in this topic"),
            Inbound("elsewhere/campus_n/x", b"not ours"),
        ]
    )
    tech = make_user(client, admin, "tech-dl", "technician", sites=["campus-n"])
    auditor = make_user(client, admin, "aud-dl", "auditor")

    def topics(headers: dict[str, str]) -> set[str]:
        res = client.get("/api/v1/dead-letters", headers=headers)
        assert res.status_code == 200, res.text
        return {d["topic"] for d in res.json()}

    mine = topics(tech)
    assert north in mine and "ringwatch/v1/events/campus-n" not in mine
    assert south not in mine and face not in mine and "elsewhere/campus_n/x" not in mine
    assert {north, south, face, "elsewhere/campus_n/x"} <= topics(admin) == topics(auditor)


def _scene() -> bytes:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)  # half the 640x480 frame
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return bytes(buf)


def _decoded(jpeg: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, np.uint8)


def test_intrusion_snapshots_show_people_only_to_roles_that_may_see_them(api: Api) -> None:
    from tests.test_hardening_ingest import _event_json

    client, hub, admin = api
    scene = _scene()
    box = {"x1": 300.0, "y1": 100.0, "x2": 400.0, "y2": 400.0, "label": "person"}
    body = _event_json(hub.clock(), boxes=[box], snapshot_jpeg=base64.b64encode(scene).decode())
    topic = event_topic("campus-n", "box-1", EventKind.INTRUSION)
    Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats()).ingest(
        [Inbound(topic, json.dumps(body).encode())]
    )
    url = f"/api/v1/dashboard/events/{body['event_id']}/snapshot"
    tech = make_user(client, admin, "tech-img", "technician", sites=["campus-n"])
    officer = make_user(client, admin, "off-img", "station_officer", stations=["st-north"])
    for who, headers in (("admin", admin), ("officer", officer)):
        res = client.get(url, headers=headers)
        assert res.status_code == 200, (who, res.text)
        assert res.content == scene and res.headers["x-image-policy"] == "original"
    res = client.get(url, headers=tech)
    assert res.status_code == 200, res.text
    assert res.headers["x-image-policy"] == "persons_pixelated"
    shown, original = _decoded(res.content).astype(int), _decoded(scene).astype(int)
    inside = shown[75:175, 160:190]  # the box, scaled from the 640x480 frame
    # random noise inside the box became a few flat blocks; outside it is kept
    assert np.abs(np.diff(inside, axis=1)).mean() < 0.2 * np.abs(np.diff(original, axis=1)).mean()
    assert np.abs(shown[:, :100] - original[:, :100]).mean() < 8
    with hub.sessions.begin() as session:
        rows = session.scalars(
            sa.select(t.AuditEntry).where(t.AuditEntry.entity == "event_snapshot")
        ).all()
        assert sorted(r.detail["policy"] for r in rows) == [
            "original",
            "original",
            "persons_pixelated",
        ]


def test_release_pixelates_a_whole_frame_without_boxes() -> None:
    from ringwatch.hub.image_policy import release
    from ringwatch.hub.roles import Role

    scene = _scene()
    assert release(scene, Role.ADMIN).jpeg == scene
    for role in (Role.TECHNICIAN, Role.PROPERTY_MANAGER):
        shown = release(scene, role)
        assert shown.policy == "pixelated"
        pixels = _decoded(shown.jpeg).astype(int)
        assert np.abs(np.diff(pixels, axis=1)).mean() < 10  # flat blocks, not the noise


def test_repeated_failed_logins_lock_the_name_and_unknown_users_cost_the_same(
    tmp_path: Path,
) -> None:
    from ringwatch.hub import security

    now = [dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)]
    with database("sqlite", tmp_path, None) as url:
        create_admin(url)
        app = create_app(settings(url), hub_config(), ingest=False, clock=lambda: now[0])
        with TestClient(app) as client:
            login = "/api/v1/login/access-token"

            def attempt(user: str, password: str) -> Any:
                return client.post(login, data={"username": user, "password": password})

            unknown, wrong = attempt("nobody", "guess-0"), attempt("admin", "guess-0")
            assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())
            assert security._DUMMY_HASH  # the unknown user paid for an argon2 verify
            for i in range(1, 4):
                assert attempt("admin", f"guess-{i}").status_code == 400
            assert attempt("admin", "guess-4").status_code == 400  # the 5th: locked now
            locked = attempt("admin", "admin-password")
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) == 300
            now[0] += dt.timedelta(minutes=5, seconds=1)
            assert attempt("admin", "admin-password").status_code == 200
            with app.state.hub.sessions.begin() as session:
                failed = session.scalars(
                    sa.select(t.AuditEntry).where(t.AuditEntry.action == "login_failed")
                ).all()
                assert len(failed) == 6


@pytest.fixture
def zone_hub(broker: Broker, tmp_path: Path) -> Iterator[Api]:
    """A hub with MQTT (its zone link talks to the stand-in device of test_zone_editor)."""
    with database("sqlite", tmp_path, None) as url:
        create_admin(url)
        tag = uuid.uuid4().hex[:8]
        config = hub_config(ingest={"group": f"g{tag}", "worker": f"w{tag}"})
        app = create_app(settings(url, broker.url), config)
        with TestClient(app) as client:
            running: Hub = app.state.hub
            assert running.zone_link is not None and running.zone_link.connected.wait(10)
            yield client, running, token(client, "admin", "admin-password")


def test_zone_previews_and_snapshots_follow_the_image_policy_and_are_audited(
    zone_hub: Api, broker: Broker
) -> None:
    client, app_hub, admin = zone_hub
    tech = make_user(client, admin, "tech-prev", "technician", sites=["campus-n"])
    device = Device(broker.url)
    try:
        url = "/api/v1/zones/campus-n/gate"
        shot = client.post(f"{url}/snapshot", headers=tech)
        assert shot.status_code == 200, shot.text
        assert shot.json()["policy"] == "pixelated" and shot.json()["stale"] is True
        for headers, policy in ((admin, "original"), (tech, "pixelated")):
            res = client.get(f"{url}/preview.jpg", headers=headers)
            assert res.status_code == 200 and res.headers["x-image-policy"] == policy
    finally:
        device.close()
    with app_hub.sessions.begin() as session:
        rows = session.scalars(
            sa.select(t.AuditEntry).where(
                t.AuditEntry.entity.in_(["camera_preview", "camera_snapshot"])
            )
        ).all()
        assert sorted((r.entity, r.actor, r.detail["policy"]) for r in rows) == [
            ("camera_preview", "admin", "original"),
            ("camera_preview", "tech-prev", "pixelated"),
            ("camera_snapshot", "tech-prev", "pixelated"),
        ]
