"""The NATS broker tier: a real 3-node NATS cluster (JetStream, MQTT listeners) started
here on free ports, edges speaking MQTT 3.1.1 to one node, two hub workers (broker_kind
nats) on one PostgreSQL schema pulling from one durable consumer of an R3 work-queue
stream: every event stored once, split between the workers, receipted to the edge over
MQTT from another node; a worker that took messages and died gives them up after the
ack wait; retained status and zone pushes over the NATS MQTT listener."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Receipt, decode, encode
from ringwatch.contract.topics import EventKind, event_topic, receipt_topic
from ringwatch.edge.mqtt import Message, MqttClient
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.nats import (
    STREAM,
    NatsLink,
    ingest_subjects,
    parse_servers,
    subject_to_topic,
    topic_to_subject,
)
from ringwatch.hub.nats_cluster import NatsCluster
from ringwatch.hub.settings import HubSettings
from tests.hub_fixtures import HUB_CONFIG, SECRET, create_admin, database, health
from tests.services import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    nodes = NatsCluster(tmp_path_factory.mktemp("nats")).start()
    try:
        yield nodes
    finally:
        nodes.stop()


def test_topics_and_subjects_map_both_ways() -> None:
    topic = "ringwatch/v1/events/campus.n/box-1/face"
    assert topic_to_subject(topic) == "ringwatch.v1.events.campus//n.box-1.face"
    assert subject_to_topic(topic_to_subject(topic)) == topic
    assert "ringwatch.v1.events.>" in ingest_subjects()
    assert parse_servers("nats://a:1, nats://b:2") == ["nats://a:1", "nats://b:2"]
    with pytest.raises(Exception, match="not a NATS URL: 'mqtt://a:1'"):
        parse_servers("nats://a:1,mqtt://a:1")


def _settings(url: str, cluster: NatsCluster, node: int) -> HubSettings:
    return HubSettings(
        database_url=url,
        broker_kind="nats",
        nats_url=cluster.url,
        broker_url=cluster.nodes[node].mqtt_url,
        jwt_secret=SECRET,
        template_key=SECRET,
    )


def _config(worker: str, group: str) -> HubConfig:
    return HubConfig.model_validate(
        {
            **HUB_CONFIG,
            "ingest": {"worker": worker, "group": group, "ack_wait_s": 3},
            "incidents": {"timer_loop": False},
        }
    )


class Edge:
    """An MQTT 3.1.1 edge on one node: publishes events, collects receipts."""

    def __init__(self, url: str) -> None:
        self.receipted: set[str] = set()
        self.lock = threading.Lock()
        self.client = MqttClient(url, f"edge-{uuid.uuid4().hex[:6]}", protocol="3.1.1")
        self.client.subscribe(receipt_topic("campus-n", "box-1"), self._receipt, qos=1)
        self.client.start()
        assert self.client.wait_connected(10)

    def _receipt(self, message: Message) -> None:
        with self.lock:
            self.receipted.update(decode(Receipt, message.payload).event_ids)

    def send(self, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            event = Event.model_validate(
                {
                    "event_id": new_event_id(),
                    "captured_at": dt.datetime.now(dt.UTC),
                    "site": "campus-n",
                    "device": "box-1",
                    "camera": "gate",
                    "kind": EventKind.INTRUSION,
                    "phase": "start",
                    "frame_width": 640,
                    "frame_height": 480,
                }
            )
            ids.append(event.event_id)
            topic = event_topic(event.site, event.device, EventKind.INTRUSION)
            assert self.client.publish(topic, encode(event), qos=1)
        return ids


def _stored(hub: Hub) -> int:
    with hub.sessions() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(t.Event)) or 0)


@pytest.fixture
def two_workers(
    cluster: NatsCluster, pg_url: str, tmp_path: Path
) -> Iterator[tuple[Hub, Hub, list[TestClient]]]:
    group = f"hubs-{uuid.uuid4().hex[:6]}"
    with database("postgresql", tmp_path, pg_url) as url:
        create_admin(url)  # /health details need an admin's token
        apps = [create_app(_settings(url, cluster, i), _config(f"w{i}", group)) for i in (0, 1)]
        clients = [TestClient(a) for a in apps]
        for c in clients:
            c.__enter__()
        try:
            hubs: list[Hub] = [a.state.hub for a in apps]
            for hub in hubs:
                wait_for(lambda h=hub: h.ingest_connected, 30, "consumer bound")  # type: ignore[misc]
            yield hubs[0], hubs[1], clients
        finally:
            for c in clients:
                c.__exit__(None, None, None)
            _purge_stream(cluster, group)


def _purge_stream(cluster: NatsCluster, group: str) -> None:
    """Leave no work-queue messages for the next test's consumer."""
    import asyncio

    import nats

    async def purge() -> None:
        nc = await nats.connect(servers=cluster.urls)
        try:
            js = nc.jetstream()
            await js.delete_consumer(STREAM, group)
            await js.purge_stream(STREAM)
        finally:
            await nc.close()

    asyncio.run(purge())


def test_two_workers_share_one_durable_consumer_and_store_each_event_once(
    cluster: NatsCluster, two_workers: tuple[Hub, Hub, list[TestClient]]
) -> None:
    w1, w2, clients = two_workers
    edge = Edge(cluster.nodes[1].mqtt_url)  # edges on node 2; workers pull via any node
    try:
        ids = edge.send(400)
        wait_for(lambda: edge.receipted >= set(ids), 60, "receipts for all events")
        assert _stored(w1) == 400, "each event stored exactly once"
        counts = [w.stats.snapshot()["stored"] for w in (w1, w2)]
        assert sum(counts) == 400 and min(counts) > 0, counts
        seen = health(clients[0])
        assert seen["ingest"]["connected"] and seen["status"] == "ok"
    finally:
        edge.client.close()


def test_a_worker_that_dies_holding_messages_gives_them_up_after_the_ack_wait(
    cluster: NatsCluster, two_workers: tuple[Hub, Hub, list[TestClient]]
) -> None:
    w1, w2, _ = two_workers
    assert w1.worker is not None and w1.nats_link is not None
    assert w2.worker is not None and w2.nats_link is not None
    w2.nats_link.stop()  # worker 2 is away for now: worker 1 takes everything
    stuck, release = threading.Event(), threading.Event()
    ingestor: Any = w1.worker.ingestor
    real = ingestor.ingest

    def hang(batch: Any) -> Any:  # worker 1 takes messages and never commits them
        stuck.set()
        release.wait(60)
        return real(batch)

    ingestor.ingest = hang
    edge = Edge(cluster.nodes[2].mqtt_url)
    try:
        ids = edge.send(200)
        wait_for(stuck.is_set, 30, "worker 1 holding a batch")
        wait_for(lambda: w1.nats_link is not None and w1.nats_link.unacked >= 150, 30, "taken")
        w1.nats_link.stop()  # dies holding them, unacked
        back = NatsLink(w2.nats_link.servers, w2.nats_link.durable, w2.worker.submit, ack_wait_s=3)
        w2.worker.attach(back)
        back.start()  # worker 2 comes back: the consumer hands it worker 1's messages
        try:
            wait_for(lambda: edge.receipted >= set(ids), 30, "all receipted by worker 2")
            assert _stored(w2) == 200
            assert w1.stats.snapshot()["stored"] == 0
        finally:
            back.stop()
    finally:
        edge.client.close()
        ingestor.ingest = real
        release.set()


def test_zone_link_sees_retained_status_over_the_nats_mqtt_listener(
    cluster: NatsCluster, two_workers: tuple[Hub, Hub, list[TestClient]]
) -> None:
    from ringwatch.contract.messages import DeviceState
    from ringwatch.contract.topics import status_topic
    from ringwatch.edge.uplink import status_message

    w1, _w2, _ = two_workers
    device = MqttClient(cluster.nodes[2].mqtt_url, "box-status", protocol="3.1.1")
    device.start()
    try:
        assert device.wait_connected(10)
        msg = status_message("campus-n", "box-1", DeviceState.ONLINE, "1.0", None)
        assert msg.topic == status_topic("campus-n", "box-1")
        device.publish(msg.topic, msg.payload, qos=1, retain=True)
        assert w1.zones is not None
        zones = w1.zones
        wait_for(lambda: zones.online("campus-n", "box-1") is True, 20, "online seen")
    finally:
        device.close()
