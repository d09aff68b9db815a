"""Zone editor, hub side, against a real Mosquitto: saves validated with the contract's
CameraZones, stored, audited (before/after), pushed on the command topic; pending until the
device answers, accepted/rejected after; a pending push re-sent when the device's retained
status comes back online; snapshots asked over the command topic; the preview drawn with the
edge's ZoneAnnotator. The device here is a small stand-in built on the edge's MQTT client
(birth/will status like the agent); the real `ringwatch edge run` is in
test_zone_editor_browser.py."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.messages import (
    DeviceState,
    DeviceStatus,
    SnapshotReply,
    SnapshotRequest,
    ZoneConfigAnswer,
    ZoneConfigPush,
    ZonesOrigin,
    decode,
    encode,
)
from ringwatch.contract.topics import Command, command_topic, reply_topic, status_topic
from ringwatch.contract.zones import CameraZones
from ringwatch.edge.mqtt import Message, MqttClient, Outgoing
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.db import MIGRATIONS
from ringwatch.hub.zone_configs import InvalidZones, validate_zones
from ringwatch.hub.zone_tables import ZonePush
from tests.hub_fixtures import (
    BACKENDS,
    create_admin,
    database,
    hub_config,
    make_user,
    settings,
    token,
)
from tests.services import Broker, wait_for

REPO = Path(__file__).resolve().parent.parent
SITE, DEVICE, CAMERA = "campus-n", "box-1", "gate"
INNER = {"id": "walkway", "role": "inner", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]]}
TWO_POINTS = {"id": "bad", "role": "inner", "polygon": [[0.1, 0.1], [0.5, 0.5]]}
URL = f"/api/v1/zones/{SITE}/{CAMERA}"


class Device:
    """A stand-in edge box: retained online/offline status, answers pushes and snapshots.
    A push whose zones contain an id starting with ``refuse`` is rejected with a reason.
    With ``running`` it reports the zones it runs in each snapshot, as the edge does."""

    def __init__(self, broker_url: str, running: CameraZones | None = None) -> None:
        self.pushes: list[ZoneConfigPush] = []
        self.running, self.origin = running, ZonesOrigin.SITE_FILE
        self.lock = threading.Lock()
        status = status_topic(SITE, DEVICE)
        self.client = MqttClient(
            broker_url,
            f"fake-{DEVICE}",
            session_expiry_s=0,
            will=Outgoing(status, _status(DeviceState.OFFLINE)),
            birth=lambda: Outgoing(status, _status(DeviceState.ONLINE)),
            farewell=lambda: Outgoing(status, _status(DeviceState.OFFLINE)),
        )
        self.client.subscribe(command_topic(SITE, DEVICE, Command.ZONE_CONFIG), self._push)
        self.client.subscribe(command_topic(SITE, DEVICE, Command.SNAPSHOT), self._snapshot)
        self.client.start()
        assert self.client.wait_connected(10)

    def _push(self, message: Message) -> None:
        push = decode(ZoneConfigPush, message.payload)
        with self.lock:
            self.pushes.append(push)
        refused = [z.id for z in push.zones.zones if z.id.startswith("refuse")]
        answer = ZoneConfigAnswer(
            request_id=push.request_id,
            camera=push.camera,
            accepted=not refused,
            reason=f"zone {refused[0]} overlaps the neighbour's garden" if refused else None,
        )
        if not refused and self.running is not None:
            self.running, self.origin = push.zones, ZonesOrigin.PUSHED
        self.client.publish(reply_topic(SITE, DEVICE, Command.ZONE_CONFIG), encode(answer))

    def _snapshot(self, message: Message) -> None:
        request = decode(SnapshotRequest, message.payload)
        image = np.full((90, 160, 3), 40, np.uint8)
        ok, buf = cv2.imencode(".jpg", image)
        assert ok
        reply = SnapshotReply(
            request_id=request.request_id,
            camera=request.camera,
            jpeg=base64.b64encode(bytes(buf)),
            width=160,
            height=90,
            zones=self.running,
            zones_origin=None if self.running is None else self.origin,
        )
        self.client.publish(reply_topic(SITE, DEVICE, Command.SNAPSHOT), encode(reply))

    def close(self) -> None:
        self.client.close()


def _status(state: DeviceState) -> bytes:
    return encode(DeviceStatus(site=SITE, device=DEVICE, state=state))


@pytest.fixture
def hub(
    request: pytest.FixtureRequest, broker: Broker, tmp_path: Path
) -> Iterator[tuple[TestClient, Hub, dict[str, str]]]:
    """A hub on SQLite, or on the backend named by an indirect parameter."""
    backend = getattr(request, "param", "sqlite")
    pg = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with database(backend, tmp_path, pg) as url:
        create_admin(url)
        tag = uuid.uuid4().hex[:8]
        ingest = {"group": f"g{tag}", "worker": f"w{tag}"}
        app = create_app(settings(url, broker.url), hub_config(ingest=ingest))
        with TestClient(app) as client:
            hub: Hub = app.state.hub
            assert hub.zone_link is not None and hub.zone_link.connected.wait(10)
            yield client, hub, token(client, "admin", "admin-password")


def _config(*zones: dict[str, Any]) -> dict[str, Any]:
    return {"default_ring": "outer", "zones": list(zones)}


def _state(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    res = client.get(URL, headers=headers)
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        (_config(TWO_POINTS), "zones[0].polygon: need >= 3 points, got 2"),
        (_config({**INNER, "role": "garden"}), "zones[0].role: Input should be 'outer'"),
        (_config({**INNER, "schedule": "nights"}), "schedule 'nights' is not defined"),
        (_config(INNER, {**INNER}), "ids must be unique within a camera"),
        (
            {"lines": [{"id": "gate", "a": [0.2, 0.2], "b": [0.2, 0.2]}]},
            "lines[0]: line ends a and b are the same point",
        ),
    ],
)
def test_the_hub_validates_with_the_contract_models(zones: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidZones) as caught:
        validate_zones(zones)
    assert message in str(caught.value)
    assert caught.value.errors and all(path for path, _ in caught.value.errors)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_chain_is_linear_and_matches_the_tables(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from ringwatch.hub.db import make_engine, migrate
    from ringwatch.hub.tables import Base

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()}"
    revisions = list(script.walk_revisions())
    assert all(len(r._all_down_revisions) <= 1 for r in revisions), "a merge or branch"
    pg = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with database(backend, tmp_path, pg) as url:
        engine = make_engine(url)
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        engine.dispose()
    ours = [d for d in diff if "zone" in repr(d)]
    assert not ours, ours


@pytest.mark.parametrize("hub", BACKENDS, indirect=True)
def test_save_pushes_and_shows_the_device_answer(
    hub: tuple[TestClient, Hub, dict[str, str]], broker: Broker
) -> None:
    client, app_hub, admin = hub
    device = Device(broker.url)
    try:
        wait_for(
            lambda: app_hub.zones is not None and bool(app_hub.zones.online(SITE, DEVICE)),
            10,
            "online",
        )
        assert _state(client, admin)["state"] is None  # never edited: the edge's file rules

        # invalid: refused with the validation message, nothing stored or pushed
        res = client.put(URL, json=_config(TWO_POINTS), headers=admin)
        assert res.status_code == 422
        assert res.json()["detail"]["errors"] == [
            {"path": "zones[0].polygon", "message": "need >= 3 points, got 2"}
        ]
        assert _state(client, admin)["zones"] is None and not device.pushes

        # valid: pending, pushed with its request id, then accepted
        res = client.put(URL, json=_config(INNER), headers={**admin, "X-Reason": "new yard"})
        assert res.status_code == 200, res.text
        first = res.json()
        assert first["version"] == 1 and first["zones"]["zones"][0]["id"] == "walkway"
        wait_for(lambda: _state(client, admin)["state"] == "accepted", 10, "accepted")
        assert [p.request_id for p in device.pushes] == [first["request_id"]]
        assert device.pushes[0].zones.zones[0].polygon[0] == (0.1, 0.5)
        accepted = _state(client, admin)
        assert accepted["applied_version"] == 1 and accepted["reason"] is None

        # refused by the device: rejected with the reason; the applied version stays 1
        refused = {**INNER, "id": "refuse-garden"}
        res = client.put(URL, json=_config(INNER, refused), headers=admin)
        assert res.status_code == 200 and res.json()["state"] == "pending"
        wait_for(lambda: _state(client, admin)["state"] == "rejected", 10, "rejected")
        rejected = _state(client, admin)
        assert rejected["version"] == 2 and rejected["applied_version"] == 1
        assert rejected["reason"] == "zone refuse-garden overlaps the neighbour's garden"
        assert rejected["pushes"] == 1  # this version was sent once

        # every change audited: who, when, before and after; and each answer
        audit = client.get("/api/v1/audit?entity=camera_zones", headers=admin).json()
        updates = [a for a in audit if a["action"] == "update"]
        assert [(a["actor"], a["detail"]["version"]) for a in updates] == [
            ("admin", 1),
            ("admin", 2),
        ]
        assert updates[0]["reason"] == "new yard" and updates[0]["detail"]["before"] is None
        assert updates[1]["detail"]["before"] == first["zones"]
        assert [z["id"] for z in updates[1]["detail"]["after"]["zones"]] == [
            "walkway",
            "refuse-garden",
        ]
        answers = [(a["action"], a["actor"]) for a in audit if a["action"] != "update"]
        assert answers == [("accepted", f"{SITE}/{DEVICE}"), ("rejected", f"{SITE}/{DEVICE}")]
    finally:
        device.close()


def test_a_push_while_the_device_is_offline_stays_pending_and_applies_when_it_returns(
    hub: tuple[TestClient, Hub, dict[str, str]], broker: Broker
) -> None:
    client, app_hub, admin = hub
    zones = app_hub.zones
    assert zones is not None
    device = Device(broker.url)
    wait_for(lambda: zones.online(SITE, DEVICE) is True, 10, "online")
    device.close()
    wait_for(lambda: zones.online(SITE, DEVICE) is False, 10, "offline")

    res = client.put(URL, json=_config(INNER), headers=admin)
    assert res.status_code == 200, res.text
    saved = res.json()
    time.sleep(0.5)
    state = _state(client, admin)
    assert (state["state"], state["device_online"]) == ("pending", False)

    back = Device(broker.url)  # same client id, clean session: only the re-push reaches it
    try:
        wait_for(lambda: _state(client, admin)["state"] == "accepted", 10, "accepted on return")
        assert [p.request_id for p in back.pushes] == [saved["request_id"]]
        with app_hub.sessions() as session:
            push = session.scalar(sa.select(ZonePush))
            assert push is not None and push.state == "accepted"
        assert _state(client, admin)["pushes"] == 2  # the save, and once on return
    finally:
        back.close()


def test_snapshot_and_preview_drawn_by_the_edge_annotator(
    hub: tuple[TestClient, Hub, dict[str, str]], broker: Broker
) -> None:
    client, _, admin = hub
    device = Device(broker.url)
    try:
        res = client.post(f"{URL}/snapshot", headers=admin)
        assert res.status_code == 200, res.text
        shot = res.json()
        assert (shot["width"], shot["height"]) == (160, 90)
        assert base64.b64decode(shot["jpeg"]).startswith(b"\xff\xd8")
        plain = _image(client.get(f"{URL}/preview.jpg", headers=admin).content)
        assert client.put(URL, json=_config(INNER), headers=admin).status_code == 200
        drawn = _image(client.get(f"{URL}/preview.jpg", headers=admin).content)
        # the inner ring is tinted red (BGR) inside the polygon, untouched above it
        inside, outside = drawn[70, 80].astype(int), drawn[10, 80].astype(int)
        assert inside[2] - plain[70, 80, 2] > 20 and inside[2] > inside[1] + 20
        assert abs(int(outside[2]) - int(plain[10, 80, 2])) < 8
    finally:
        device.close()


def test_the_editor_sees_the_zones_the_device_runs(
    hub: tuple[TestClient, Hub, dict[str, str]], broker: Broker
) -> None:
    """Nothing saved on the hub: the snapshot says what the camera runs (its site file) and
    the preview draws it; after a push, the same zones, pushed, and they match."""
    client, _, admin = hub
    site_file = CameraZones.model_validate(_config(INNER))
    device = Device(broker.url, running=site_file)
    try:
        shot = client.post(f"{URL}/snapshot", headers=admin).json()
        assert CameraZones.model_validate(shot["running_zones"]) == site_file
        assert (shot["running_origin"], shot["running_matches"]) == ("site_file", None)
        drawn = _image(client.get(f"{URL}/preview.jpg", headers=admin).content)
        inside = drawn[70, 80].astype(int)  # the running inner ring, tinted red (BGR)
        assert inside[2] > inside[1] + 20, inside
        other = _config({**INNER, "id": "court", "polygon": [[0, 0], [0.5, 0], [0.5, 0.4]]})
        assert client.put(URL, json=other, headers=admin).status_code == 200
        wait_for(lambda: _state(client, admin)["state"] == "accepted", 10, "the push accepted")
        shot = client.post(f"{URL}/snapshot", headers=admin).json()
        assert [z["id"] for z in shot["running_zones"]["zones"]] == ["court"]
        assert (shot["running_origin"], shot["running_matches"]) == ("pushed", True)
        device.running = site_file  # e.g. the box was reset to its site file
        shot = client.post(f"{URL}/snapshot", headers=admin).json()
        assert shot["running_matches"] is False
    finally:
        device.close()


def test_no_snapshot_from_an_absent_device_says_so(
    hub: tuple[TestClient, Hub, dict[str, str]],
) -> None:
    client, app_hub, admin = hub
    assert app_hub.zones is not None
    app_hub.zones.snapshot_timeout_s = 1.0
    start = time.monotonic()
    res = client.post("/api/v1/zones/campus-s/door/snapshot", headers=admin)
    assert res.status_code == 504
    assert "box-9" in res.json()["detail"] and "sent no snapshot" in res.json()["detail"]
    assert 1.0 <= time.monotonic() - start < 5


def test_roles_and_scope(hub: tuple[TestClient, Hub, dict[str, str]]) -> None:
    client, _, admin = hub
    north = make_user(client, admin, "tech-n", "technician", sites=[SITE])
    auditor = make_user(client, admin, "aud", "auditor")
    officer = make_user(client, admin, "off-n", "station_officer", stations=["st-north"])
    assert client.put(URL, json=_config(INNER), headers=north).status_code == 200
    assert (
        client.put("/api/v1/zones/campus-s/door", json=_config(), headers=north).status_code == 403
    )
    assert client.put(URL, json=_config(INNER), headers=auditor).status_code == 403
    assert client.put(URL, json=_config(INNER), headers=officer).status_code == 403
    assert client.get(URL, headers=auditor).status_code == 200
    listed = client.get("/api/v1/zones/cameras", headers=north).json()
    assert [(c["site"], c["camera"], c["state"]) for c in listed] == [(SITE, CAMERA, "pending")]
    assert client.get("/api/v1/zones/campus-n/nope", headers=admin).status_code == 404


def _image(jpeg: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, np.uint8)


def test_a_camera_starts_from_its_edge_site_file(
    hub: tuple[TestClient, Hub, dict[str, str]],
) -> None:
    client, _, admin = hub
    text = (REPO / "configs/site-campus.yaml").read_text()
    res = client.post(f"{URL}/from-site-file", json={"yaml": text}, headers=admin)
    assert res.status_code == 422
    assert "site file is for campus-north/box-gate-01" in res.json()["detail"]
    ours = text.replace("site: campus-north", f"site: {SITE}").replace(
        "device: box-gate-01", f"device: {DEVICE}"
    )
    res = client.post(f"{URL}/from-site-file", json={"yaml": ours}, headers=admin)
    assert res.status_code == 200, res.text
    zones = res.json()
    assert [(z["id"], z["role"]) for z in zones["zones"]] == [
        ("road", "outer"),
        ("gate-area", "perimeter"),
        ("yard", "inner"),
    ]
    assert [ln["id"] for ln in zones["lines"]] == ["gate-line"]
    assert [m["id"] for m in zones["masks"]] == ["neighbour-window"]
    assert list(zones["schedules"]) == ["school-hours"]
    assert _state(client, admin)["zones"] is None  # loaded into the editor, not saved
    # what the editor then saves round-trips through the same models
    assert client.put(URL, json=zones, headers=admin).status_code == 200
    assert _state(client, admin)["zones"] == zones
    bad = ours.replace('end: "17:00"', 'end: "06:00"')
    res = client.post(f"{URL}/from-site-file", json={"yaml": bad}, headers=admin)
    assert res.status_code == 422 and "must be after start" in res.json()["detail"]


def test_the_hub_draws_with_the_edge_annotator_without_the_edge_runtime() -> None:
    """The preview and the site-file import load only the edge's annotator and config models
    (contract + numpy + OpenCV + pydantic), never capture, pipeline, outbox or uplink."""
    import subprocess
    import sys

    script = """
import sys
import cv2, numpy as np
from ringwatch.hub.app import create_app
from ringwatch.hub.zone_configs import Snapshot, ZoneConfigs, zones_from_site_file, validate_zones
import datetime as dt
zones = ZoneConfigs(None, lambda: dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
ok, jpeg = cv2.imencode(".jpg", np.zeros((90, 160, 3), np.uint8))
zones._snapshots[("s", "c")] = Snapshot(bytes(jpeg), 160, 90, dt.datetime.now(dt.UTC))
z = validate_zones({"zones": [{"id": "a", "role": "inner", "polygon": [[0, 0], [1, 0], [1, 1]]}]})
assert zones.annotated("s", "c", z)[:2] == b"\\xff\\xd8"
text = open("configs/site-campus.yaml").read()
zones_from_site_file(text, "campus-north", "box-gate-01", "gate")
runtime = ["agent", "capture", "outbox", "uplink", "mqtt", "tracking", "rules", "shed"]
loaded = [m for m in runtime if f"ringwatch.edge.{m}" in sys.modules]
assert not loaded, loaded
assert "ringwatch.edge.annotate" in sys.modules
print("ok")
"""
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
