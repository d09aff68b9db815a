"""``ringwatch hub soak``: N real hub workers on one PostgreSQL behind NATS or Mosquitto, 4
edge-equivalent publishers built on the edge's own outbox and uplink, one worker and one
broker node SIGKILLed mid-stream and restarted; prints what was lost or doubled.

- Database: a fresh schema on ``--pg-url``, dropped after; without it a private PostgreSQL
  cluster (Debian's ``initdb`` / ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``) in a temp
  dir on a free port, stopped and removed after the run (:class:`PrivatePostgres`).
- Broker: ``nats``: a private 3-node cluster (JetStream R3 work queue, MQTT listeners; edges
  on different nodes, MQTT 3.1.1); the node leading the stream is the one killed.
  ``mosquitto``: a private Mosquitto (shared subscription, MQTT 5), killed and restarted.
- Workers: ``ringwatch hub serve`` subprocesses (distinct worker names, one group), started
  together; worker 1 is SIGKILLed at 40 % of the events and restarted 3 s later.
- Edges: 4 threads, each an :class:`~ringwatch.edge.outbox.Outbox` +
  :class:`~ringwatch.edge.uplink.Uplink` + the edge's MQTT client, sending face (enrolled
  watch-list persons), zone, intrusion, loitering, shed and health messages. Response
  stages of 2/4/6 s, so escalations fall during the run. A webhook receiver and an MQTT
  alert subscriber count what reaches recipients.

Columns: events sent / stored / lost (sent, never stored) / doubled (an event applied twice
to an incident); incidents expected (distinct correlation keys sent) / made / doubled;
routed MQTT alerts and webhook deliveries expected (rows) / sent / resent (same alert_id:
at least once after a failed or timed-out attempt or a worker killed between the send and its
commit; a recipient de-duplicating on alert_id drops it) / doubled (what a recipient could
not drop: an id the hub never queued; for webhooks also a POST without a usable id, or one
incident's "new" alert under a second id); escalations expected (stages past due, undone) /
sent / doubled;
drain time (from the last event generated to every outbox empty). An alert the broker
redelivers to a subscriber with the DUP flag (MQTT QoS 1 at least once, e.g. after a
node restart) is counted in a note, not as doubled: the hub published it once.
"""

from __future__ import annotations

import datetime as dt
import glob
import http.server
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
import yaml

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import AlertLevel, Event, Health
from ringwatch.contract.topics import EventKind
from ringwatch.errors import ConfigError
from ringwatch.table import render_table

SECRET = "soak-secret-not-for-production"
EDGES = 4
PERSONS = 6
STAGE_S = (2, 4, 6)
#: Shorter than the edge default (30 s), so a lost batch comes back within the run.
RECEIPT_TIMEOUT_S = 10.0


@dataclass
class SoakResult:
    broker: str
    workers: int
    sent: int = 0
    stored: int = 0
    lost: int = 0
    doubled: int = 0
    incidents_expected: int = 0
    incidents_made: int = 0
    incidents_doubled: int = 0
    alerts_expected: int = 0
    alerts_sent: int = 0
    alerts_resent: int = 0
    alerts_doubled: int = 0
    webhooks_expected: int = 0
    webhooks_sent: int = 0
    webhooks_resent: int = 0
    webhooks_doubled: int = 0
    escalations_expected: int = 0
    escalations_sent: int = 0
    escalations_doubled: int = 0
    drain_s: float = 0.0
    events_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        return [
            self.broker,
            str(self.workers),
            f"{self.sent}/{self.stored}",
            str(self.lost),
            str(self.doubled),
            f"{self.incidents_expected}/{self.incidents_made}",
            str(self.incidents_doubled),
            f"{self.alerts_expected}/{self.alerts_sent}",
            str(self.alerts_resent),
            str(self.alerts_doubled),
            f"{self.webhooks_expected}/{self.webhooks_sent}",
            str(self.webhooks_resent),
            str(self.webhooks_doubled),
            f"{self.escalations_expected}/{self.escalations_sent}",
            str(self.escalations_doubled),
            f"{self.drain_s:.1f}",
            f"{self.events_per_s:.0f}",
        ]


HEADERS = [
    "broker",
    "workers",
    "events sent/stored",
    "lost",
    "doubled",
    "incidents exp/made",
    "doubled",
    "alerts exp/sent",
    "resent (same alert_id)",
    "doubled",
    "webhooks exp/sent",
    "resent (same alert_id)",
    "doubled",
    "escalations exp/sent",
    "doubled",
    "drain s",
    "events/s",
]


def table(results: list[SoakResult]) -> str:
    text = render_table(HEADERS, [r.row() for r in results])
    notes = [f"- {n}" for r in results for n in r.notes]
    return text + ("\n" + "\n".join(notes) if notes else "")


# --- the world --------------------------------------------------------------------------------


def _site(i: int) -> dict[str, Any]:
    return {
        "id": f"campus-{i}",
        "name": f"School {i}",
        "station": "st-1",
        "manager": "pm-1",
        "devices": [
            {
                "id": f"box-{i}",
                "cameras": [
                    {"id": "gate", "default_ring": "perimeter"},
                    {"id": "yard", "default_ring": "inner"},
                    {"id": "shed-cam", "role": "shed", "shed": f"shed-{i}"},
                ],
            }
        ],
    }


def hub_config(worker: str, group: str, webhook: str) -> dict[str, Any]:
    plan = [
        {"name": name, "within_s": s}
        for name, s in zip(
            ("acknowledged", "patrol_on_scene", "station_on_scene"), STAGE_S, strict=True
        )
    ]
    shed = [
        {"name": name, "within_s": s}
        for name, s in zip(
            ("acknowledged", "onsite_check", "fire_service_called"), STAGE_S, strict=True
        )
    ]
    return {
        "stations": [{"id": "st-1", "name": "Station 1"}],
        "managers": [{"id": "pm-1", "name": "Estates"}],
        "sites": [_site(i) for i in range(EDGES)],
        "ingest": {"worker": worker, "group": group, "session_expiry_s": 10, "ack_wait_s": 5},
        "incidents": {
            "window_s": 3600,
            "tick_s": 0.5,
            "supervisors": {"st-1": ["sgt-1"]},
            "webhooks": [{"url": webhook}],
            "retry": {"attempts": 3, "first_s": 0.5, "max_s": 2},
            "stages": {
                "plans": {
                    "watchlist": plan,
                    "intrusion": plan,
                    "loitering": plan,
                    "shed": shed,
                }
            },
        },
    }


def _vector(person: int) -> list[float]:
    rng = np.random.default_rng(7000 + person)
    v = rng.normal(size=128)
    return [float(x) for x in v / np.linalg.norm(v)]


def _enrol(db_url: str) -> dict[int, int]:
    """Watch-list persons with one template each (before the workers start)."""
    from ringwatch.hub import crud
    from ringwatch.hub import schemas as s
    from ringwatch.hub.crypto import TemplateCipher
    from ringwatch.hub.db import make_engine, migrate, session_factory
    from ringwatch.hub.inventory import HubConfig

    engine = make_engine(db_url)
    migrate(engine)
    cipher = TemplateCipher(SECRET)
    now = dt.datetime.now(dt.UTC)
    ids: dict[int, int] = {}
    with session_factory(engine).begin() as session:
        crud.apply_config(session, HubConfig.model_validate(hub_config("x", "x", "http://x/")))
        for p in range(PERSONS):
            data = s.PersonCreate.model_validate(
                {
                    "display_name": f"Person {p}",
                    "tier": "red",
                    "reason": "soak",
                    "case_reference": f"SOAK-{p}",
                    "legal_basis": "soak test",
                    "station_id": "st-1",
                    "review_due": (now.date() + dt.timedelta(days=90)).isoformat(),
                }
            )
            actor = crud.Actor("soak", "admin")
            row = crud.create_person(session, data, actor, now)
            emb = cipher.encrypt_embedding(np.asarray(_vector(p), np.float32))
            crud.add_template(session, row, emb, cipher.encrypt(b"x"), 0.9, "0" * 64, actor, now)
            ids[p] = row.id
    engine.dispose()
    return ids


# --- recipients -----------------------------------------------------------------------------------


class Recipients:
    """A webhook receiver (HTTP) and an MQTT alert subscriber, counting what arrives."""

    def __init__(self) -> None:
        self.webhook_keys: Counter[str] = Counter()  # POSTs per alert_id
        self.webhook_first: dict[str, dict[str, Any]] = {}  # alert_id -> first body kept
        self.webhook_unkeyed = 0  # POSTs a recipient could not de-duplicate
        self.alerts: Counter[tuple[int, str, str]] = Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                    alert_id = str(body["alert_id"]) if isinstance(body, dict) else ""
                except (ValueError, KeyError):
                    body, alert_id = {}, ""
                key = self.headers.get("Idempotency-Key", "")
                with outer.lock:
                    # Like a real recipient: keep the first POST of an alert_id, drop
                    # repeats (counted as resends). A POST without an alert_id, or whose
                    # header and body disagree, cannot be de-duplicated.
                    if not alert_id or key != alert_id:
                        outer.webhook_unkeyed += 1
                    else:
                        outer.webhook_keys[alert_id] += 1
                        outer.webhook_first.setdefault(alert_id, body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.clients: list[Any] = []
        self.redelivered = 0

    def subscribe(self, mqtt_url: str, protocol: str) -> None:
        """One more alert subscriber (one per NATS node: a node that is killed drops what
        its MQTT sessions had in flight); a repeat is counted per subscriber."""
        from ringwatch.edge.mqtt import Message, MqttClient

        index = len(self.clients)

        def on_alert(message: Message) -> None:
            body = json.loads(message.payload)
            key = (index, str(body.get("alert_id")), message.topic)
            with self.lock:
                if message.dup and key in self.alerts:
                    self.redelivered += 1  # the broker's QoS 1 retry, not a second publish
                else:
                    self.alerts[key] += 1

        client = MqttClient(
            mqtt_url,
            f"soak-alerts-{index}-{uuid.uuid4().hex[:6]}",
            protocol=protocol,
            session_expiry_s=3600,
        )
        client.subscribe("ringwatch/v1/alerts/#", on_alert, qos=1)
        client.start()
        self.clients.append(client)
        if not client.wait_connected(15):
            raise ConfigError(f"soak: alert subscriber could not connect to {mqtt_url}")

    def seen(self) -> int:
        """Distinct alerts (id, topic) that reached at least one subscriber."""
        with self.lock:
            return len({(a, t) for _, a, t in self.alerts})

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.shutdown()
        self.server.server_close()


# --- edges ---------------------------------------------------------------------------------------


class Edge:
    """One edge-equivalent publisher: the edge's outbox, uplink and MQTT client."""

    def __init__(
        self, index: int, url: str, protocol: str, workdir: Path, persons: dict[int, int]
    ) -> None:
        from ringwatch.edge.config import BrokerConfig
        from ringwatch.edge.outbox import Outbox
        from ringwatch.edge.uplink import Uplink, device_client

        self.site, self.device = f"campus-{index}", f"box-{index}"
        self.index = index
        self.persons = persons
        self.outbox = Outbox(workdir / f"outbox-{index}.sqlite3", max_events=200_000)
        cfg = BrokerConfig.model_validate({"url": url, "protocol": protocol})
        self.client = device_client(cfg, self.site, self.device, "soak")
        self.uplink = Uplink(self.outbox, self.client, self.site, self.device, RECEIPT_TIMEOUT_S)
        self.sent: list[str] = []
        self.keys: set[tuple[str, str, str]] = set()  # (kind, site, key) expected incidents
        self.stop = threading.Event()
        self.pump = threading.Thread(target=self.uplink.run, args=(self.stop,), daemon=True)

    def start(self) -> None:
        self.uplink.start()
        self.client.start()
        self.pump.start()

    def event(self, n: int) -> Event | None:
        """The n-th message of this edge (None: a heartbeat was queued instead)."""
        now = dt.datetime.now(dt.UTC)
        base: dict[str, Any] = {
            "event_id": new_event_id(),
            "captured_at": now,
            "site": self.site,
            "device": self.device,
            "phase": "start",
            "frame_width": 640,
            "frame_height": 480,
        }
        slot = n % 10
        if slot == 9:
            self.uplink.put_health(
                Health(
                    site=self.site,
                    device=self.device,
                    at=now,
                    agent_version="soak",
                    uptime_s=float(n),
                    outbox_depth=0,
                    outbox_dropped=0,
                )
            )
            return None
        if slot in (0, 1, 2):
            person = (n // 10 + slot) % PERSONS
            camera = "gate" if slot != 2 else "yard"
            self.keys.add(("watchlist", self.site, f"person:{self.persons[person]}"))
            return Event.model_validate(
                {
                    **base,
                    "camera": camera,
                    "kind": EventKind.FACE,
                    "phase": "update",
                    "embedding": _vector(person),
                    "face_quality": 0.9,
                }
            )
        if slot in (3, 4):
            return Event.model_validate(
                {**base, "camera": "yard", "kind": EventKind.ZONE, "zone_id": "inner"}
            )
        if slot == 5:
            self.keys.add(("intrusion", self.site, "camera:gate"))
            return Event.model_validate({**base, "camera": "gate", "kind": EventKind.INTRUSION})
        if slot == 6:
            self.keys.add(("loitering", self.site, "camera:yard"))
            return Event.model_validate({**base, "camera": "yard", "kind": EventKind.LOITERING})
        self.keys.add(("shed", self.site, "camera:shed-cam"))
        level = AlertLevel.ALARM if slot == 8 else AlertLevel.WARNING
        return Event.model_validate(
            {**base, "camera": "shed-cam", "kind": EventKind.SHED, "level": level}
        )

    def put(self, n: int) -> None:
        event = self.event(n)
        if event is not None:
            self.uplink.put(event)
            self.sent.append(event.event_id)

    def close(self) -> None:
        self.stop.set()
        self.pump.join(timeout=5)
        self.client.close()
        self.outbox.close()


# --- workers ------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    name: str
    port: int
    settings: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ringwatch",
                    "hub",
                    "serve",
                    "--settings",
                    str(self.settings),
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                ],
                stdout=out,
                stderr=out,
                env={k: v for k, v in os.environ.items() if not k.startswith("RINGWATCH_HUB_")},
            )

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/api/v1/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                # Without a token /health says only ok or degraded; "ok" with ingest running
                # means the database answers and the broker link is up.
                return bool(json.load(response).get("status") == "ok")
        except (OSError, ValueError, KeyError):
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None


def _wait(cond: Any, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout_s:
            raise ConfigError(f"soak: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


# --- a private PostgreSQL ----------------------------------------------------------------


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: ``initdb`` into a temp dir, ``pg_ctl start`` on a
    free port (127.0.0.1 only, trust auth, durability settings left at their defaults),
    ``pg_ctl stop`` and the dir removed after. Run as root, the server runs as the
    ``postgres`` user (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise ConfigError(
                "soak: no --pg-url and no /usr/lib/postgresql/*/bin/initdb (install Debian's"
                " postgresql package, tools/setup.sh does) to start a private PostgreSQL"
            )
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="ringwatch-soak-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self.started = False
        self.user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise ConfigError(f"soak: private PostgreSQL: {args[0]} failed: {done.stderr[-500:]}")

    def start(self) -> PrivatePostgres:
        from ringwatch.hub.nats_cluster import free_port

        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories="
            f"{self.dir} -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        self.started = True
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        finally:
            self.started = False
            shutil.rmtree(self.dir, ignore_errors=True)


# --- one run --------------------------------------------------------------------------------------


def run_soak(
    broker: str,
    workers: int,
    events: int,
    pg_url: str | None = None,
    *,
    kill: bool = True,
    rate: float = 60.0,
) -> SoakResult:
    """One bounded run; see the module docstring."""
    if broker not in ("nats", "mosquitto"):
        raise ConfigError(f"soak: --broker {broker!r}: expected nats or mosquitto")
    if pg_url is not None:
        return _run(broker, workers, events, pg_url, kill=kill, rate=rate)
    private = PrivatePostgres()
    try:
        return _run(broker, workers, events, private.start().url, kill=kill, rate=rate)
    finally:
        private.stop()


def _run(broker: str, workers: int, events: int, pg: str, *, kill: bool, rate: float) -> SoakResult:
    from ringwatch.hub.nats_cluster import NatsCluster, free_port

    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in pg else "?"
    db_url = f"{pg}{sep}options=-csearch_path%3D{schema}"
    result = SoakResult(broker, workers)
    tmp = tempfile.TemporaryDirectory(prefix="ringwatch-soak-")
    work = Path(tmp.name)
    cluster: NatsCluster | None = None
    mosquitto: Any = None
    recipients = Recipients()
    procs: list[WorkerProcess] = []
    edges: list[Edge] = []
    try:
        persons = _enrol(db_url)
        if broker == "nats":
            cluster = NatsCluster(work / "nats").start()
            edge_urls = [cluster.nodes[i % 3].mqtt_url for i in range(EDGES)]
            protocol = "3.1.1"
        else:
            from ringwatch.hub.broker import PrivateMosquitto

            mosquitto = PrivateMosquitto(work / "mosquitto").start()
            edge_urls = [mosquitto.url] * EDGES
            protocol = "5"
        group = "soak-hubs"
        for i in range(workers):
            name = f"w{i + 1}"
            settings: dict[str, Any] = {
                "database_url": db_url,
                "jwt_secret": SECRET,
                "template_key": SECRET,
            }
            if cluster is not None:
                settings.update(
                    broker_kind="nats",
                    nats_url=cluster.url,
                    broker_url=cluster.nodes[(i + 1) % 3].mqtt_url,
                )
            else:
                settings["broker_url"] = mosquitto.url
            paths = work / f"{name}.settings.yaml", work / f"{name}.config.yaml"
            paths[0].write_text(yaml.safe_dump(settings))
            paths[1].write_text(yaml.safe_dump(hub_config(name, group, recipients.url)))
            procs.append(WorkerProcess(name, free_port(), *paths, work / f"{name}.log"))
        for proc in procs:
            proc.start()
        _wait(lambda: all(p.healthy() for p in procs), 90, "all workers healthy")
        for url in sorted(set(edge_urls)):
            recipients.subscribe(url, protocol)
        edges = [Edge(i, edge_urls[i], protocol, work, persons) for i in range(EDGES)]
        for edge in edges:
            edge.start()
        _wait(lambda: all(e.client.connected for e in edges), 30, "edges connected")

        per_edge = events // EDGES
        kill_at = int(per_edge * 0.4)
        started = time.monotonic()
        killed: dict[str, Any] = {}
        for n in range(per_edge):
            for edge in edges:
                edge.put(n)
            if kill and n == kill_at:
                killed = _kill(procs[0], cluster, mosquitto, result)
            if killed and time.monotonic() - killed["at"] > 3:
                _restart(killed, procs[0], cluster, mosquitto)
                killed = {}
            time.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
        if killed:
            _restart(killed, procs[0], cluster, mosquitto)
        result.drain_s = _wait(
            lambda: all(e.outbox.depth() == 0 for e in edges), 300, "edge outboxes to drain"
        )
        # End to end: from the first event queued to the last one receipted.
        result.events_per_s = sum(len(e.sent) for e in edges) / (time.monotonic() - started)
        time.sleep(max(STAGE_S) + 4)  # the last deadlines pass and escalate
        _settle(db_url)
        _measure(db_url, edges, recipients, result)
    finally:
        for edge in edges:
            edge.close()
        for proc in procs:
            proc.stop()
        recipients.close()
        if cluster is not None:
            cluster.stop()
        if mosquitto is not None:
            mosquitto.stop()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        tmp.cleanup()
    return result


def _kill(
    worker: WorkerProcess, cluster: Any, mosquitto: Any, result: SoakResult
) -> dict[str, Any]:
    from ringwatch.hub.nats import STREAM

    worker.kill()
    node = None
    if cluster is not None:
        node = cluster.stream_leader(STREAM)
        if node is None:
            result.notes.append(f"{result.broker}: stream leader unknown; killed node n1")
            node = cluster.nodes[0]
        cluster.kill(node)
        result.notes.append(
            f"{result.broker}: SIGKILLed worker {worker.name} and stream leader {node.name}"
        )
    else:
        mosquitto.process.kill()
        mosquitto.process.wait(timeout=10)
        mosquitto.process = None
        result.notes.append(f"mosquitto: SIGKILLed worker {worker.name} and the broker")
    return {"at": time.monotonic(), "node": node}


def _restart(killed: dict[str, Any], worker: WorkerProcess, cluster: Any, mosquitto: Any) -> None:
    if cluster is not None:
        cluster.start_node(killed["node"])
    else:
        mosquitto.start()
    worker.start()


def _settle(db_url: str, timeout_s: float = 60) -> None:
    """Until no MQTT/webhook delivery is pending (the dispatchers have sent all)."""
    engine = sa.create_engine(db_url)
    try:

        def none_pending() -> bool:
            with engine.connect() as conn:
                left = conn.execute(
                    sa.text(
                        "select count(*) from deliveries where status = 'pending'"
                        " and channel in ('mqtt', 'webhook')"
                    )
                ).scalar()
            return left == 0

        _wait(none_pending, timeout_s, "pending deliveries to be sent")
        time.sleep(1.0)
    finally:
        engine.dispose()


def _webhook_counts(recipients: Recipients, hook_ids: set[str], r: SoakResult) -> None:
    """``resent``: repeats of one alert_id (at least once after an unknown outcome; the
    recipient drops them). ``doubled``: what a recipient could not drop: a POST without a
    usable alert_id, an alert_id the hub never queued for a webhook, or one incident's
    ``new`` alert arriving under two alert_ids."""
    r.webhooks_resent = sum(n - 1 for n in recipients.webhook_keys.values() if n > 1)
    unknown = [a for a in recipients.webhook_keys if a not in hook_ids]
    news = Counter(
        body.get("incident_id")
        for body in recipients.webhook_first.values()
        if body.get("reason") == "new"
    )
    twice_new = sum(n - 1 for n in news.values() if n > 1)
    r.webhooks_doubled = recipients.webhook_unkeyed + len(unknown) + twice_new
    if r.webhooks_doubled:
        r.notes.append(
            f"{r.broker}: webhooks doubled: {recipients.webhook_unkeyed} without a usable"
            f" alert_id, {len(unknown)} unknown alert_id(s), {twice_new} 'new' alert(s) sent"
            " again under another alert_id"
        )


def _measure(db_url: str, edges: list[Edge], recipients: Recipients, r: SoakResult) -> None:
    engine = sa.create_engine(db_url)
    sent = [i for e in edges for i in e.sent]
    expected_keys = set().union(*(e.keys for e in edges))
    try:
        with engine.connect() as conn:

            def one(sql: str) -> int:
                return int(conn.execute(sa.text(sql)).scalar() or 0)

            stored = set(conn.execute(sa.text("select id from events")).scalars())
            r.sent, r.stored = len(sent), len(stored & set(sent))
            r.lost = len(set(sent) - stored)
            r.doubled = one(
                "select count(*) from (select event_id, incident_id, role from incident_points"
                " where event_id is not null group by event_id, incident_id, role"
                " having count(*) > 1) d"
            )
            kinds = "('watchlist', 'intrusion', 'loitering', 'shed')"
            keys = conn.execute(
                sa.text(f"select kind, site_id, key from incidents where kind in {kinds}")
            ).all()
            made = Counter((k, s, key) for k, s, key in keys)
            r.incidents_expected, r.incidents_made = len(expected_keys), len(keys)
            r.incidents_doubled = sum(n - 1 for n in made.values() if n > 1)
            if set(made) != expected_keys:
                r.notes.append(f"incident keys differ: {set(made) ^ expected_keys}")
            r.alerts_expected = one("select count(*) from deliveries where channel = 'mqtt'")
            r.alerts_sent = one(
                "select count(*) from deliveries where channel = 'mqtt' and status = 'sent'"
            )
            r.webhooks_expected = one("select count(*) from deliveries where channel = 'webhook'")
            r.webhooks_sent = one(
                "select count(*) from deliveries where channel = 'webhook' and status = 'sent'"
            )
            due = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
            r.escalations_expected = int(
                conn.execute(
                    sa.text(
                        "select count(*) from incident_stages s"
                        " join incidents i on i.id = s.incident_id"
                        " where s.due_at is not null and s.done_at is null and not s.cancelled"
                        " and i.status in ('open', 'confirmed') and s.due_at < :due"
                    ),
                    {"due": due},
                ).scalar()
                or 0
            )
            failed = one(
                "select count(*) from delivery_attempts a join deliveries d"
                " on d.id = a.delivery_id where d.channel = 'webhook' and not a.ok"
            )
            if failed:
                r.notes.append(
                    f"{r.broker}: {failed} webhook attempt(s) failed and were retried (a"
                    " timeout on a loaded machine may have reached the receiver anyway)"
                )
            r.escalations_sent = one(
                "select count(*) from incident_stages where missed_at is not null"
            )
            details = conn.execute(sa.text("select detail from incidents")).scalars()
            r.escalations_doubled = sum(
                len(m) - len(set(m))
                for d in details
                for m in [(d if isinstance(d, dict) else json.loads(d)).get("missed", [])]
            )
            hook_ids = set(
                conn.execute(
                    sa.text("select alert_id from deliveries where channel = 'webhook'")
                ).scalars()
            )
            mqtt_ids = set(
                conn.execute(
                    sa.text("select alert_id from deliveries where channel = 'mqtt'")
                ).scalars()
            )
        with recipients.lock:
            _webhook_counts(recipients, hook_ids, r)
            # Like the webhooks: a repeat of one alert_id is a resend a recipient drops (at
            # least once: a failed or timed-out publish, or a worker killed between the
            # broker's PUBACK and its commit); doubled is what it could not drop, an alert
            # under an id the hub never queued.
            r.alerts_resent = sum(n - 1 for n in recipients.alerts.values() if n > 1)
            r.alerts_doubled = sum(n for k, n in recipients.alerts.items() if k[1] not in mqtt_ids)
            redelivered = recipients.redelivered
        got = recipients.seen()
        if redelivered:
            r.notes.append(
                f"{r.broker}: {redelivered} alert(s) redelivered by the broker (QoS 1 DUP to a"
                " subscriber that had it), not counted as doubled"
            )
        if got < r.alerts_sent:
            r.notes.append(
                f"{r.broker}: the MQTT alert subscribers saw {got} of {r.alerts_sent} alerts"
                " sent (a killed node drops what its MQTT sessions had in flight)"
            )
    finally:
        engine.dispose()
