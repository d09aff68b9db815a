"""Inventory from the config file and the API, health and sensor ingest, the private
broker, and the CLI (migrate, create-user) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringwatch.cli import main
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Health, SensorReading, encode
from ringwatch.contract.topics import EventKind, event_topic, health_topic, sensor_topic
from ringwatch.errors import ConfigError
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.ingest import Inbound, Ingestor
from ringwatch.hub.inventory import load_hub_config
from tests.hub_fixtures import (
    BACKENDS,
    Edge,
    create_admin,
    database,
    health,
    hub_config,
    settings,
    token,
)

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(params=BACKENDS)
def api(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, Hub, dict[str, str]]]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        create_admin(url)
        app = create_app(settings(url), hub_config(), ingest=False)
        with TestClient(app) as client:
            yield client, app.state.hub, token(client, "admin", "admin-password")


def _event(site: str, device: str, camera: str) -> Inbound:
    event = Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": NOW,
            "site": site,
            "device": device,
            "camera": camera,
            "kind": "zone",
            "phase": "start",
            "ring": "outer",
            "frame_width": 640,
            "frame_height": 360,
        }
    )
    return Inbound(event_topic(site, device, EventKind.ZONE), encode(event))


def test_devices_added_through_the_api_are_accepted_and_health_is_kept(
    api: tuple[TestClient, Hub, dict[str, str]],
) -> None:
    client, hub, admin = api
    ingest = Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats)
    assert ingest.ingest([_event("campus-n", "box-2", "yard")]).dead == ["unknown_device"]
    res = client.post("/api/v1/sites/campus-n/devices", json={"id": "box-2"}, headers=admin)
    assert res.status_code == 201, res.text
    assert ingest.ingest([_event("campus-n", "box-2", "yard")]).dead == ["unknown_camera"]
    body = {"id": "yard", "device_id": "box-2", "default_ring": "inner"}
    res = client.post("/api/v1/sites/campus-n/cameras", json=body, headers=admin)
    assert res.status_code == 201, res.text
    result = ingest.ingest([_event("campus-n", "box-2", "yard")])
    assert (result.stored, result.dead) == (1, [])

    health = Health(
        site="campus-n",
        device="box-2",
        at=NOW,
        agent_version="1.2.3",
        uptime_s=5,
        outbox_depth=4,
        outbox_dropped=0,
    )
    reading = SensorReading(
        site="campus-n",
        shed="a",
        bay="b1",
        current_a=3,
        voltage_v=48,
        temperature_c=31,
        measured_at=NOW,
    )
    result = ingest.ingest(
        [
            Inbound(health_topic("campus-n", "box-2"), encode(health)),
            Inbound(sensor_topic("campus-n", "a", "b1"), encode(reading)),
            Inbound(sensor_topic("nowhere", "a", "b1"), encode(reading)),  # topic != payload
        ]
    )
    assert result.dead == ["topic_mismatch"]
    devices = client.get("/api/v1/sites/campus-n/devices", headers=admin).json()
    box = next(d for d in devices if d["id"] == "box-2")
    assert box["agent_version"] == "1.2.3" and box["last_health"]["outbox_depth"] == 4


def test_config_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "hub-sites.yaml"
    path.write_text("sites:\n  - id: s1\n    name: S\n    station: nope\n")
    with pytest.raises(
        ConfigError, match=r"hub-sites.yaml: sites\[0\]\.station: unknown station 'nope'"
    ):
        load_hub_config(path)
    path.write_text(
        "sites:\n  - id: s1\n    name: S\n    devices: [{id: d, cameras: [{id: c, rung: x}]}]\n"
    )
    with pytest.raises(
        ConfigError, match=r"sites\[0\]\.devices\[0\]\.cameras\[0\]\.rung: unknown key"
    ):
        load_hub_config(path)


def test_without_a_broker_url_the_hub_starts_a_private_mosquitto(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    create_admin(url)
    app = create_app(settings(url, None), hub_config(), ingest=True)
    hub: Hub = app.state.hub
    with TestClient(app) as client:
        assert hub.broker is not None and hub.broker_url == hub.broker.url
        assert hub.link is not None and hub.link.connected.wait(10)
        edge = Edge(hub.broker.host, hub.broker.port, "campus-n", "box-1")
        try:
            inbound = _event("campus-n", "box-1", "gate")
            edge.publish_raw(inbound.topic, inbound.payload)
            assert (
                len(edge.receipted_ids({Event.model_validate_json(inbound.payload).event_id: 1}))
                == 1
            )
        finally:
            edge.close()
        assert health(client)["ingest"]["stored"] == 1
        process = hub.broker.process
    assert process is not None and process.poll() is not None, "the broker is stopped with the hub"


def test_cli_migrate_and_create_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("RINGWATCH_HUB_DATABASE_URL", url)
    monkeypatch.setenv("RINGWATCH_HUB_NEW_PASSWORD", "first-admin-pw")
    assert main(["hub", "migrate"]) == 0
    assert "database at revision 0" in capsys.readouterr().out
    assert main(["hub", "create-user", "--username", "root"]) == 0
    assert main(["hub", "create-user", "--username", "root"]) == 2
    assert "already exists" in capsys.readouterr().err
    app = create_app(settings(url), hub_config(), ingest=False)
    with TestClient(app) as client:
        me = client.get("/api/v1/users/me", headers=token(client, "root", "first-admin-pw"))
        assert me.json()["role"] == "admin"


def test_serve_refuses_default_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RINGWATCH_HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    monkeypatch.delenv("RINGWATCH_HUB_JWT_SECRET", raising=False)
    monkeypatch.delenv("RINGWATCH_HUB_TEMPLATE_KEY", raising=False)
    assert main(["hub", "serve"]) == 2
    assert "RINGWATCH_HUB_JWT_SECRET" in capsys.readouterr().err
