"""The hub against a broker set up like production: a real Mosquitto with
``allow_anonymous false``, a password file made by ``mosquitto_passwd`` and the shipped
configs/mosquitto.acl. With the right login the hub ingests a device's event and the
device gets its receipt (and the ACL keeps the device to its own device segment); with a
wrong password the hub says so (log + /health) once and stops retrying."""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Receipt, decode, encode
from ringwatch.contract.topics import EventKind, event_topic, receipt_topic
from ringwatch.errors import ConfigError
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.mqtt import BrokerAddress, BrokerLogin
from ringwatch.hub.settings import HubSettings
from tests.hub_fixtures import SECRET, create_admin, health, hub_config
from tests.services import ShippedBroker, shipped_broker

REPO = Path(__file__).resolve().parents[1]
HUB_PASSWORD = "hub-broker-secret-1"
BOX_PASSWORD = "box-1-broker-secret"


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedBroker]:
    """Mosquitto with the shipped configs/mosquitto.conf (no TLS: the test has no
    certificates): the hub, its zone link and box-1."""
    logins = {"hub": HUB_PASSWORD, "hub-zones": HUB_PASSWORD, "box-1": BOX_PASSWORD}
    with shipped_broker(tmp_path_factory.mktemp("auth-broker"), logins) as broker:
        yield broker


class Device:
    """A device logging in as ``box-1`` (MQTT 5, so ACL refusals come back in the PUBACK)."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.receipts: queue.Queue[Receipt] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{user}-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self.receipts.put(
            decode(Receipt, bytes(m.payload))
        )
        self.client.on_publish = self._published
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        result, _ = self.client.subscribe(receipt_topic("campus-n", user), qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)  # let the subscription settle before the receipt can come

    def _published(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self.pubacks[mid] = reason

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _event(device: str, site: str = "campus-n") -> Event:
    return Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC),
            "site": site,
            "device": device,
            "camera": "gate" if device == "box-1" else "door",
            "kind": EventKind.INTRUSION,
            "phase": "start",
            "frame_width": 640,
            "frame_height": 480,
        }
    )


def _settings(tmp: Path, url: str, password: str) -> HubSettings:
    secret = tmp / "broker-password"
    secret.write_text(password + "\n")
    create_admin(f"sqlite:///{tmp / 'hub.sqlite3'}")
    return HubSettings(
        database_url=f"sqlite:///{tmp / 'hub.sqlite3'}",
        broker_url=url,
        jwt_secret=SECRET,
        template_key=SECRET,
        broker_username="hub",
        broker_password_file=secret,
    )


def test_hub_with_the_right_login_ingests_and_receipts(
    auth_broker: ShippedBroker, tmp_path: Path
) -> None:
    app = create_app(_settings(tmp_path, auth_broker.url, HUB_PASSWORD), hub_config())
    hub: Hub = app.state.hub
    with TestClient(app) as client:
        assert hub.link is not None and hub.link.connected.wait(10), hub.link and hub.link.refused
        assert hub.zone_link is not None and hub.zone_link.connected.wait(10)
        device = Device(auth_broker.port, "box-1", BOX_PASSWORD)
        try:
            # The shipped ACL keeps box-1 to its own device segment: box-9's topic is refused.
            other = _event("box-9", "campus-s")
            refused = device.publish(event_topic("campus-s", "box-9", other.kind), encode(other))
            assert refused.is_failure and refused.value == 0x87, refused
            own = _event("box-1")
            ok = device.publish(event_topic("campus-n", "box-1", own.kind), encode(own))
            assert not ok.is_failure, ok
            receipt = device.receipts.get(timeout=15)
            assert receipt.event_ids == [own.event_id]
        finally:
            device.close()
        body = health(client)
        assert body["ingest"]["connected"] is True
        assert body["ingest"]["broker_refused"] is None
        assert body["ingest"]["stored"] == 1  # only box-1's own event reached the hub


def test_hub_with_a_wrong_password_reports_and_stops(
    auth_broker: ShippedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-hub-password"
    app = create_app(_settings(tmp_path, auth_broker.url, wrong), hub_config())
    hub: Hub = app.state.hub
    with caplog.at_level(logging.ERROR, logger="ringwatch.hub.mqtt"), TestClient(app) as client:
        assert hub.link is not None and hub.zone_link is not None
        deadline = time.monotonic() + 10
        while (hub.link.refused is None or hub.zone_link.refused is None) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert hub.link.refused is not None and "not authorized (0x87)" in hub.link.refused
        # paho's reconnect delay is 1-10 s: a spinning client would have tried again by now.
        time.sleep(3)
        assert (hub.link.refusals, hub.zone_link.refusals) == (1, 1)
        assert not hub.link.connected.is_set()
        body = health(client)
        assert body["status"] == "degraded"
        assert body["ingest"]["broker_refused"] == hub.link.refused
        assert "broker_username" in body["ingest"]["broker_refused"]
        assert wrong not in json.dumps(body)
    messages = [r.getMessage() for r in caplog.records]
    assert any("not retrying" in m and "0x87" in m for m in messages), messages
    assert all(wrong not in m for m in messages)


def test_credentials_in_the_url_are_refused_not_dropped() -> None:
    with pytest.raises(ConfigError) as err:
        BrokerAddress.from_url("mqtt://hub:pw-in-url@127.0.0.1:1883")
    assert "broker_password_file" in str(err.value) and "pw-in-url" not in str(err.value)


def test_login_reads_the_password_file_and_names_it_when_missing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "mqtt://127.0.0.1:1883", HUB_PASSWORD)
    login = BrokerLogin.from_settings(settings)
    assert (login.username, login.password) == ("hub", HUB_PASSWORD)
    assert HUB_PASSWORD not in repr(login)
    missing = settings.model_copy(update={"broker_password_file": tmp_path / "nope"})
    with pytest.raises(ConfigError, match="nope"):
        BrokerLogin.from_settings(missing)
