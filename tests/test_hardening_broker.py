"""Broker identities (issue 11): with the shipped configs/mosquitto.conf + mosquitto.acl on a
real Mosquitto, a device cannot take another device's client id (it used to knock box-1
offline and fire its last will), and the hub's two links (ingest, zone editor) each keep
their own session."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.settings import HubSettings
from tests.hub_fixtures import SECRET, hub_config
from tests.services import shipped_broker

REPO = Path(__file__).resolve().parents[1]
PASSWORDS = {"hub": "hub-secret-1", "hub-zones": "hub-secret-1", "box-1": "b1-pw", "box-9": "b9-pw"}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A Mosquitto running the shipped config and ACL; yields its port and log file."""
    with shipped_broker(tmp_path_factory.mktemp("shipped-broker"), PASSWORDS) as broker:
        assert "use_username_as_clientid true" in broker.conf.read_text()
        yield broker.port, broker.log


class Box:
    """A paho client logging in as ``user`` and asking for ``client_id``."""

    def __init__(self, port: int, user: str, client_id: str) -> None:
        self.connected = threading.Event()
        self.disconnects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(user, PASSWORDS[user])
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = self._gone
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10), f"{user} did not connect"

    def _gone(self, *args: object) -> None:
        self.disconnects += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_cannot_take_another_devices_client_id(shipped: tuple[int, Path]) -> None:
    port, log = shipped
    victim = Box(port, "box-1", "box-1")
    attackers = []
    try:
        for _ in range(3):
            attackers.append(Box(port, "box-9", "box-1"))  # box-9's login, box-1's id
            time.sleep(0.3)
        time.sleep(1)
        assert victim.disconnects == 0 and victim.client.is_connected()
        text = log.read_text(errors="replace")
        assert "box-1 already connected" not in text.replace("Client ", "")
    finally:
        for box in [victim, *attackers]:
            box.close()


def test_the_hub_links_keep_their_own_sessions(shipped: tuple[int, Path], tmp_path: Path) -> None:
    port, log = shipped
    secret = tmp_path / "broker-password"
    secret.write_text(PASSWORDS["hub"] + "\n")
    settings = HubSettings(
        database_url=f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        broker_url=f"mqtt://127.0.0.1:{port}",
        jwt_secret=SECRET,
        template_key=SECRET,
        broker_username="hub",
        broker_password_file=secret,
    )
    app = create_app(settings, hub_config())
    hub: Hub = app.state.hub
    with TestClient(app):
        assert hub.link is not None and hub.zone_link is not None
        assert hub.link.connected.wait(10) and hub.zone_link.connected.wait(10)
        before = log.read_text(errors="replace").count("already connected")
        time.sleep(2)  # two links sharing one client id would knock each other off by now
        assert hub.link.connected.is_set() and hub.zone_link.connected.is_set()
        assert log.read_text(errors="replace").count("already connected") == before
