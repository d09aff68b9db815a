"""Delivery over a real Mosquitto: outbox -> MQTT -> a receiver that commits and sends receipts.

The key test stops the broker for 30 s and SIGKILLs the edge process while events are queued;
every id the edge stored must reach the receiver.
"""

from __future__ import annotations

import datetime as dt
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ringwatch.contract.messages import (
    MAX_RECEIPT_IDS,
    DeviceState,
    DeviceStatus,
    Event,
    Receipt,
    decode,
    encode,
)
from ringwatch.contract.topics import TopicKind, receipt_topic, status_topic, topic_filter
from ringwatch.edge.mqtt import Message, MqttAuthError, MqttClient, MqttError, parse_broker_url
from ringwatch.edge.outbox import Outbox
from ringwatch.edge.uplink import Uplink
from tests.services import Broker, find_mosquitto, free_port, wait_for
from tests.test_outbox import make_event

REPO = Path(__file__).resolve().parent.parent
EMITTER = REPO / "tests" / "edge_emitter.py"
SITE, DEVICE = "campus", "box1"


class HubReceiver:
    """Commits events to SQLite in batches, then acks them and sends one receipt per batch and
    device, as the hub ingest will (duplicates are committed once and receipted again)."""

    def __init__(self, url: str, db_path: Path, client_id: str, expiry_s: int = 0) -> None:
        self._db = sqlite3.connect(db_path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY)")
        self._lock = threading.Lock()
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._commit_loop, daemon=True)
        self.deliveries = 0
        self.duplicates = 0
        self.order: list[str] = []
        self.arrivals: list[float] = []  # monotonic time of each first delivery
        self.client = MqttClient(
            url, client_id, manual_ack=True, reconnect_delay_s=(1, 1), session_expiry_s=expiry_s
        )
        self.client.subscribe(topic_filter(TopicKind.EVENTS), self._inbox.put, qos=1)

    def start(self) -> None:
        self._worker.start()
        self.client.start()

    def close(self) -> None:
        self._stop.set()
        self._worker.join(5)
        self.client.close()
        self._db.close()

    def _commit_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._inbox.get(timeout=0.05)]
            except queue.Empty:
                continue
            while len(batch) < MAX_RECEIPT_IDS and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            self._commit(batch)

    def _commit(self, batch: list[Message]) -> None:
        events = [decode(Event, m.payload) for m in batch]
        with self._lock:
            for event in events:
                cur = self._db.execute("INSERT OR IGNORE INTO events VALUES (?)", (event.event_id,))
                self.deliveries += 1
                if cur.rowcount == 0:
                    self.duplicates += 1
                else:
                    self.order.append(event.event_id)
                    self.arrivals.append(time.monotonic())
            self._db.commit()
        by_device: dict[tuple[str, str], list[str]] = {}
        for event in events:
            by_device.setdefault((event.site, event.device), []).append(event.event_id)
        for (site, device), ids in by_device.items():
            receipt = Receipt(
                site=site, device=device, event_ids=ids, sent_at=dt.datetime.now(dt.UTC)
            )
            self.client.publish(receipt_topic(site, device), encode(receipt), qos=1)
        for m in batch:
            self.client.ack(m.mid, m.qos)

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT event_id FROM events")}


@pytest.fixture
def receiver(broker: Broker, tmp_path: Path) -> Iterator[HubReceiver]:
    hub = HubReceiver(broker.url, tmp_path / "hub.sqlite3", f"test-hub-{free_port()}")
    hub.start()
    assert hub.client.wait_connected(5)
    yield hub
    hub.close()


@pytest.fixture
def edge_client(broker: Broker) -> Iterator[MqttClient]:
    client = MqttClient(broker.url, f"test-edge-{free_port()}", session_expiry_s=0)
    yield client
    client.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """Records publishes; ``connects`` moves when the test says the link came back."""

    def __init__(self) -> None:
        self.connected = True
        self.connects = 1
        self.sent: list[str] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        if not self.connected:
            return False
        self.sent.append(decode(Event, payload).event_id)
        return True

    def subscribe(
        self, topic_filter: str, handler: Callable[[Message], None], qos: int = 1
    ) -> None:
        pass


def test_a_reconnect_replays_every_unreceipted_event_in_order(tmp_path: Path) -> None:
    link = FakeTransport()
    clock = FakeClock()
    outbox = Outbox(tmp_path / "o.sqlite3", 1000)
    uplink = Uplink(outbox, link, SITE, DEVICE, receipt_timeout_s=60, clock=clock)
    events = [make_event(track=i) for i in range(4)]
    for e in events[:3]:
        uplink.put(e)
    assert uplink.pump() == 3
    link.connected = False
    uplink.put(events[3])
    assert uplink.pump() == 0
    link.connected, link.connects = True, 2
    assert uplink.pump() == 4  # well within the receipt timeout, but the link is new
    ids = [e.event_id for e in events]
    assert link.sent == ids[:3] + ids
    assert uplink.counters().republished == 3


def test_the_window_limits_events_awaiting_a_receipt(tmp_path: Path) -> None:
    link = FakeTransport()
    outbox = Outbox(tmp_path / "o.sqlite3", 1000)
    uplink = Uplink(outbox, link, SITE, DEVICE, receipt_timeout_s=60, clock=FakeClock(), window=5)
    events = [make_event(track=i) for i in range(12)]
    for e in events:
        uplink.put(e)
    assert uplink.pump() == 5
    assert uplink.pump() == 0
    receipt = Receipt(
        site=SITE, device=DEVICE, event_ids=link.sent[:2], sent_at=dt.datetime.now(dt.UTC)
    )
    uplink.on_receipt(Message("t", encode(receipt), 1, False))
    assert uplink.pump() == 2
    assert link.sent == [e.event_id for e in events[:7]]


def test_a_new_client_with_the_same_id_gets_what_was_queued_while_away(broker: Broker) -> None:
    """Persistent session across a new paho Client (a process restart): clean_start=False."""
    client_id = f"test-persist-{free_port()}"
    got: list[bytes] = []
    first = MqttClient(broker.url, client_id, session_expiry_s=60)
    first.subscribe("test/persist", lambda m: got.append(m.payload))
    first.start()
    assert first.wait_subscribed(5)
    first.close()
    sender = MqttClient(broker.url, f"test-persist-send-{free_port()}", session_expiry_s=0)
    sender.start()
    assert sender.wait_connected(5)
    assert sender.publish_wait("test/persist", b"while away")
    sender.close()
    second = MqttClient(broker.url, client_id, session_expiry_s=0)
    second.subscribe("test/persist", lambda m: got.append(m.payload))
    second.start()
    try:
        wait_for(lambda: got == [b"while away"], 5, "the queued message")
    finally:
        second.close()


def test_broker_urls_are_parsed_and_bad_ones_named() -> None:
    assert parse_broker_url("mqtt://h:1884").port == 1884
    assert parse_broker_url("mqtts://h").port == 8883
    assert parse_broker_url("mqtts://h").tls
    with pytest.raises(MqttError, match="expected mqtt://"):
        parse_broker_url("http://h:1883")


def test_events_arrive_in_order_and_leave_the_outbox_on_receipt(
    receiver: HubReceiver, edge_client: MqttClient, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", 1000)
    uplink = Uplink(outbox, edge_client, SITE, DEVICE, receipt_timeout_s=30)
    uplink.start()
    edge_client.start()
    assert edge_client.wait_connected(5)
    events = [make_event(track=i) for i in range(30)]
    for e in events:
        uplink.put(e)
    while uplink.pump():
        pass
    wait_for(lambda: outbox.depth() == 0, 10, "all receipts")
    assert receiver.order == [e.event_id for e in events]
    c = uplink.counters()
    assert (c.published, c.republished, c.released) == (30, 0, 30)
    assert 1 <= c.receipts <= 30  # the receiver batches ids into receipts


def test_no_receipt_means_republish_after_the_timeout(
    broker: Broker, edge_client: MqttClient, tmp_path: Path
) -> None:
    seen: list[str] = []
    listener = MqttClient(broker.url, f"test-listen-{free_port()}", session_expiry_s=0)
    listener.subscribe(topic_filter(TopicKind.EVENTS, SITE, DEVICE), lambda m: seen.append(m.topic))
    listener.start()
    clock = FakeClock()
    outbox = Outbox(tmp_path / "o.sqlite3", 1000)
    uplink = Uplink(outbox, edge_client, SITE, DEVICE, receipt_timeout_s=10, clock=clock)
    uplink.start()
    edge_client.start()
    try:
        assert listener.wait_connected(5) and edge_client.wait_connected(5)
        events = [make_event(track=i) for i in range(3)]
        for e in events:
            uplink.put(e)
        assert uplink.pump() == 3
        clock.now += 9.9
        assert uplink.pump() == 0
        clock.now += 0.2
        assert uplink.pump() == 3
        wait_for(lambda: len(seen) == 6, 5, "two copies of each event")
        receipt = Receipt(
            site=SITE,
            device=DEVICE,
            event_ids=[e.event_id for e in events],
            sent_at=dt.datetime.now(dt.UTC),
        )
        listener.publish(receipt_topic(SITE, DEVICE), encode(receipt))
        wait_for(lambda: outbox.depth() == 0, 5, "the receipt")
        assert uplink.counters().republished == 3
    finally:
        listener.close()


def test_malformed_and_foreign_receipts_are_counted_not_fatal(
    broker: Broker, edge_client: MqttClient, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", 1000)
    uplink = Uplink(outbox, edge_client, SITE, DEVICE, receipt_timeout_s=30)
    uplink.start()
    edge_client.start()
    sender = MqttClient(broker.url, f"test-send-{free_port()}", session_expiry_s=0)
    sender.start()
    try:
        assert edge_client.wait_connected(5) and sender.wait_connected(5)
        event = make_event()
        uplink.put(event)
        uplink.pump()
        topic = receipt_topic(SITE, DEVICE)
        foreign = Receipt(
            site=SITE, device="other", event_ids=[event.event_id], sent_at=dt.datetime.now(dt.UTC)
        )
        for payload in (b"not json", b'{"schema_version": 1}', encode(foreign)):
            sender.publish(topic, payload)
        wait_for(lambda: uplink.counters().bad_messages == 3, 5, "three bad receipts")
        assert outbox.depth() == 1
        good = foreign.model_copy(update={"device": DEVICE})
        sender.publish(topic, encode(good))
        wait_for(lambda: outbox.depth() == 0, 5, "the good receipt")
    finally:
        sender.close()


def test_a_failing_handler_is_counted_and_the_next_message_still_arrives(
    broker: Broker, edge_client: MqttClient
) -> None:
    got: list[bytes] = []

    def handler(msg: Message) -> None:
        if msg.payload == b"boom":
            raise RuntimeError("handler bug")
        got.append(msg.payload)

    edge_client.subscribe("test/handler", handler)
    edge_client.start()
    assert edge_client.wait_subscribed(5)
    edge_client.publish("test/handler", b"boom")
    edge_client.publish("test/handler", b"fine")
    wait_for(lambda: got == [b"fine"], 5, "the second message")
    assert edge_client.counters().handler_errors == 1


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto with a password file and an ACL (user box1: only its tree)."""
    work = tmp_path / "authmq"
    work.mkdir()
    passwd = work / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "box1", "right"], check=True)
    acl = work / "acl"
    acl.write_text("user box1\ntopic readwrite ringwatch/v1/status/campus/box1\n")
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {acl}\nlog_dest stderr\nuser root\n"
    )
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    broker = Broker("127.0.0.1", port, work, proc)
    wait_for(lambda: _listening(port), 10, "the auth broker")
    yield broker
    broker.stop()


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_bad_credentials_raise_and_stop_retrying(auth_broker: Broker) -> None:
    client = MqttClient(auth_broker.url, "box1", username="box1", password="wrong")
    client.start()
    try:
        with pytest.raises(
            MqttAuthError,
            match="refused client .box1.: (bad user name or password|not authorized); not retrying",
        ):
            client.wait_connected(5)
        time.sleep(2.5)  # paho would have retried after 1 s and again after 2 s
        assert client.counters().refused == 1
        with pytest.raises(MqttAuthError):
            client.publish("ringwatch/v1/status/campus/box1", b"x")
    finally:
        client.close()


def test_acl_refusal_is_seen_in_puback_reason(auth_broker: Broker) -> None:
    client = MqttClient(auth_broker.url, "box1", username="box1", password="right")
    client.start()
    try:
        assert client.wait_connected(5)
        assert client.publish("ringwatch/v1/status/campus/box1", b"allowed")
        assert client.publish("ringwatch/v1/events/campus/box2/zone", b"forbidden")
        wait_for(lambda: client.counters().publish_rejected == 1, 5, "PUBACK 0x87")
        time.sleep(0.2)
        assert client.counters().publish_rejected == 1
    finally:
        client.close()


# -- the edge as a real process ---------------------------------------------------------------


def spawn_emitter(
    broker_url: str, outbox: Path, log: Path, count: int, rate: float
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(EMITTER), "--broker", broker_url, "--outbox", str(outbox)]
    cmd += ["--count", str(count), "--rate", str(rate), "--receipt-timeout", "3"]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def depth_of(path: Path) -> int:
    with Outbox(path, 100_000) as box:
        return box.depth()


def ledger(log: Path) -> tuple[set[str], set[str]]:
    """(ids certainly stored, ids maybe stored) from an emitter's output."""
    ok: set[str] = set()
    put: set[str] = set()
    for line in log.read_text().splitlines():
        word, _, rest = line.partition(" ")
        if word == "ok":
            ok.add(rest)
        elif word == "put":
            put.add(rest)
    return ok, put - ok


def test_the_last_will_marks_a_killed_edge_offline(broker: Broker, tmp_path: Path) -> None:
    states: list[DeviceState] = []
    watcher = MqttClient(broker.url, f"test-watch-{free_port()}", session_expiry_s=0)
    watcher.subscribe(
        status_topic(SITE, "box9"), lambda m: states.append(decode(DeviceStatus, m.payload).state)
    )
    watcher.start()
    cmd = [sys.executable, str(EMITTER), "--broker", broker.url, "--outbox"]
    cmd += [str(tmp_path / "o.sqlite3"), "--device", "box9", "--count", "0"]
    edge = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: DeviceState.ONLINE in states, 15, "the birth message")
        edge.send_signal(signal.SIGKILL)
        edge.wait(5)
        wait_for(lambda: states[-1] is DeviceState.OFFLINE, 10, "the last will")
    finally:
        edge.kill()
        edge.wait()
        watcher.close()


def test_no_event_lost_across_a_30s_broker_outage_and_an_edge_sigkill(tmp_path: Path) -> None:
    mq = tmp_path / "mq"
    mq.mkdir()
    broker = Broker("127.0.0.1", free_port(), mq)
    broker.start()
    hub = HubReceiver(broker.url, tmp_path / "hub.sqlite3", "test-hub-kill", expiry_s=3600)
    hub.start()
    outbox_path = tmp_path / "edge-outbox.sqlite3"
    logs = [tmp_path / "edge-a.log", tmp_path / "edge-b.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        assert hub.client.wait_connected(5)
        procs.append(spawn_emitter(broker.url, outbox_path, logs[0], count=400, rate=40))
        wait_for(lambda: len(hub.ids()) >= 40, 20, "the first events at the hub")
        outage_start = time.monotonic()
        broker.stop(kill=True)  # SIGKILL: whatever the broker held in memory is gone
        time.sleep(3)  # the edge keeps detecting: events queue in the outbox
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        queued_at_kill = depth_of(outbox_path)
        assert queued_at_kill > 0
        procs.append(spawn_emitter(broker.url, outbox_path, logs[1], count=200, rate=40))
        time.sleep(max(0.0, 30 - (time.monotonic() - outage_start)))
        broker.start()
        back = time.monotonic()
        outage = back - outage_start
        wait_for(lambda: "generated" in logs[1].read_text(), 30, "edge B to finish")
        ok_a, maybe_a = ledger(logs[0])
        ok_b, maybe_b = ledger(logs[1])
        must = ok_a | ok_b
        wait_for(lambda: must <= hub.ids(), 60, "every stored event at the hub")
        drained = time.monotonic() - back
        first_new = min(t for t in hub.arrivals if t >= back) - back
        wait_for(lambda: depth_of(outbox_path) == 0, 30, "an empty outbox")
        emptied = time.monotonic() - back
        received = hub.ids()
        assert must <= received
        assert received <= must | maybe_a | maybe_b
        print(
            f"\nDELIVERY: outage {outage:.1f} s, events stored {len(must)}, queued in the "
            f"outbox at SIGKILL {queued_at_kill}, received {len(received)} unique / "
            f"{hub.deliveries} deliveries ({hub.duplicates} duplicates); after the broker "
            f"came back: first new event at the hub {first_new:.1f} s, all there "
            f"{drained:.1f} s, outbox empty {emptied:.1f} s"
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        hub.close()
        broker.stop()
