"""The shared paho adapter (``ringwatch.mqtt``, core/mqtt.py) on a real Mosquitto: broker
URLs and their errors, SUBACK refusals counted, and routed alerts published with
confirmation: a broker stopped then SIGKILLed and restarted mid-stream, the recipient gets
each alert exactly once (by alert_id) while the sender retries whatever was reported failed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringwatch.errors import ConfigError
from ringwatch.hub.mqtt import MqttLink
from ringwatch.mqtt import (
    BrokerAddress,
    Message,
    MqttClient,
    MqttUrlError,
    parse_broker_url,
)
from tests.services import Broker, find_mosquitto, free_port, private_broker, wait_for

ALERTS = "ringwatch/v1/alerts/campus/guard-1"


def test_broker_urls_name_what_is_wrong() -> None:
    a = parse_broker_url("mqtts://edge:s3cret@broker.example:8884")
    assert (a.host, a.port, a.tls, a.username, a.password) == (
        "broker.example",
        8884,
        True,
        "edge",
        "s3cret",
    )
    assert "s3cret" not in repr(a)
    assert parse_broker_url("mqtt://h").port == 1883
    for url, part in [
        ("mqtt://h:99999", "'99999'"),
        ("mqtt://h:0", "'0'"),
        ("mqtt://h:abc", "'abc'"),
        ("ftp://h:1883", "'ftp'"),
        ("mqtt://:1883", "no host"),
    ]:
        with pytest.raises(MqttUrlError, match=part) as err:
            parse_broker_url(url)
        assert isinstance(err.value, ConfigError)  # start-up stops with the message
    with pytest.raises(MqttUrlError) as err:
        parse_broker_url("mqtt://u:topsecret@h:abc")
    assert "topsecret" not in str(err.value) and "'abc'" in str(err.value)
    with pytest.raises(ConfigError) as refused:
        BrokerAddress.from_url("mqtt://hub:pw@h:1883")  # the hub's URL is logged: refused
    assert "pw" not in str(refused.value).replace("password", "")


DYNSEC = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto with its dynamic-security plugin (the one ACL kind that refuses a SUBSCRIBE
    in the SUBACK; an acl_file only filters deliveries): user ``admin`` may subscribe to
    ``$SYS/#`` and nothing else of ours."""
    if not DYNSEC.exists():
        pytest.fail(f"{DYNSEC} is missing: install the Debian package mosquitto")
    config = tmp_path / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), "admin", "adminpw"],
        check=True,
        capture_output=True,
    )
    data = json.loads(config.read_text())
    for role in data["roles"]:
        role["acls"] = [a for a in role["acls"] if a["topic"] != "#"]
    config.write_text(json.dumps(data))
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nplugin {DYNSEC}\nplugin_opt_config_file {config}\n"
        "log_dest stderr\nuser root\n"
    )
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    broker = Broker("127.0.0.1", port, tmp_path, proc)
    wait_for(lambda: _listens(port), 10, "acl broker up")
    try:
        yield broker
    finally:
        broker.stop()


def _listens(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_refused_subscription_is_counted_and_named(acl_broker: Broker, protocol: str) -> None:
    url = f"mqtt://admin:adminpw@127.0.0.1:{acl_broker.port}"  # credentials from the URL
    client = MqttClient(url, f"admin-{protocol}", session_expiry_s=0, protocol=protocol)
    client.subscribe("$SYS/broker/uptime", lambda m: None)
    client.subscribe("ringwatch/v1/events/#", lambda m: None)  # not in the ACL
    client.start()
    try:
        assert client.wait_connected(10)
        wait_for(lambda: client.counters().subscribe_refused == 1, 10, "SUBACK refusal")
        refused = client.refused_subscriptions
        assert list(refused) == ["ringwatch/v1/events/#"], refused
        assert "0x8" in refused["ringwatch/v1/events/#"]  # 0x87 (MQTT 5) or 0x80 (3.1.1)
    finally:
        client.close()


def _alert(alert_id: str) -> bytes:
    return json.dumps({"alert_id": alert_id, "reason": "new"}).encode()


def _send(link: MqttLink, alert_id: str, attempts: list[str]) -> None:
    """The dispatcher's loop for one delivery: retry until a publish is reported sent."""
    deadline = time.monotonic() + 30
    while not link.publish_confirmed(ALERTS, _alert(alert_id), timeout=1.0):
        attempts.append(alert_id)
        assert time.monotonic() < deadline, f"alert {alert_id} never confirmed"
        time.sleep(0.1)


def test_alerts_reach_the_recipient_once_across_a_broker_kill(tmp_path: Path) -> None:
    with private_broker(tmp_path) as broker:
        got: list[str] = []
        # A persistent session, saved before the kill (SIGUSR1), so the restarted broker
        # queues for the recipient whatever the link sends on its reconnect, even before
        # the recipient is back: a leftover copy cannot slip by unseen.
        recipient = MqttClient(broker.url, f"guard-{uuid.uuid4().hex[:6]}", session_expiry_s=600)

        def take(m: Message) -> None:
            # The restarted broker re-delivers what it had in flight to the recipient when
            # it saved (DUP set): MQTT's own QoS 1 repeat, not a copy the hub made. A copy
            # the hub's paho re-sent arrives as a fresh delivery (DUP clear) and is counted.
            if not m.dup:
                got.append(json.loads(m.payload)["alert_id"])

        recipient.subscribe(ALERTS, take)
        recipient.start()
        link = MqttLink(BrokerAddress.from_url(broker.url), "hub-alerts", [], lambda m: None)
        link.start()
        failed: list[str] = []
        try:
            assert recipient.wait_subscribed(10)  # SUBACK in: an alert sent before it is lost
            wait_for(link.connected.is_set, 10, "hub link up")
            for i in range(5):
                _send(link, f"a{i}", failed)
            wait_for(lambda: len(got) == 5, 10, "alerts before the outage")
            assert broker.process is not None
            broker.process.send_signal(signal.SIGUSR1)  # write the persistence file
            time.sleep(0.5)
            broker.process.send_signal(signal.SIGSTOP)  # connection up, no PUBACK comes
            # Two attempts time out: each is reported failed and taken back out of paho.
            assert not link.publish_confirmed(ALERTS, _alert("a5"), timeout=0.5)
            assert not link.publish_confirmed(ALERTS, _alert("a5"), timeout=0.5)
            assert link.counters().publish_withdrawn == 2
            broker.stop(kill=True)  # what it had not read dies with it
            wait_for(lambda: not link.client.is_connected(), 40, "link sees the outage")
            assert not link.publish_confirmed(ALERTS, _alert("a5"), timeout=0.5)
            broker.start()
            wait_for(lambda: recipient.connects >= 2, 20, "recipient back")
            assert recipient.wait_subscribed(10)  # its SUBSCRIBE goes right after the CONNACK
            for i in range(5, 10):
                _send(link, f"a{i}", failed)
            wait_for(lambda: len(set(got)) == 10, 20, "every alert")
            time.sleep(1.5)  # paho would re-send a leftover copy on the reconnect by now
            counts = Counter(got)
            assert sorted(counts) == [f"a{i}" for i in range(10)]
            assert [a for a, n in counts.items() if n != 1] == [], counts
            assert link.counters().publish_rejected == 0
        finally:
            link.stop()
            recipient.close()
