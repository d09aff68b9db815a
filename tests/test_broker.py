"""The private Mosquitto the tests run against really delivers QoS 1 messages."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ringwatch.contract.messages import SensorReading, decode, encode
from ringwatch.contract.topics import TopicKind, parse_topic, sensor_topic, topic_filter
from tests.services import Broker


def test_sensor_reading_crosses_a_real_broker(broker: Broker) -> None:
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: got.put((m.topic, bytes(m.payload)))
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    try:
        result, _ = sub.subscribe(topic_filter(TopicKind.SENSORS, "s1"), qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-pub")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        reading = SensorReading.model_validate(
            {
                "site": "s1",
                "shed": "a",
                "bay": "b1",
                "current_a": 3,
                "voltage_v": 48,
                "temperature_c": 30,
                "measured_at": "2026-11-25T08:00:00Z",
            }
        )
        import time

        time.sleep(0.2)  # let the subscription settle before publishing
        info = pub.publish(sensor_topic("s1", "a", "b1"), encode(reading), qos=1)
        info.wait_for_publish(5)
        topic, payload = got.get(timeout=5)
        pub.loop_stop()
        pub.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert parse_topic(topic)["bay"] == "b1"
    assert decode(SensorReading, payload) == reading
