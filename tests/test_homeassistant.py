"""Home Assistant MQTT discovery for sheds (edge/homeassistant.py).

Checked against Home Assistant's documented discovery fields for the sensor and
binary_sensor platforms (the device classes and units below are copied from its docs), with
the value templates rendered by Jinja2 (the engine Home Assistant uses) on real contract
payloads, and published retained through a real Mosquitto. Home Assistant's own schemas
(homeassistant 2024.3.3, the last for Python 3.11) accepted the same payloads in a one-off
check: see docs/integrations.md.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import DeviceStatus, Event, SensorReading, encode
from ringwatch.contract.topics import EventKind
from ringwatch.edge.config import SiteConfig
from ringwatch.edge.homeassistant import Discovery, discovery_messages
from ringwatch.edge.mqtt import Message, MqttClient
from tests.services import Broker, free_port, wait_for

T0 = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
SITE = {
    "site": "estate-e",
    "device": "box-shed",
    "cameras": [
        {"id": "shed-a-cam", "source": "a.mp4", "role": "shed", "shed": "shed-a"},
        {"id": "shed-b-cam", "source": "b.mp4", "role": "shed", "shed": "shed-b"},
        {"id": "gate", "source": "g.mp4"},
    ],
    "home_assistant": {"bays": {"shed-a": ["b1", "b2"], "shed-b": ["b1"]}},
}
# From Home Assistant's MQTT sensor / binary_sensor docs: the fields we may send.
DOCUMENTED = {
    "sensor": {
        "availability",
        "device",
        "device_class",
        "name",
        "object_id",
        "state_class",
        "state_topic",
        "unique_id",
        "unit_of_measurement",
        "value_template",
    },
    "binary_sensor": {
        "availability",
        "device",
        "device_class",
        "name",
        "object_id",
        "payload_off",
        "payload_on",
        "state_topic",
        "unique_id",
        "value_template",
    },
}
SENSOR_CLASS_UNITS = {"current": {"A", "mA"}, "voltage": {"V", "mV"}, "temperature": {"°C", "°F"}}
BINARY_CLASSES = {"heat", "smoke", "problem", "safety"}


def site(**changes: Any) -> SiteConfig:
    return SiteConfig.model_validate({**SITE, **changes})


def by_object(messages: list[Discovery]) -> dict[str, Discovery]:
    return {m.topic.split("/")[3]: m for m in messages if "shed-a" in m.topic}


def render(template: str, value: bytes, state: str = "off") -> str:
    env = jinja2.Environment(autoescape=False)
    out: str = env.from_string(template).render(
        value=value.decode(), value_json=json.loads(value), this={"state": state}
    )
    return out.strip()


def test_one_device_per_shed_with_sensors_per_bay_and_two_alarms() -> None:
    messages = discovery_messages(site())
    assert len(messages) == (1 + 2 * 4) + (1 + 1 * 4)
    assert len({m.config["unique_id"] for m in messages}) == len(messages)
    a = by_object(messages)
    assert sorted(a) == sorted(
        ["fire_alarm"]
        + [
            f"{b}_{k}"
            for b in ("b1", "b2")
            for k in ("current", "voltage", "temperature", "overheating")
        ]
    )
    for name, m in a.items():
        prefix, component, node, _, tail = m.topic.split("/")
        assert (prefix, node, tail) == ("homeassistant", "ringwatch_estate-e_shed-a", "config")
        assert set(m.config) <= DOCUMENTED[component], name
        assert m.config["device"]["identifiers"] == ["ringwatch_estate-e_shed-a"]
        [avail] = m.config["availability"]
        assert avail["topic"] == "ringwatch/v1/status/estate-e/box-shed"
        assert json.loads(m.payload) == m.config


@pytest.mark.parametrize(
    ("key", "device_class", "unit", "field", "value"),
    [
        ("current", "current", "A", "current_a", "3.5"),
        ("voltage", "voltage", "V", "voltage_v", "47.5"),
        ("temperature", "temperature", "°C", "temperature_c", "71.0"),
    ],
)
def test_bay_sensors_have_class_unit_state_class_and_read_the_sensor_topic(
    key: str, device_class: str, unit: str, field: str, value: str
) -> None:
    m = by_object(discovery_messages(site()))[f"b2_{key}"]
    assert m.topic.startswith("homeassistant/sensor/")
    assert m.config["device_class"] == device_class and unit in SENSOR_CLASS_UNITS[device_class]
    assert m.config["unit_of_measurement"] == unit and m.config["state_class"] == "measurement"
    assert m.config["state_topic"] == "ringwatch/v1/sensors/estate-e/shed-a/b2"
    reading = SensorReading(
        site="estate-e",
        shed="shed-a",
        bay="b2",
        current_a=3.5,
        voltage_v=47.5,
        temperature_c=71.0,
        measured_at=T0,
    )
    assert render(m.config["value_template"], encode(reading)) == value


def test_overheating_follows_the_bay_temperature() -> None:
    m = by_object(discovery_messages(site()))["b1_overheating"]
    assert m.topic.startswith("homeassistant/binary_sensor/")
    assert m.config["device_class"] in BINARY_CLASSES

    def reading(temperature: float) -> bytes:
        return encode(
            SensorReading(
                site="estate-e",
                shed="shed-a",
                bay="b1",
                current_a=1,
                voltage_v=48,
                temperature_c=temperature,
                measured_at=T0,
            )
        )

    assert render(m.config["value_template"], reading(61.0)) == "ON"
    assert render(m.config["value_template"], reading(40.0)) == "OFF"


def test_the_fire_alarm_follows_its_own_cameras_shed_events_only() -> None:
    m = by_object(discovery_messages(site()))["fire_alarm"]
    assert m.config["device_class"] == "smoke" and m.config["device_class"] in BINARY_CLASSES
    assert m.config["state_topic"] == "ringwatch/v1/events/estate-e/box-shed/shed"

    def shed(camera: str, level: str, phase: str = "start") -> bytes:
        event = Event(
            event_id=new_event_id(),
            captured_at=T0,
            site="estate-e",
            device="box-shed",
            camera=camera,
            kind=EventKind.SHED,
            phase=phase,
            level=level,
            frame_width=640,
            frame_height=480,
        )
        return encode(event)

    template = m.config["value_template"]
    assert render(template, shed("shed-a-cam", "alarm")) == "ON"
    assert render(template, shed("shed-a-cam", "warning")) == "OFF"
    assert render(template, shed("shed-a-cam", "alarm", "end")) == "OFF"
    assert render(template, shed("shed-b-cam", "warning"), state="on") == "ON"  # not ours
    assert render(template, shed("shed-b-cam", "alarm"), state="off") == "OFF"


def test_availability_reads_the_retained_status_and_its_last_will() -> None:
    [avail] = by_object(discovery_messages(site()))["b1_current"].config["availability"]
    for state in ("online", "offline"):
        status = DeviceStatus(site="estate-e", device="box-shed", state=state)
        assert render(avail["value_template"], encode(status)) == state
    assert (avail["payload_available"], avail["payload_not_available"]) == ("online", "offline")


def test_discovery_is_opt_in_per_site_and_bays_must_name_a_shed() -> None:
    assert discovery_messages(site(home_assistant=None)) == []
    with pytest.raises(ValueError, match=r"no shed camera for \['shed-z'\]"):
        site(home_assistant={"bays": {"shed-z": ["b1"]}})


def test_the_cli_publishes_every_message_retained(broker: Broker, tmp_path: Path) -> None:
    raw = {**SITE, "broker": {"url": broker.url}}
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(raw))
    argv = [sys.executable, "-m", "ringwatch", "edge", "homeassistant", "-c", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == f"14 of 14 discovery messages published (retained) to {broker.url}"
    )
    got: dict[str, bytes] = {}
    lock = threading.Lock()

    def keep(m: Message) -> None:
        with lock:
            got[m.topic] = m.payload

    ha = MqttClient(broker.url, f"test-ha-{free_port()}")
    ha.subscribe("homeassistant/#", keep)
    ha.start()
    try:
        wait_for(lambda: len(got) == 14, 10, "14 retained discovery configs")
    finally:
        ha.close()
    expected = {m.topic: m.payload for m in discovery_messages(site())}
    assert got == expected


def test_the_cli_says_when_a_site_has_not_opted_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ringwatch.cli import main

    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({**SITE, "home_assistant": None}))
    assert main(["edge", "homeassistant", "-c", str(config), "--print"]) == 2
    assert "no home_assistant section with shed bays (opt-in)" in capsys.readouterr().err
