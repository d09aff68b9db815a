"""Flood quarantine (issue 11, hub/quarantine.py) against a broker set up like production:
the shipped configs/mosquitto.conf and mosquitto.acl with the dynamic-security plugin, a
real hub and a real edge uplink with its outbox.

A box that floods malformed messages is shut out at the broker, the technicians get a
``device_quarantined`` incident, its valid events wait in its outbox meanwhile and all
arrive exactly once after the quarantine is lifted (by time, or by a technician); another
box is not touched, and the hub never bans its own logins."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.messages import Health
from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.edge.config import BrokerConfig
from ringwatch.edge.health import broker_metrics
from ringwatch.edge.outbox import Outbox
from ringwatch.edge.uplink import Uplink, device_client
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.inventory import FloodConfig
from ringwatch.hub.quarantine import BAN_NAME, GUARD, DynsecGuard, FloodWatch, login_of
from ringwatch.hub.settings import HubSettings
from ringwatch.mqtt import BrokerLogin, MqttClient
from tests.edge_emitter import make_event
from tests.hub_fixtures import (
    HUB_CONFIG,
    SECRET,
    create_admin,
    database,
    hub_config,
    make_user,
    token,
)
from tests.services import ShippedBroker, shipped_broker, wait_for

HUB_PASSWORD = "hub-broker-secret-q"
BOX_PASSWORD = {"box-1": "box-1-secret-q", "box-2": "box-2-secret-q"}
SITE = "campus-n"


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ShippedBroker]:
    """The shipped broker config; the guard's password is the hub's unless the test says."""
    logins = {"hub": HUB_PASSWORD, "hub-zones": HUB_PASSWORD, **BOX_PASSWORD}
    guard_password = getattr(request, "param", HUB_PASSWORD)
    with shipped_broker(tmp_path / "broker", logins, guard_password) as running:
        yield running


@contextmanager
def _hub(
    tmp: Path, url: str, bad_per_window: int, quarantine_s: int
) -> Iterator[tuple[TestClient, Hub]]:
    """A running hub (SQLite) logged in as `hub`, its flood guard at the broker, counting in
    5 s windows; its ingest link connected."""
    secret = tmp / "broker-password"
    secret.write_text(HUB_PASSWORD + "\n")
    db = f"sqlite:///{tmp / 'hub.sqlite3'}"
    create_admin(db)
    sites = [dict(s) for s in HUB_CONFIG["sites"]]
    sites[0] = {
        **sites[0],
        "devices": [*sites[0]["devices"], {"id": "box-2", "cameras": [{"id": "yard"}]}],
    }
    settings = HubSettings(
        database_url=db,
        broker_url=url,
        jwt_secret=SECRET,
        template_key=SECRET,
        broker_username="hub",
        broker_password_file=secret,
    )
    flood = {"at_broker": True, "bad_per_window": bad_per_window, "window_s": 5}
    config = hub_config(sites=sites, ingest={"flood": {**flood, "quarantine_s": quarantine_s}})
    app = create_app(settings, config)
    hub: Hub = app.state.hub
    with TestClient(app) as client:
        assert hub.link is not None and hub.link.connected.wait(10)
        yield client, hub


@dataclass
class Box:
    device: str
    outbox: Outbox
    client: MqttClient
    uplink: Uplink
    stop: threading.Event
    pump: threading.Thread

    def close(self) -> None:
        self.stop.set()
        self.pump.join(5)
        self.client.close()
        self.outbox.close()


def _box(tmp: Path, url: str, device: str) -> Box:
    cfg = BrokerConfig(
        url=url, username=device, password_file=_secret(tmp, device), retry_refused_s=2
    )
    outbox = Outbox(tmp / f"{device}-outbox.sqlite3", max_events=10_000)
    client = device_client(cfg, SITE, device, "test")
    uplink = Uplink(outbox, client, SITE, device, 3.0)
    uplink.start()
    client.start()
    stop = threading.Event()
    pump = threading.Thread(target=uplink.run, args=(stop,), daemon=True)
    pump.start()
    assert client.wait_connected(10)
    return Box(device, outbox, client, uplink, stop, pump)


def _secret(tmp: Path, device: str) -> Path:
    path = tmp / f"{device}.password"
    path.write_text(BOX_PASSWORD[device] + "\n")
    return path


def _stored(hub: Hub, device: str) -> list[str]:
    with hub.sessions() as session:
        return list(session.scalars(sa.select(t.Event.id).where(t.Event.device_id == device)))


def _flood(box: Box, n: int, site: str = SITE) -> int:
    """Publish ``n`` malformed payloads on the box's own events topic from its own login
    (the ACL lets it name any site); how many the client took before it was shut out."""
    topic = event_topic(site, box.device, EventKind.ZONE)
    sent = 0
    for i in range(n):
        if not box.client.publish(topic, b'{"not": "an event", "n": %d}' % i, qos=0):
            break
        sent += 1
    return sent


def test_a_flooding_box_is_shut_out_and_its_events_arrive_after_the_lift(
    broker: ShippedBroker, tmp_path: Path
) -> None:
    with _hub(tmp_path, broker.url, 100, 10) as (client, hub):
        assert hub.flood is not None and hub.flood.guard is not None
        box1, box2 = _box(tmp_path, broker.url, "box-1"), _box(tmp_path, broker.url, "box-2")
        try:
            before = [make_event(SITE, "box-1", n) for n in range(5)]
            for event in before:
                box1.uplink.put(event)
            wait_for(lambda: len(_stored(hub, "box-1")) == 5, 15, "box-1's first events")
            wait_for(lambda: box1.outbox.depth() == 0, 15, "their receipts")

            sent = _flood(box1, 2000)
            wait_for(lambda: hub.flood is not None and hub.flood.quarantined == 1, 15, "a ban")
            wait_for(lambda: box1.client.refused_now is not None, 15, "box-1 refused")
            assert sent >= 100
            page = broker_metrics(_health("box-1"), box1.client)  # the box's metrics page
            assert 'ringwatch_broker_refused{site="campus-n",device="box-1"} 1' in page
            assert 'ringwatch_broker_connected{site="campus-n",device="box-1"} 0' in page
            during = [make_event(SITE, "box-1", n) for n in range(5, 25)]
            for event in during:
                box1.uplink.put(event)  # held in the outbox while the box is shut out
            other = [
                make_event(SITE, "box-2", n).model_copy(update={"camera": "yard"})
                for n in range(10)
            ]
            for event in other:
                box2.uplink.put(event)
            wait_for(lambda: len(_stored(hub, "box-2")) == 10, 15, "box-2 unaffected")
            assert len(_stored(hub, "box-1")) == 5  # nothing of box-1 got in meanwhile
            assert box1.outbox.depth() == 20

            admin = token(client, "admin", "admin-password")
            [row] = client.get("/api/v1/quarantines?active=true", headers=admin).json()
            assert (row["login"], row["site_id"], row["device_id"]) == ("box-1", SITE, "box-1")
            assert row["broker_ban"] is True and row["broker_error"] is None
            assert row["bad_count"] >= 100 and "invalid" in row["reasons"], row
            wait_for(lambda: _incidents(hub, "open") == 1, 15, "the technical incident")
            ingest = client.get("/api/v1/health", headers=admin).json()["ingest"]
            assert (ingest["quarantines"], ingest["flood_guard"]) == (1, "connected")

            # Time up (10 s): the guard readmits box-1; its client retries every 2 s at most.
            wait_for(lambda: len(_stored(hub, "box-1")) == 25, 40, "box-1's held events")
            assert box1.client.refused_now is None
            wait_for(lambda: box1.outbox.depth() == 0, 15, "box-1's outbox drained")
            wait_for(lambda: _incidents(hub, "closed") == 1, 15, "the incident resolved")
        finally:
            box1.close()
            box2.close()
        ids = _stored(hub, "box-1")
        assert sorted(ids) == sorted(e.event_id for e in before + during)  # once each
        with hub.sessions() as session:
            q = session.scalars(sa.select(t.DeviceQuarantine)).one()
            assert q.lifted_by == "hub-flood-guard" and q.lifted_at is not None
            actions = list(
                session.scalars(
                    sa.select(t.AuditEntry.action)
                    .where(t.AuditEntry.action.in_(["quarantine", "lift_quarantine"]))
                    .order_by(t.AuditEntry.id)
                )
            )
            assert actions == ["quarantine", "lift_quarantine"]
            dead = session.scalar(sa.select(sa.func.count()).select_from(t.DeadLetter))
            assert dead is not None and dead >= 100
    dynsec = (broker.work / "dynsec.json").read_text()
    assert '"box-1"' not in dynsec  # the ban's broker client is gone again


def _health(device: str) -> Health:
    return Health.model_validate(
        {
            "site": SITE,
            "device": device,
            "at": dt.datetime.now(dt.UTC),
            "agent_version": "test",
            "uptime_s": 1,
            "cameras": [],
            "outbox_depth": 0,
            "outbox_dropped": 0,
        }
    )


def _incidents(hub: Hub, status: str) -> int:
    with hub.sessions() as session:
        rows = session.scalars(
            sa.select(Incident.status).where(Incident.kind == "device_quarantined")
        ).all()
    active = [s for s in rows if s != "closed"]
    return len(active) if status == "open" else len(rows) - len(active)


def test_a_technician_lifts_a_quarantine_early_and_the_hub_keeps_its_own_logins(
    broker: ShippedBroker, tmp_path: Path
) -> None:
    with _hub(tmp_path, broker.url, 50, 600) as (client, hub):
        box1 = _box(tmp_path, broker.url, "box-1")
        try:
            _flood(box1, 500, site="campus-s")  # under another site's segment
            wait_for(lambda: box1.client.refused_now is not None, 15, "box-1 refused")
            admin = token(client, "admin", "admin-password")
            tech = make_user(client, admin, "tech-n", "technician", sites=[SITE])
            far = make_user(client, admin, "tech-s", "technician", sites=["campus-s"])
            manager = make_user(client, admin, "pm-n", "property_manager", sites=[SITE])
            [row] = client.get("/api/v1/quarantines", headers=tech).json()
            assert row["site_id"] == SITE  # the inventory's site of box-1, not the topic's
            assert client.get("/api/v1/quarantines", headers=far).json() == []
            assert client.get("/api/v1/quarantines", headers=manager).status_code == 403
            lift = f"/api/v1/quarantines/{row['id']}/lift"
            assert client.post(lift, headers=far).status_code == 404  # not their site
            assert client.post(lift, headers=manager).status_code == 403
            res = client.post(lift, headers={**tech, "X-Reason": "box reflashed"})
            assert res.status_code == 200, res.text
            assert res.json()["lifted_by"] == "tech-n"
            assert client.post(lift, headers=tech).status_code == 409
            wait_for(lambda: box1.client.refused_now is None, 20, "box-1 let in again")
            event = make_event(SITE, "box-1", 1)
            box1.uplink.put(event)
            wait_for(lambda: _stored(hub, "box-1") == [event.event_id], 15, "box-1's event")
        finally:
            box1.close()
        # The hub's own logins are never counted (note() skips them: the sliding-window
        # test floods a topic naming "hub"); here: all three are protected.
        assert hub.flood is not None
        assert {"hub", "hub-zones", "hub-guard"} <= hub.flood.protected
        assert hub.link is not None and hub.link.connected.is_set()
        with hub.sessions() as session:
            [entry] = session.scalars(
                sa.select(t.AuditEntry).where(t.AuditEntry.action == "lift_quarantine")
            ).all()
            assert (entry.actor, entry.reason) == ("tech-n", "box reflashed")


@pytest.mark.parametrize("broker", ["not-the-hub-password"], indirect=True)
def test_a_guard_the_broker_refuses_still_records_and_says_so(
    broker: ShippedBroker, tmp_path: Path
) -> None:
    with _hub(tmp_path, broker.url, 50, 10) as (client, hub):
        box1 = _box(tmp_path, broker.url, "box-1")
        try:
            event = make_event(SITE, "box-1", 0)
            box1.uplink.put(event)  # box-1 becomes a known device
            wait_for(lambda: len(_stored(hub, "box-1")) == 1, 15, "box-1's event")
            _flood(box1, 300)
            wait_for(lambda: hub.flood is not None and hub.flood.quarantined == 1, 15, "a record")
            admin = token(client, "admin", "admin-password")
            [row] = client.get("/api/v1/quarantines", headers=admin).json()
            assert row["broker_ban"] is False
            assert "hub-guard" in row["broker_error"], row
            assert box1.client.connected and box1.client.refused_now is None  # not shut out
            ingest = client.get("/api/v1/health", headers=admin).json()["ingest"]
            assert "not authorized" in ingest["flood_guard"], ingest
            wait_for(lambda: _incidents(hub, "open") == 1, 15, "the technical incident")
            with hub.sessions() as session:
                detail = session.scalars(
                    sa.select(Incident.detail).where(Incident.kind == "device_quarantined")
                ).one()
            assert "not banned at the broker" in str(detail)
            # Time up: a row that was never banned is lifted without the guard.
            wait_for(lambda: _incidents(hub, "closed") == 1, 30, "the incident resolved")
        finally:
            box1.close()


def test_the_watch_counts_per_login_over_a_sliding_window_and_never_its_own() -> None:
    now = [0.0]
    watch = FloodWatch(
        sessions=None,  # type: ignore[arg-type]  # counting needs no database
        clock=None,  # type: ignore[arg-type]
        config=FloodConfig(bad_per_window=10, window_s=5),
        protected={"hub"},
        monotonic=lambda: now[0],
    )

    def floods() -> list[str]:
        out = []
        while not watch._floods.empty():
            flood = watch._floods.get()
            out.append(f"{flood.source.login} {flood.count} {flood.reasons}")
        return out

    topic = event_topic(SITE, "box-1", EventKind.ZONE)
    for _ in range(9):
        watch.note(topic, "invalid_json")
    now[0] = 7.5  # half of the first window still overlaps the last 5 s: 9 count as 4
    for _ in range(5):
        watch.note(topic, "invalid")
    assert floods() == []
    watch.note(topic, "invalid")
    watch.note(topic, "invalid")  # handed over once
    assert floods() == ["box-1 10 invalid 6"]
    watch.forget("box-1")  # lifted: counted afresh
    now[0] = 30.0  # and long after: nothing carried over
    for _ in range(9):
        watch.note(topic, "bad_topic")
    assert floods() == []
    watch.note(topic, "bad_topic")
    assert floods() == ["box-1 10 bad_topic 10"]
    for _ in range(50):
        watch.note(event_topic(SITE, "hub", EventKind.ZONE), "invalid_json")
        watch.note("ringwatch/v1/events/../x", "bad_topic")
        watch.note("not/ours", "bad_topic")
    assert floods() == []
    sensor = login_of("ringwatch/v1/sensors/campus-n/shed-1/bay-2")
    assert sensor is not None and sensor.login == "campus-n"
    health = login_of("ringwatch/v1/health/campus-n/box-7")
    assert health is not None and (health.site, health.device, health.login) == (
        "campus-n",
        "box-7",
        "box-7",
    )


def test_two_workers_on_postgresql_record_one_quarantine_per_login(
    tmp_path: Path, pg_url: str
) -> None:
    """Two hub workers' watches see the same flood at once: one active row, one audit
    entry; the second quarantine of the day lasts twice as long."""
    from ringwatch.hub.clock import utc_now
    from ringwatch.hub.db import make_engine, migrate, session_factory
    from ringwatch.hub.quarantine import Flood, Source

    with database("postgresql", tmp_path, pg_url) as url:
        engine = make_engine(url)
        migrate(engine)
        sessions = session_factory(engine)
        config = FloodConfig(quarantine_s=60)
        watches = [FloodWatch(sessions, utc_now, config) for _ in range(2)]
        flood = Flood(Source(SITE, "box-1", "box-1"), 500, "invalid 500")
        barrier = threading.Barrier(2)
        rows: list[object] = []

        def race(watch: FloodWatch) -> None:
            barrier.wait()
            rows.append(watch.quarantine(flood))

        threads = [threading.Thread(target=race, args=(w,)) for w in watches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sum(r is not None for r in rows) == 1, rows
        with sessions() as session:
            [first] = session.scalars(sa.select(t.DeviceQuarantine)).all()
            audits = session.scalars(
                sa.select(t.AuditEntry).where(t.AuditEntry.action == "quarantine")
            ).all()
            assert len(audits) == 1
        assert first.until - first.started_at == dt.timedelta(seconds=60)
        assert watches[1].lift(first.id, GUARD, "test") is not None
        assert watches[0].lift(first.id, GUARD, "test") is None  # lifted already
        second = watches[0].quarantine(flood)
        assert second is not None
        assert second.until - second.started_at == dt.timedelta(seconds=120)  # doubled
        engine.dispose()


def test_the_guard_deletes_only_the_clients_its_bans_created(
    broker: ShippedBroker, tmp_path: Path
) -> None:
    """A login the operator keeps in the plugin is disabled by a ban and enabled again by the
    lift, never deleted; one the operator had disabled stays disabled; a ban's own client is
    deleted; a ban client no active quarantine stands for is found and removed."""
    from ringwatch.hub.clock import utc_now
    from ringwatch.hub.db import make_engine, migrate, session_factory

    guard = DynsecGuard(broker.url, BrokerLogin("hub-guard", HUB_PASSWORD))
    guard.start()
    try:

        def client(login: str) -> dict[str, Any]:
            found = guard._client(login)
            return found if found is not None else {}

        for login, text in (("box-2", "the operator's own"), ("box-3", "switched off")):
            made = {"command": "createClient", "username": login, "password": "x"}
            guard._check(guard._run([{**made, "textName": text}]))
        guard._check(guard._run([{"command": "disableClient", "username": "box-3"}]))

        assert guard.ban("box-2") == "disabled"  # it existed, enabled
        assert client("box-2")["disabled"] is True
        guard.readmit("box-2", "disabled")
        kept = client("box-2")
        assert (kept.get("disabled", False), kept["textname"]) == (False, "the operator's own")

        assert guard.ban("box-3") == "was_disabled"  # the operator had switched it off
        guard.readmit("box-3", "was_disabled")
        assert client("box-3")["disabled"] is True  # and it stays off

        assert guard.ban("box-1") == "created"
        assert client("box-1")["textname"] == BAN_NAME
        guard.readmit("box-1", "created")
        assert client("box-1") == {}  # deleted
        guard.readmit("box-1", "created")  # already gone: done

        # A ban with no row (a hub that stopped between a lift's two steps): reconciled.
        engine = make_engine(f"sqlite:///{tmp_path / 'hub.sqlite3'}")
        migrate(engine)
        watch = FloodWatch(session_factory(engine), utc_now, FloodConfig(), guard)
        guard.ban("box-4")
        assert guard.ban_clients() == ["box-4"]
        assert watch.reconcile() == 1
        assert guard.ban_clients() == [] and client("box-4") == {}
        assert client("box-2") and client("box-3")  # the operator's own are untouched
        engine.dispose()
    finally:
        guard.close()
