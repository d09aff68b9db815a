"""Role matrix (issue 11): every route of the hub's OpenAPI schema x every role, with the
ids of another site's objects (campus-n: an event with a snapshot, its incident, a dead
letter, a watch-list person, a camera). Users scoped elsewhere never get those objects
(no 2xx on them, no campus-n in a list); nobody gets a server error. A real hub (SQLite)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from tests.hub_fixtures import (
    add_quarantine,
    create_admin,
    database,
    hub_config,
    make_user,
    review_due,
    token,
)
from tests.hub_fixtures import settings as hub_settings
from tests.test_hardening_ingest import _event_json

STREAMS = {"/api/v1/incidents/stream", "/api/v1/dashboard/stream"}
SKIP = {"/api/v1/login/access-token", "/api/v1/dashboard/session"}  # no scope to cross
BODIES = {  # bodies that pass validation, so the scope check is what answers
    ("put", "/api/v1/zones/{site}/{camera}"): {"zones": []},
    ("post", "/api/v1/incidents/{incident_id}/close"): {"reason": "role matrix"},
    ("post", "/api/v1/incidents/{incident_id}/confirm"): {"reason": "role matrix"},
    ("post", "/api/v1/incidents/{incident_id}/reject"): {"reason": "role matrix"},
    ("post", "/api/v1/incidents/{incident_id}/steps/{stage}"): {"note": "role matrix"},
    ("patch", "/api/v1/sites/{site_id}"): {"name": "Renamed"},
    ("patch", "/api/v1/sites/{site_id}/cameras/{camera_id}"): {"name": "Renamed"},
    ("post", "/api/v1/sites/{site_id}/devices"): {"id": "box-x"},
    ("post", "/api/v1/zones/{site}/{camera}/from-site-file"): {"yaml": "site: campus-n\n"},
}


def _jpeg() -> str:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
    assert ok
    return base64.b64encode(bytes(buf)).decode()


def _quarantine(hub: Hub) -> str:
    """A fresh hub-only flood quarantine of box-1 (each role gets its own: a lift by one
    role must not hide a missing scope check from the next)."""
    return str(add_quarantine(hub.sessions, hub.clock()))


def _world(client: TestClient, hub: Hub, admin: dict[str, str]) -> dict[str, str]:
    """campus-n objects; returns the path parameter values naming them."""
    body = _event_json(hub.clock(), snapshot_jpeg=_jpeg())
    topic = event_topic("campus-n", "box-1", EventKind.INTRUSION)
    ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, IngestStats(), hub._stored)
    ingestor.ingest([Inbound(topic, json.dumps(body).encode()), Inbound(topic, b"junk")])
    with hub.sessions.begin() as session:
        incident = session.scalars(sa.select(Incident.id)).one()
    person = {
        "display_name": "Foreign Person",
        "tier": "red",
        "reason": "role matrix entry",
        "case_reference": "CASE-RM",
        "legal_basis": "court order (test)",
        "station_id": "st-north",
        "review_due": review_due(),
    }
    res = client.post("/api/v1/persons", json=person, headers=admin)
    assert res.status_code == 201, res.text
    media = client.get(f"/api/v1/incidents/{incident}/media", headers=admin)
    assert media.status_code == 200 and media.json(), media.text  # the event's snapshot
    return {
        "media_id": media.json()[0]["id"],
        "site_id": "campus-n",
        "site": "campus-n",
        "camera_id": "gate",
        "camera": "gate",
        "event_id": body["event_id"],
        "incident_id": str(incident),
        "person_id": str(res.json()["id"]),
        "template_id": "1",
        "sighting_id": "1",
        "stage": "acknowledged",
        "quarantine_id": _quarantine(hub),
    }


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("matrix")
    with database("sqlite", tmp, None) as url:
        create_admin(url)
        app = create_app(hub_settings(url), hub_config(), ingest=False)
        with TestClient(app) as client:
            hub: Hub = app.state.hub
            assert hub.zones is not None
            hub.zones.snapshot_timeout_s = 0.1
            admin = token(client, "admin", "admin-password")
            ids = _world(client, hub, admin)
            res = client.post("/api/v1/managers", json={"id": "pm-x", "name": "X"}, headers=admin)
            assert res.status_code == 201, res.text
            users = {
                "admin": admin,
                "auditor": make_user(client, admin, "rm-aud", "auditor"),
                "station_officer": make_user(
                    client, admin, "rm-off", "station_officer", stations=["st-south"]
                ),
                "technician": make_user(client, admin, "rm-tech", "technician", sites=["campus-s"]),
                "property_manager": make_user(
                    client, admin, "rm-pm", "property_manager", managers=["pm-x"]
                ),
            }
            yield client, app.openapi()["paths"], ids, users, hub


def _operations(paths: dict[str, Any]) -> list[tuple[str, str]]:
    ops = [(m, p) for p, methods in paths.items() for m in methods]
    return [(m, p) for m, p in ops if p not in STREAMS | SKIP]


FOREIGN = ["station_officer", "technician", "property_manager"]


@pytest.mark.parametrize("role", ["admin", "auditor", *FOREIGN])
def test_every_route_for_every_role_with_another_sites_ids(matrix: Any, role: str) -> None:
    client, paths, ids, users, hub = matrix
    with hub.sessions.begin() as session:  # the one before was lifted (or is another role's)
        session.execute(sa.update(t.DeviceQuarantine).values(lifted_at=hub.clock()))
    ids = {**ids, "quarantine_id": _quarantine(hub)}
    leaks, errors = [], []
    markers = [ids["event_id"], ids["incident_id"], "Foreign Person", "campus-n"]
    for method, path in _operations(paths):
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
        kwargs: dict[str, Any] = {"headers": users[role]}
        if method in ("post", "put", "patch"):
            kwargs["json"] = BODIES.get((method, path), {})
        res = client.request(method.upper(), url, **kwargs)
        if res.status_code >= 500 and not (path.endswith("/snapshot") and res.status_code == 504):
            errors.append(f"{method} {url}: {res.status_code}")
        if role not in FOREIGN or res.status_code >= 300:
            continue
        named = "{" in path
        text = res.text
        if named or any(m in text for m in markers):
            leaks.append(f"{method} {url}: {res.status_code} {text[:120]}")
    assert errors == [], errors
    assert leaks == [], leaks


def test_the_matrix_covers_every_route(matrix: Any) -> None:
    _, paths, ids, _, _ = matrix
    ops = _operations(paths)
    assert len(ops) >= 45
    for _, path in ops:
        assert all(name in ids for name in re.findall(r"\{(\w+)\}", path)), path
