"""Payload fuzz (issue 11): hypothesis-made hostile payloads on every topic the hub and the
edge read, mixed with valid events, through a real Mosquitto into a real hub (SQLite) and
a real edge uplink (outbox + MQTT client) and agent. Asserted: nothing dies, every valid
event is stored exactly once (and leaves the edge's outbox on its receipt), every bad
payload is counted (a dead letter with a reason, or the reader's bad-message counter),
the hub's memory does not run away. Bounded: a few hundred payloads a run. The ingest rate
under bad input is a benchmark (tools/fuzz_bench.py), not asserted here."""

from __future__ import annotations

import collections
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ringwatch.contract.messages import Event
from ringwatch.contract.topics import Command, command_topic, sensor_topic
from ringwatch.edge.agent import Agent, ZoneStore
from ringwatch.edge.mqtt import MqttClient
from ringwatch.edge.outbox import Outbox
from ringwatch.edge.uplink import Uplink
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.mqtt import MqttLink
from tests import fuzz_payloads as fz
from tests.hub_fixtures import database, hub_config
from tests.hub_fixtures import settings as hub_settings
from tests.services import Broker, wait_for

BAD_PER_RUN = 300
VALID_PER_RUN = 40
FUZZ = settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.generate],  # no shrinking against live services: the failure is printed
    suppress_health_check=list(HealthCheck),
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def running_hub(broker: Broker, tmp: Path) -> Iterator[Hub]:
    with database("sqlite", tmp, None) as url:
        tag = uuid.uuid4().hex[:8]
        config = hub_config(ingest={"group": f"g{tag}", "worker": f"w{tag}"})
        app = create_app(hub_settings(url, broker.url), config)
        with TestClient(app):
            hub: Hub = app.state.hub
            assert hub.link is not None and hub.link.connected.wait(10)
            assert hub.zone_link is not None and hub.zone_link.connected.wait(10)
            # bad payloads are sent once: none may go out before the hub's SUBACKs
            assert isinstance(hub.link, MqttLink) and hub.link.mqtt.wait_subscribed(10)
            assert hub.zone_link.mqtt.wait_subscribed(10)
            yield hub


@contextmanager
def edge_uplink(broker: Broker, tmp: Path) -> Iterator[Uplink]:
    client = MqttClient(broker.url, f"fuzz-edge-{uuid.uuid4().hex[:6]}")
    outbox = Outbox(tmp / "outbox.sqlite3", max_events=10_000)
    uplink = Uplink(outbox, client, fz.SITE, fz.DEVICE, receipt_timeout_s=30)
    uplink.start()
    client.start()
    assert client.wait_subscribed(10)  # receipts sent before the SUBACK are lost
    stop = threading.Event()
    pump = threading.Thread(target=uplink.run, args=(stop,), daemon=True)
    pump.start()
    try:
        yield uplink
    finally:
        stop.set()
        pump.join(10)
        assert not pump.is_alive()
        client.close()
        outbox.close()


@contextmanager
def edge_agent(broker: Broker, tmp: Path) -> Iterator[tuple[Agent, MqttClient]]:
    """The agent of test_agent.py's ``edge`` fixture (campus/box-1, a shed camera), on MQTT."""
    from tests.test_agent import (
        LEFT,
        MASK,
        Found,
        ListSink,
        ListSource,
        ScriptedAnalyzer,
        noise_frames,
        persons,
        site,
    )

    cfg = site(zones=[LEFT], masks=[MASK], role="shed", shed="shed-a", tasks=["fire"])
    client = MqttClient(broker.url, f"fuzz-agent-{uuid.uuid4().hex[:6]}")
    analyzer = ScriptedAnalyzer(Found(persons=persons((40, 100, 60, 200))))
    agent = Agent(
        cfg, {"gate": analyzer}, {"gate": ListSource([])}, ListSink(), client, ZoneStore(tmp)
    )
    for topic, handler in agent.subscriptions():
        client.subscribe(topic, lambda m, h=handler: h(m.topic, m.payload))  # type: ignore[misc]
    client.start()
    assert client.wait_subscribed(10)  # a command sent before its SUBACK is lost
    agent.workers["gate"].step(noise_frames(1)[0])  # a frame seen: snapshots have something
    try:
        yield agent, client
    finally:
        client.close()


def _stored(hub: Hub) -> collections.Counter[str]:
    with hub.sessions.begin() as session:
        return collections.Counter(session.scalars(sa.select(t.Event.id)))


def _dead_reasons(hub: Hub) -> collections.Counter[str]:
    with hub.sessions.begin() as session:
        return collections.Counter(session.scalars(sa.select(t.DeadLetter.reason)))


@FUZZ
@given(
    bad=st.lists(
        fz.bad_messages({**fz.HUB_TOPICS, **fz.ZONE_TOPICS, fz.RECEIPT_TOPIC: "receipt"}),
        min_size=BAD_PER_RUN,
        max_size=BAD_PER_RUN,
    )
)
def test_hostile_payloads_on_hub_topics_are_counted_and_valid_events_stored_once(
    broker: Broker, bad: list[fz.Bad]
) -> None:
    attacker = MqttClient(broker.url, f"fuzz-attacker-{uuid.uuid4().hex[:6]}")
    attacker.start()
    assert attacker.wait_connected(10)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_hub(broker, Path(tmp)) as hub,
        edge_uplink(broker, Path(tmp)) as uplink,
    ):
        rss_before = rss_mb()
        valid = [Event.model_validate(fz.valid("event")) for _ in range(VALID_PER_RUN)]
        chunk = max(1, len(bad) // len(valid))
        for i, event in enumerate(valid):
            uplink.put(event)  # through the edge's outbox, released on the hub's receipt
            for message in bad[i * chunk : (i + 1) * chunk]:
                assert attacker.publish(message.topic, message.payload, qos=1)
        for message in bad[len(valid) * chunk :]:
            assert attacker.publish(message.topic, message.payload, qos=1)

        to_ingest = sum(1 for b in bad if b.topic in fz.HUB_TOPICS)
        to_zones = sum(1 for b in bad if b.topic in fz.ZONE_TOPICS)
        to_edge = sum(1 for b in bad if b.topic == fz.RECEIPT_TOPIC)
        assert hub.zones is not None
        zones = hub.zones

        def settled() -> bool:
            return (
                hub.stats.snapshot()["received"] >= to_ingest + VALID_PER_RUN
                and zones.bad_messages >= to_zones
                and uplink.counters().bad_messages >= to_edge
                and uplink.outbox.depth() == 0
            )

        try:
            wait_for(settled, 60, "every message taken and every valid event receipted")
        except AssertionError as exc:
            state = (
                f"hub {hub.stats.snapshot()} (want received {to_ingest + VALID_PER_RUN});"
                f" zone link bad {zones.bad_messages}/{to_zones}; edge bad"
                f" {uplink.counters().bad_messages}/{to_edge}, outbox {uplink.outbox.depth()}"
            )
            with hub.sessions.begin() as session:
                got = collections.Counter(session.scalars(sa.select(t.DeadLetter.topic)))
            sent = collections.Counter(b.topic for b in bad if b.topic in fz.HUB_TOPICS)
            raise AssertionError(f"{exc}: {state}; missing {sent - got}") from None
        time.sleep(0.5)  # nothing more may arrive than was sent
        stats = hub.stats.snapshot()
        # nothing died
        assert hub.worker is not None and hub.worker.running
        assert hub.link is not None and hub.link.connected.is_set()
        assert hub.zone_link is not None and hub.zone_link.connected.is_set()
        # every valid event stored exactly once, and released at the edge
        stored = _stored(hub)
        assert {e.event_id for e in valid} <= set(stored)
        assert all(stored[e.event_id] == 1 for e in valid)
        assert stats["stored"] == VALID_PER_RUN and stats["errors"] == 0
        # every bad payload counted with a reason
        reasons = _dead_reasons(hub)
        assert sum(reasons.values()) == to_ingest == stats["dead_letters"], reasons
        assert stats["received"] == to_ingest + VALID_PER_RUN
        assert zones.bad_messages == to_zones
        assert uplink.counters().bad_messages == to_edge
        assert not set(reasons) - {
            "invalid",
            "oversized",
            "bad_topic",
            "time_out_of_bounds",
            "topic_mismatch",
        }, reasons
        assert rss_mb() - rss_before < 300  # 937 - 377 MB before the fix


@FUZZ
@given(
    bad=st.lists(
        st.sampled_from(["snapshot", "zone_config", "sensor"]).flatmap(
            lambda what: fz.malformed(
                {"snapshot": "reply", "zone_config": "answer", "sensor": "sensor"}[what]
            ).map(lambda payload: fz.Bad(what, payload))  # a short repr when it fails
        ),
        min_size=60,
        max_size=60,
    )
)
def test_hostile_payloads_on_edge_topics_are_counted_and_the_agent_answers(
    broker: Broker, bad: list[fz.Bad]
) -> None:
    from tests.test_agent import ask

    hub_client = MqttClient(broker.url, f"fuzz-hub-{uuid.uuid4().hex[:6]}")
    hub_client.start()
    assert hub_client.wait_connected(10)
    with tempfile.TemporaryDirectory() as tmp, edge_agent(broker, Path(tmp)) as (agent, client):
        topics = {
            "snapshot": command_topic("campus", "box-1", Command.SNAPSHOT),
            "zone_config": command_topic("campus", "box-1", Command.ZONE_CONFIG),
            "sensor": sensor_topic("campus", "shed-a", "bay-1"),
        }
        assert {f for f, _ in agent.subscriptions()} >= set(list(topics.values())[:2])
        before = agent.bad_messages
        for message in bad:
            assert hub_client.publish(topics[message.topic], message.payload, qos=1)
        try:
            wait_for(lambda: agent.bad_messages - before >= len(bad), 30, "every bad command")
        except AssertionError as exc:
            counted = agent.bad_messages - before
            raise AssertionError(f"{exc}: {counted} of {len(bad)} counted") from None
        time.sleep(0.3)
        assert agent.bad_messages - before == len(bad)
        assert client.counters().handler_errors == 0  # each refused by its handler, none raised
        request = json.dumps({"request_id": "ok-1", "camera": "gate"}).encode()
        reply = json.loads(ask(hub_client, Command.SNAPSHOT, request))
        assert reply["request_id"] == "ok-1" and "jpeg" in reply  # still answering
    hub_client.close()
