"""Several hub workers on one PostgreSQL schema: two real hubs (each its own engine,
matcher, ingest and incident runtime, as two `hub serve` processes have) in one test
process, started together, with an injected clock, racing on purpose (a barrier releases
both at once): one incident per correlation key, one technical incident, one retention
purge per round and its take-over when the claimer dies, one zone re-push per status, the
migration and inventory load of workers starting together, liveness on the hub's clock,
the workers view in /health; SQLite refusing a second worker; MqttLink.publish never
queueing a copy it reports as failed."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import DeviceState, DeviceStatus, Event, Health, encode
from ringwatch.contract.topics import EventKind, event_topic, health_topic
from ringwatch.errors import ConfigError
from ringwatch.hub import crud
from ringwatch.hub import schemas as s
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.db import current_revision, head_revision
from ringwatch.hub.incident_runtime import TECHNICAL_LEASE, IncidentRuntime
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.matching import random_unit_vectors
from ringwatch.hub.mqtt import BrokerAddress, MqttLink
from ringwatch.hub.workers import HubLease, claim_round, lock_keys
from ringwatch.hub.zone_tables import CameraZoneConfig
from tests.hub_fixtures import HUB_CONFIG, create_admin, database, person_body, settings
from tests.hub_fixtures import health as full_health
from tests.services import private_broker, wait_for

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
CAMERAS = [f"cam-{i}" for i in range(8)]
SITES = [
    {
        "id": "campus-n",
        "name": "North School",
        "station": "st-north",
        "manager": "pm-acme",
        "devices": [
            {"id": "box-1", "cameras": [{"id": c, "default_ring": "inner"} for c in CAMERAS]},
            {"id": "box-2", "cameras": [{"id": "yard"}]},
        ],
    }
]


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


def config(worker: str) -> HubConfig:
    return HubConfig.model_validate(
        {
            **HUB_CONFIG,
            "sites": SITES,
            "ingest": {"worker": worker},
            "incidents": {"timer_loop": False, "supervisors": {"st-north": ["north-sgt"]}},
        }
    )


@dataclass
class Worker:
    hub: Hub
    client: TestClient
    ingestor: Ingestor

    @property
    def runtime(self) -> IncidentRuntime:
        assert self.hub.incidents is not None
        return self.hub.incidents

    def send(self, *messages: Event | Health) -> None:
        batch = [Inbound(_topic(m), encode(m)) for m in messages]
        result = self.ingestor.ingest(batch)
        assert not result.dead, result.dead


def _topic(m: Event | Health) -> str:
    if isinstance(m, Event):
        return event_topic(m.site, m.device, m.kind)
    return health_topic(m.site, m.device)


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released by one barrier; re-raise the first error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[tuple[Worker, Worker, FakeClock]]:
    """Two hubs on one fresh schema, their lifespans (migrations + inventory) entered at
    the same instant."""
    with database("postgresql", tmp_path, pg_url) as url:
        clock = FakeClock(T0)
        apps = [
            create_app(settings(url), config(f"w{i}"), clock=clock, ingest=False) for i in (1, 2)
        ]
        clients = [TestClient(app) for app in apps]
        try:
            together(*(c.__enter__ for c in clients))
            pair = [
                Worker(
                    a.state.hub,
                    c,
                    Ingestor(
                        a.state.hub.sessions,
                        a.state.hub.matcher,
                        clock,
                        IngestStats(),
                        a.state.hub.incidents.on_stored,
                    ),
                )
                for a, c in zip(apps, clients, strict=True)
            ]
            yield pair[0], pair[1], clock
        finally:
            for c in clients:
                c.__exit__(None, None, None)


def event(kind: EventKind, camera: str, at: dt.datetime, **fields: Any) -> Event:
    return Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": at,
            "site": "campus-n",
            "device": "box-1",
            "camera": camera,
            "kind": kind,
            "phase": "start",
            "frame_width": 640,
            "frame_height": 480,
            **fields,
        }
    )


def person(hub: Hub, name: str, now: dt.datetime) -> np.ndarray:
    review = (now.date() + dt.timedelta(days=90)).isoformat()
    data = s.PersonCreate.model_validate(person_body(name, review))
    actor = crud.Actor("test", "admin")
    with hub.sessions.begin() as session:
        row = crud.create_person(session, data, actor, now)
        vector: np.ndarray = random_unit_vectors(1, seed=1000 + row.id)[0]
        crud.add_template(
            session,
            row,
            hub.cipher.encrypt_embedding(vector),
            hub.cipher.encrypt(b"jpeg"),
            0.9,
            "0" * 64,
            actor,
            now,
        )
    return vector


def face(vector: np.ndarray, camera: str, at: dt.datetime) -> Event:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    return event(
        EventKind.FACE,
        camera,
        at,
        phase="update",
        embedding=[float(v) for v in vector],
        face_quality=0.9,
        face_crop_jpeg=base64.b64encode(buf.tobytes()).decode(),
    )


def incidents(w: Worker, kind: str) -> list[Incident]:
    with w.hub.sessions() as session:
        return list(session.scalars(sa.select(Incident).where(Incident.kind == kind)))


# --- correlation ------------------------------------------------------------------------------


def test_simultaneous_events_of_one_key_on_two_workers_make_one_incident(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    vectors = [person(w1.hub, f"P{i}", clock()) for i in range(3)]
    for round_ in range(4):  # same person / same camera, on both workers at once
        at = clock.advance(1)
        batch1 = [event(EventKind.INTRUSION, c, at) for c in CAMERAS]
        batch2 = [event(EventKind.INTRUSION, c, at) for c in reversed(CAMERAS)]
        batch1 += [face(v, CAMERAS[round_], at) for v in vectors]
        batch2 += [face(v, CAMERAS[-1 - round_], at) for v in reversed(vectors)]
        together(lambda b=batch1: w1.send(*b), lambda b=batch2: w2.send(*b))  # type: ignore[misc]

    intrusions = incidents(w1, "intrusion")
    assert sorted(i.camera_id or "" for i in intrusions) == sorted(CAMERAS), "one per camera"
    watch = incidents(w1, "watchlist")
    assert len(watch) == 3, [i.title for i in watch]
    with w1.hub.sessions() as session:  # every event landed on its key's one incident
        points = session.scalar(sa.text("select count(*) from incident_points"))
        news = session.scalar(
            sa.text("select count(*) from deliveries where reason = 'new' and channel = 'sse'")
        )
    assert points == 4 * (2 * len(CAMERAS) + 2 * 3)
    assert news == len(CAMERAS) + 3, "one 'new' alert per incident"


def test_a_missed_stage_escalates_once_when_two_workers_tick_together(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    w1.send(event(EventKind.INTRUSION, "cam-3", clock()))
    [incident] = incidents(w1, "intrusion")
    for _ in range(3):  # past every deadline, both workers ticking at the same instant
        now = clock.advance(121)
        together(lambda n=now: w1.runtime.tick(n), lambda n=now: w2.runtime.tick(n))  # type: ignore[misc]
    with w1.hub.sessions() as session:
        missed = session.execute(
            sa.text(
                "select reason, target from deliveries where incident_id = :i"
                " and reason = 'missed' and channel = 'mqtt'"
            ),
            {"i": incident.id},
        ).all()
        stages = session.execute(
            sa.text(
                "select name from incident_stages where incident_id = :i and missed_at is not null"
            ),
            {"i": incident.id},
        ).all()
        detail = session.scalar(sa.select(Incident.detail).where(Incident.id == incident.id))
    assert len(stages) == 3, stages
    assert len(missed) == 3, missed  # one per stage, to the station's supervisors
    assert detail is not None and sorted(detail["missed"]) == sorted(set(detail["missed"]))


def test_the_advisory_lock_is_per_key_and_per_schema(pg_url: str, tmp_path: Path) -> None:
    with (
        database("postgresql", tmp_path, pg_url) as url_a,
        database("postgresql", tmp_path, pg_url) as url_b,
    ):
        engines = [sa.create_engine(url_a), sa.create_engine(url_a), sa.create_engine(url_b)]
        try:
            with engines[0].begin() as holder:
                assert lock_keys(holder, ["incident:k"]) == 1
                for engine, key, blocked in (
                    (engines[1], "incident:k", True),  # same schema, same key: waits
                    (engines[1], "incident:other", False),
                    (engines[2], "incident:k", False),  # another schema: its own lock
                ):
                    with engine.begin() as other:
                        other.execute(sa.text("SET LOCAL lock_timeout = '300ms'"))
                        if blocked:
                            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                                lock_keys(other, [key])
                        else:
                            assert lock_keys(other, [key]) == 1
        finally:
            for engine in engines:
                engine.dispose()


# --- technical checks, retention, zone re-push ------------------------------------------------


def health(at: dt.datetime, device: str = "box-1", depth: int = 0) -> Health:
    return Health(
        site="campus-n",
        device=device,
        at=at,
        agent_version="1.0",
        uptime_s=1.0,
        outbox_depth=depth,
        outbox_dropped=0,
    )


def test_one_worker_runs_the_technical_watch_and_another_takes_over_when_it_dies(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    w1.send(health(clock()), health(clock(), "box-2"))
    now = clock.advance(301)  # both devices silent past offline_after (300 s)
    together(lambda: w1.runtime.tick(now), lambda: w2.runtime.tick(now))
    offline = incidents(w1, "device_offline")
    assert sorted(i.device_id or "" for i in offline) == ["box-1", "box-2"], "once each"
    leaders = [w.runtime.technical_leader for w in (w1, w2)]
    assert sorted(leaders) == [False, True]
    leader, other = (w1, w2) if leaders[0] else (w2, w1)

    # The leader dies (stops ticking): the other takes the watch once the lease expires.
    other.send(health(clock()))  # box-1 is back
    other.runtime.tick(clock.advance(1))
    assert not other.runtime.technical_leader, "the lease has not expired yet"
    assert len([i for i in incidents(w1, "device_offline") if i.status != "closed"]) == 2
    other.runtime.tick(clock.advance(TECHNICAL_LEASE.total_seconds() + 1))
    assert other.runtime.technical_leader
    states = {i.device_id: i.status for i in incidents(w1, "device_offline")}
    assert states == {"box-1": "closed", "box-2": "open"}
    del leader


def test_a_retention_round_is_claimed_once_and_taken_over_when_the_claimer_dies(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    w1.send(event(EventKind.INTRUSION, "cam-0", clock()))
    first = together(lambda: w1.runtime.tick(clock()), lambda: w2.runtime.tick(clock()))
    assert sum(r.purged is not None for r in first) == 1, "one purge per round"

    clock.advance(31 * 86400)  # the event is past retention; a new round is due
    dying = w1.hub.sessions()
    dying.begin()
    assert claim_round(dying, "retention", dt.timedelta(hours=1), clock())
    # While the claimer holds the round, the other worker skips it (SKIP LOCKED) ...
    assert w2.runtime.tick(clock()).purged is None
    dying.rollback()  # ... and when the claimer dies before committing, takes it.
    dying.close()
    purged = w2.runtime.tick(clock()).purged
    assert purged is not None and purged.events == 1
    assert w1.runtime.tick(clock()).purged is None, "done for this hour"
    with w1.hub.sessions() as session:
        row = session.get(HubLease, "retention")
        assert row is not None and row.done_at == clock()


def test_a_device_coming_online_gets_its_pending_zone_config_re_pushed_once(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    sent: list[tuple[str, str]] = []

    class Recorder:
        def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
            sent.append((topic, payload.decode()))
            return True

    zones = []
    for w in (w1, w2):
        assert w.hub.zones is not None
        w.hub.zones.attach(Recorder())
        zones.append(w.hub.zones)
    raw: dict[str, Any] = {"zones": []}
    saved = zones[0].save("campus-n", "cam-0", raw, crud.Actor("admin", "admin"))
    assert len(sent) == 1
    status = DeviceStatus(site="campus-n", device="box-1", state=DeviceState.ONLINE, at=clock())
    together(
        lambda: zones[0].on_status("campus-n", "box-1", status),
        lambda: zones[1].on_status("campus-n", "box-1", status),
    )
    assert len(sent) == 2, "one re-push for one status seen by two workers"
    assert saved.request_id in sent[1][1]
    later = status.model_copy(update={"at": clock.advance(60)})  # it went away and came back
    zones[1].on_status("campus-n", "box-1", later)
    assert len(sent) == 3
    with w1.hub.sessions() as session:
        row = session.get(CameraZoneConfig, ("campus-n", "cam-0"))
        assert row is not None and row.pushes == 3


# --- clocks, start-up, health --------------------------------------------------------------------


def test_liveness_and_deadlines_use_the_hubs_clock_and_show_the_skew(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    slow = dt.timedelta(minutes=10)  # box-1's clock is 10 minutes slow
    w1.send(health(clock() - slow))
    w2.runtime.tick(clock.advance(5))
    w1.runtime.tick(clock())
    assert incidents(w1, "device_offline") == [], "seen 5 s ago on the hub's clock"
    w2.send(event(EventKind.INTRUSION, "cam-1", clock() - slow))
    [intrusion] = incidents(w1, "intrusion")
    assert not intrusion.late, "10 min slow, but just seen: its timers run"
    with w1.hub.sessions() as session:
        device = session.get(t.Device, ("campus-n", "box-1"))
        assert device is not None and device.last_seen_at == clock() - dt.timedelta(seconds=5)
        assert device.clock_skew_s == pytest.approx(-600.0)
        stages = session.scalar(
            sa.text("select count(*) from incident_stages where due_at is not null")
        )
    assert stages and stages > 0
    # A heartbeat replayed from a backlog does not make the clock look slower still.
    w1.send(health(clock() - slow - dt.timedelta(minutes=3)))
    with w1.hub.sessions() as session:
        device = session.get(t.Device, ("campus-n", "box-1"))
        assert device is not None and device.clock_skew_s == pytest.approx(-600.0)


def test_health_lists_every_worker_with_its_heartbeat(
    workers: tuple[Worker, Worker, FakeClock],
) -> None:
    w1, w2, clock = workers
    for w in (w1, w2):
        assert w.hub.beat is not None
        w.hub.beat.beat(clock())
    w1.send(event(EventKind.INTRUSION, "cam-2", clock()))
    create_admin(w1.hub.engine.url.render_as_string(hide_password=False))  # details: admins
    view = {w["name"]: w for w in full_health(w2.client)["workers"]}
    assert set(view) == {"w1", "w2"}
    assert all(w["state"] == "ok" and w["lag_s"] is None for w in view.values())
    clock.advance(60)
    assert w2.hub.beat is not None
    w2.hub.beat.beat(clock())
    view = {w["name"]: w for w in full_health(w1.client)["workers"]}
    assert (view["w1"]["state"], view["w2"]["state"]) == ("stale", "ok")


def test_workers_starting_together_on_a_fresh_database_all_come_up(
    pg_url: str, tmp_path: Path
) -> None:
    with database("postgresql", tmp_path, pg_url) as url:
        apps = [create_app(settings(url), config(f"s{i}"), ingest=False) for i in range(3)]
        clients = [TestClient(a) for a in apps]
        try:
            together(*(c.__enter__ for c in clients))
            for a in apps:
                assert current_revision(a.state.hub.engine) == head_revision()
            with apps[0].state.hub.sessions() as session:
                assert session.scalar(sa.select(sa.func.count()).select_from(t.Camera)) == 9
        finally:
            for c in clients:
                c.__exit__(None, None, None)


def test_sqlite_refuses_a_second_worker_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    first = TestClient(create_app(settings(url), config("one"), ingest=False))
    with first:
        second = TestClient(create_app(settings(url), config("two"), ingest=False))
        with pytest.raises(ConfigError) as caught, second:
            pass
        message = str(caught.value)
        assert "SQLite serves one hub worker" in message and "'one'" in message
        assert "PostgreSQL" in message and "'two'" in message
    with TestClient(create_app(settings(url), config("two"), ingest=False)) as third:
        assert third.get("/api/v1/health").status_code == 200, "free once the first stopped"


# --- alerts over MQTT ------------------------------------------------------------------------


def test_a_publish_reported_failed_is_never_sent_later(tmp_path: Path) -> None:
    from ringwatch.edge.mqtt import MqttClient

    with private_broker(tmp_path) as broker:
        got: list[bytes] = []
        listener = MqttClient(broker.url, f"listen-{uuid.uuid4().hex[:6]}", session_expiry_s=600)
        listener.start()
        listener.subscribe("ringwatch/v1/alerts/#", lambda m: got.append(m.payload), qos=1)
        address = BrokerAddress.from_url(broker.url)
        link = MqttLink(address, "hub-alerts", ["ringwatch/v1/test/#"], lambda m: None)
        link.start()
        try:
            wait_for(link.connected.is_set, 10, "hub link up")
            assert link.publish("ringwatch/v1/alerts/x/y", b"first")
            wait_for(lambda: got == [b"first"], 10, "first alert")
            broker.stop()
            wait_for(lambda: not link.client.is_connected(), 10, "link down")
            assert not link.publish("ringwatch/v1/alerts/x/y", b"during outage")
            assert not link.publish("ringwatch/v1/alerts/x/y", b"during outage")
            broker.start()
            wait_for(link.connected.is_set, 20, "hub link back")
            assert link.publish("ringwatch/v1/alerts/x/y", b"after")
            wait_for(lambda: b"after" in got, 20, "alert after the outage")
            time.sleep(0.5)
            assert got == [b"first", b"after"], "no copy of a publish reported failed"
        finally:
            link.stop()
            listener.close()
