"""Incidents on SQLite and PostgreSQL with an injected clock (nothing sleeps): watch-list
correlation, colour and escalation; confirm/reject over HTTP, audited, feeding the
false-match report; 1/3/5-minute stages, escalation of a missed one, late events without
timers; shed and intrusion incidents; technical incidents; routing; retention; the SSE feed.

Events enter through the real ingest (``Ingestor`` with the incidents hook) as contract
messages, exactly as from MQTT, without a broker (the broker is in test_incidents_footage)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Health, RoutedAlert, SensorReading, encode
from ringwatch.contract.topics import EventKind, event_topic, health_topic, sensor_topic
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_runtime import IncidentRuntime
from ringwatch.hub.incident_tables import Delivery, Incident, IncidentPoint, IncidentStage
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.matching import random_unit_vectors
from ringwatch.hub.retention import purge
from ringwatch.hub.sse import alert_stream
from tests.hub_fixtures import (
    BACKENDS,
    HUB_CONFIG,
    database,
    review_due,
    settings,
)

# The fake clock starts at the real time: API tokens are issued with the hub's clock but
# PyJWT checks them against the real one, so tokens are made before the clock moves.
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
SHED_SITE = {
    "id": "estate-e",
    "name": "East Estate sheds",
    "manager": "pm-acme",
    "devices": [
        {"id": "box-shed", "cameras": [{"id": "shed-cam", "role": "shed", "shed": "shed-a"}]}
    ],
}


def incident_config(**incidents: Any) -> HubConfig:
    return HubConfig.model_validate(
        {
            **HUB_CONFIG,
            "sites": [*HUB_CONFIG["sites"], SHED_SITE],
            "incidents": {
                "timer_loop": False,
                "supervisors": {"st-north": ["north-sgt"]},
                **incidents,
            },
        }
    )


USERS: list[tuple[str, str, dict[str, list[str]]]] = [
    ("admin", "admin", {}),
    ("north-officer", "station_officer", {"station": ["st-north"]}),
    ("south-officer", "station_officer", {"station": ["st-south"]}),
    ("acme", "property_manager", {"manager": ["pm-acme"]}),
    ("tech", "technician", {"site": ["campus-n"]}),
]


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


def jpeg() -> str:
    import base64

    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


@dataclass
class Desk:
    """A hub (API, no MQTT) on a fresh database, its ingest, a fake clock and users."""

    client: TestClient
    hub: Hub
    clock: FakeClock
    ingestor: Ingestor
    admin: dict[str, str]
    url: str
    users: dict[str, dict[str, str]]

    @property
    def incidents(self) -> IncidentRuntime:
        assert self.hub.incidents is not None
        return self.hub.incidents

    def send(self, *messages: Event | Health | SensorReading) -> None:
        batch = [Inbound(_topic(m), encode(m)) for m in messages]
        result = self.ingestor.ingest(batch)
        assert not result.dead, result.dead

    def person(self, name: str, tier: str, station: str = "st-north") -> tuple[int, np.ndarray]:
        body = {
            "display_name": name,
            "tier": tier,
            "reason": f"{name}: test watch-list entry",
            "case_reference": f"CASE-{name}",
            "legal_basis": "court order (test)",
            "station_id": station,
            "review_due": review_due(self.clock()),
        }
        res = self.client.post("/api/v1/persons", json=body, headers=self.admin)
        assert res.status_code == 201, res.text
        person_id: int = res.json()["id"]
        vector = random_unit_vectors(1, seed=person_id)[0]
        import base64

        with self.hub.sessions.begin() as session:
            person = session.get(t.Person, person_id)
            assert person is not None
            crud.add_template(
                session,
                person,
                self.hub.cipher.encrypt_embedding(vector),
                self.hub.cipher.encrypt(base64.b64decode(jpeg())),
                0.9,
                "0" * 64,
                crud.Actor("test", "admin"),
                self.clock(),
            )
        return person_id, vector

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.hub.sessions() as session:
            return list(session.scalars(sa.select(model).where(*where)))

    def deliveries(self, incident_id: str, channel: str = "mqtt") -> list[Delivery]:
        return [
            d
            for d in self.rows(Delivery, Delivery.incident_id == incident_id)
            if d.channel == channel
        ]


def _topic(m: Event | Health | SensorReading) -> str:
    if isinstance(m, Event):
        return event_topic(m.site, m.device, m.kind)
    if isinstance(m, Health):
        return health_topic(m.site, m.device)
    return sensor_topic(m.site, m.shed, m.bay)


@pytest.fixture(params=BACKENDS)
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        clock = FakeClock(T0)
        app = create_app(settings(url), incident_config(), clock=clock, ingest=False)
        hub: Hub = app.state.hub
        with TestClient(app) as client:
            assert hub.incidents is not None
            ingestor = Ingestor(
                hub.sessions, hub.matcher, clock, IngestStats(), hub.incidents.on_stored
            )
            users = {name: _user(hub, name, role, scope) for name, role, scope in USERS}
            yield Desk(client, hub, clock, ingestor, users["admin"], url, users)


def _user(hub: Hub, name: str, role: str, scope: dict[str, list[str]]) -> dict[str, str]:
    """A user row and a token for it (no password: argon2 would cost seconds per test;
    logging in is tested with the hub core)."""
    with hub.sessions.begin() as session:
        user = t.User(
            username=name,
            full_name=name,
            password_hash="-",
            role=role,
            active=True,
            created_at=hub.clock(),
        )
        session.add(user)
        session.flush()
        for kind, refs in scope.items():
            for ref in refs:
                session.add(t.UserScope(user_id=user.id, kind=kind, ref=ref))
    return {"Authorization": f"Bearer {hub.tokens.issue(name, hub.clock())}"}


def event(kind: EventKind, seconds: float, camera: str = "gate", **fields: Any) -> Event:
    site, device = {
        "gate": ("campus-n", "box-1"),
        "door": ("campus-s", "box-9"),
        "shed-cam": ("estate-e", "box-shed"),
    }[camera]
    return Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": T0 + dt.timedelta(seconds=seconds),
            "site": site,
            "device": device,
            "camera": camera,
            "kind": kind,
            "phase": "start",
            "frame_width": 640,
            "frame_height": 480,
            **fields,
        }
    )


def face(vector: np.ndarray, seconds: float, camera: str = "gate", **fields: Any) -> Event:
    return event(
        EventKind.FACE,
        seconds,
        camera,
        phase="update",
        embedding=[float(v) for v in vector],
        face_quality=0.9,
        face_crop_jpeg=jpeg(),
        **fields,
    )


def alerts(desk: Desk, incident_id: str) -> list[RoutedAlert]:
    return [
        RoutedAlert.model_validate(d.payload)
        for d in sorted(desk.deliveries(incident_id), key=lambda d: d.id)
    ]


# --- watch-list ----------------------------------------------------------------------------


def test_sightings_of_one_person_form_one_incident_with_trajectory_and_colour(desk: Desk) -> None:
    # Tier ORANGE; camera gate's default ring is PERIMETER. Policy: perimeter -> orange,
    # inner -> red, outer -> yellow; an orange tier adds nothing. Expected: orange at first,
    # red (and escalating) once he is seen in the inner ring, still red after the outer.
    _pid, vec = desk.person("Orange Person", "orange")
    desk.clock.advance(5)
    desk.send(face(vec, 0))
    [incident] = desk.rows(Incident)
    assert (incident.colour, incident.ring, incident.escalating) == ("orange", "perimeter", False)
    first = alerts(desk, incident.id)
    assert [(a.recipient_kind.value, a.recipient) for a in first] == [("station", "st-north")]
    assert first[0].confirmed is False and first[0].detail["status"] == "open"
    evidence = first[0].detail
    assert evidence["person"]["tier"] == "orange"
    assert evidence["person"]["case_reference"] == "CASE-Orange Person"
    assert evidence["similarity"] == pytest.approx(1.0, abs=1e-3)
    for ref in ("live_crop", "enrolled_photo"):
        res = desk.client.get(evidence[ref], headers=desk.admin)
        assert res.status_code == 200 and res.content.startswith(b"\xff\xd8"), ref

    desk.clock.advance(20)
    desk.send(face(vec, 20, ring="inner"), face(vec, 40, ring="outer"))
    [incident] = desk.rows(Incident)
    assert (incident.colour, incident.ring, incident.escalating) == ("red", "inner", True)
    assert incident.first_seen == T0 and incident.last_seen == T0 + dt.timedelta(seconds=40)
    # The trajectory is the incident's sighting points (detail keeps only their count).
    trajectory = sorted(
        desk.rows(
            IncidentPoint,
            IncidentPoint.incident_id == incident.id,
            IncidentPoint.role == "sighting",
        ),
        key=lambda p: p.at,
    )
    assert incident.detail["sightings"] == 3 and "trajectory" not in incident.detail
    assert [(p.camera_id, p.ring, p.colour) for p in trajectory] == [
        ("gate", "perimeter", "orange"),
        ("gate", "inner", "red"),
        ("gate", "outer", "yellow"),
    ]
    routed = alerts(desk, incident.id)
    assert [a.detail["reason"] for a in routed] == ["new", "escalation"]
    assert [a.colour.value for a in routed if a.colour] == ["orange", "red"]
    assert not any(a.confirmed for a in routed), "nobody has confirmed it"

    desk.clock.advance(700)  # more than window_s (600 s) after the last sighting
    desk.send(face(vec, 40 + 601))
    assert len(desk.rows(Incident)) == 2


def test_confirm_and_reject_are_audited_and_feed_the_false_match_report(desk: Desk) -> None:
    _pid, vec = desk.person("Red Person", "red")
    officer = desk.users["north-officer"]
    south = desk.users["south-officer"]
    desk.send(face(vec, 0))
    desk.clock.advance(1000)
    desk.send(face(vec, 1000))
    first, second = sorted(desk.rows(Incident), key=lambda i: i.first_seen)
    base = "/api/v1/incidents"

    assert desk.client.get(f"{base}/{first.id}", headers=south).status_code == 403
    res = desk.client.post(f"{base}/{first.id}/confirm", json={}, headers=south)
    assert res.status_code == 403
    res = desk.client.post(f"{base}/{first.id}/steps/acknowledged", json={}, headers=officer)
    assert res.status_code == 409, "a match is acknowledged by confirm or reject only"

    desk.clock.advance(30)
    res = desk.client.post(
        f"{base}/{first.id}/confirm", json={"reason": "matches the case photo"}, headers=officer
    )
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "confirmed" and res.json()["confirmed"] is True
    res = desk.client.post(f"{base}/{first.id}/reject", json={"reason": "x"}, headers=officer)
    assert res.status_code == 409

    assert (
        desk.client.post(f"{base}/{second.id}/reject", json={}, headers=officer).status_code == 422
    )
    res = desk.client.post(
        f"{base}/{second.id}/reject", json={"reason": "a different man, glasses"}, headers=officer
    )
    assert res.status_code == 200 and res.json()["status"] == "rejected"

    detail = desk.client.get(f"{base}/{first.id}", headers=officer).json()
    ack = detail["stages"][0]
    assert ack["name"] == "acknowledged" and ack["done_by"] == "north-officer"
    assert dt.datetime.fromisoformat(ack["done_at"]) == desk.clock()
    assert [a.confirmed for a in alerts(desk, first.id)] == [False, True]

    audit = desk.rows(t.AuditEntry, t.AuditEntry.entity == "incident")
    decided = {(a.action, a.entity_id, a.actor, a.reason) for a in audit}
    assert ("confirm", first.id, "north-officer", "matches the case photo") in decided
    assert ("reject", second.id, "north-officer", "a different man, glasses") in decided

    [row] = desk.client.get(f"{base}/reports/false-matches", headers=officer).json()
    assert (row["camera"], row["decided"], row["rejected"]) == ("gate", 2, 1)
    assert row["false_match_rate"] == 0.5
    assert row["threshold"] == pytest.approx(desk.hub.matcher.threshold, abs=1e-4)
    assert row["reasons"] == ["a different man, glasses"]


# --- stages and escalation ------------------------------------------------------------------


def test_a_missed_stage_escalates_and_one_done_in_time_does_not(desk: Desk) -> None:
    officer = desk.users["north-officer"]
    desk.send(event(EventKind.INTRUSION, 0, "gate"), event(EventKind.INTRUSION, 0, "door"))
    north = desk.rows(Incident, Incident.site_id == "campus-n")[0]
    south = desk.rows(Incident, Incident.site_id == "campus-s")[0]
    assert not north.late and not south.late

    desk.clock.advance(30)
    res = desk.client.post(
        f"/api/v1/incidents/{north.id}/steps/acknowledged",
        json={"note": "on it"},
        headers=officer,
    )
    assert res.status_code == 200, res.text

    assert desk.incidents.tick(desk.clock.advance(29)).escalated == 0  # 59 s: all in time
    assert desk.incidents.tick(desk.clock.advance(2)).escalated == 1  # 61 s: south missed
    missed = [d for d in desk.deliveries(south.id) if d.reason == "missed"]
    assert [d.target for d in missed] == ["ringwatch/v1/alerts/station/st-south-supervisors"]
    assert [d for d in desk.deliveries(north.id) if d.reason == "missed"] == []
    assert desk.incidents.tick(desk.clock.advance(1)).escalated == 0, "escalates once"

    desk.clock.advance(120)  # 182 s: north's patrol stage is late too
    assert desk.incidents.tick(desk.clock()).escalated == 2  # north patrol + south patrol
    north_missed = [d for d in desk.deliveries(north.id) if d.reason == "missed"]
    assert [d.target for d in north_missed] == ["ringwatch/v1/alerts/station/north-sgt"]
    audit = desk.rows(t.AuditEntry, t.AuditEntry.action == "escalate")
    assert {(a.entity_id, a.detail["stage"]) for a in audit} == {
        (south.id, "acknowledged"),
        (south.id, "patrol_on_scene"),
        (north.id, "patrol_on_scene"),
    }

    report = desk.client.get(
        "/api/v1/incidents/reports/response-times?station_id=st-north", headers=officer
    ).json()
    by_stage = {r["stage"]: r for r in report}
    assert by_stage["acknowledged"]["met"] == 1 and by_stage["acknowledged"]["mean_s"] == 30.0
    assert by_stage["patrol_on_scene"]["missed"] == 1
    assert by_stage["station_on_scene"]["pending"] == 1
    assert {r["station"] for r in report} == {"st-north"}


def test_an_event_older_than_the_longest_deadline_starts_no_timers(desk: Desk) -> None:
    desk.clock.advance(301)  # the event was captured 301 s ago: longer than 5 min
    desk.send(event(EventKind.LOITERING, 0, "gate"))
    [incident] = desk.rows(Incident)
    assert incident.late
    stages = desk.rows(IncidentStage, IncidentStage.incident_id == incident.id)
    assert len(stages) == 3 and all(s.due_at is None for s in stages)
    assert desk.incidents.tick(desk.clock.advance(3600)).escalated == 0
    assert [d.reason for d in desk.deliveries(incident.id)] == ["new"]  # routed, not timed


# --- sheds, intrusion links, technical ------------------------------------------------------


def test_shed_alerts_form_one_incident_routed_to_the_property_manager(desk: Desk) -> None:
    reading = SensorReading(
        site="estate-e",
        shed="shed-a",
        bay="b2",
        current_a=3.0,
        voltage_v=47.5,
        temperature_c=71.0,
        measured_at=T0,
    )
    desk.send(reading)
    desk.send(event(EventKind.SHED, 0, "shed-cam", level="warning", detail="b2: temperature"))
    desk.send(
        event(EventKind.SHED, 2, "shed-cam", level="warning", phase="end"),
        event(EventKind.SHED, 2, "shed-cam", level="alarm", scores={"fire": 0.8}),
    )
    [incident] = desk.rows(Incident)
    assert (incident.kind, incident.level, incident.colour) == ("shed", "alarm", "red")
    routed = alerts(desk, incident.id)
    assert {(a.recipient_kind.value, a.recipient) for a in routed} == {("manager", "pm-acme")}
    assert [a.detail["reason"] for a in routed] == ["new", "escalation"]
    assert [s.name for s in desk.rows(IncidentStage, IncidentStage.incident_id == incident.id)] == [
        "acknowledged",
        "onsite_check",
        "fire_service_called",
    ]
    assert len(desk.rows(t.SensorReading)) == 1, "readings are kept for charts"

    manager = desk.users["acme"]
    res = desk.client.post(
        f"/api/v1/incidents/{incident.id}/steps/acknowledged", json={}, headers=manager
    )
    assert res.status_code == 200, res.text
    board = desk.client.get("/api/v1/incidents", headers=manager).json()
    assert [i["id"] for i in board] == [incident.id]


def test_intrusion_is_linked_to_persons_identified_on_the_same_camera(desk: Desk) -> None:
    # Only a match a human confirmed is attached to an alert: until then the intrusion
    # names nobody; the confirmation attaches him and tells the intrusion's recipients.
    pid, vec = desk.person("Yellow Person", "yellow")
    desk.send(face(vec, 0))
    desk.send(event(EventKind.INTRUSION, 20, "gate", ring="perimeter"))
    desk.send(event(EventKind.INTRUSION, 30, "door"))  # another site: nobody identified

    def intrusion(camera: str) -> Incident:
        [found] = desk.rows(Incident, Incident.kind == "intrusion", Incident.camera_id == camera)
        assert isinstance(found, Incident)
        return found

    gate = intrusion("gate")
    assert gate.detail["persons"] == [], "an unconfirmed match is not an identified person"
    assert gate.colour == "orange"  # perimeter ring's base colour
    assert [a.detail["reason"] for a in alerts(desk, gate.id)] == ["new"]

    [match] = desk.rows(Incident, Incident.kind == "watchlist")
    res = desk.client.post(
        f"/api/v1/incidents/{match.id}/confirm", json={}, headers=desk.users["north-officer"]
    )
    assert res.status_code == 200, res.text
    gate, door = intrusion("gate"), intrusion("door")
    assert gate.detail["persons"] == [pid] and door.detail["persons"] == []
    people = desk.rows(IncidentPoint, IncidentPoint.role == "person")
    assert [(p.incident_id, p.person_id) for p in people] == [(gate.id, pid)]
    assert [a.detail["reason"] for a in alerts(desk, gate.id)] == ["new", "update"]

    desk.send(event(EventKind.LOITERING, 40, "gate"))  # a later alert: linked at once
    [loiter] = desk.rows(Incident, Incident.kind == "loitering")
    assert loiter.detail["persons"] == [pid]


def test_technical_incidents_for_offline_devices_and_growing_outboxes(desk: Desk) -> None:
    def health(seconds: float, depth: int) -> Health:
        return Health(
            site="campus-n",
            device="box-1",
            at=T0 + dt.timedelta(seconds=seconds),
            agent_version="1.0",
            uptime_s=seconds,
            outbox_depth=depth,
            outbox_dropped=0,
        )

    for i, depth in enumerate((10, 40, 90)):
        desk.send(health(10 * i, depth))
        desk.incidents.tick(desk.clock.advance(10))
    [growing] = desk.rows(Incident, Incident.kind == "outbox_growing")
    assert [a.recipient for a in alerts(desk, growing.id)] == ["technicians"]

    desk.incidents.tick(desk.clock.advance(301))  # last heartbeat was > 5 minutes ago
    [offline] = desk.rows(Incident, Incident.kind == "device_offline")
    assert offline.device_id == "box-1" and not offline.late
    tech = desk.users["tech"]
    officer = desk.users["north-officer"]
    assert {i["kind"] for i in desk.client.get("/api/v1/incidents", headers=tech).json()} == {
        "outbox_growing",
        "device_offline",
    }
    assert desk.client.get("/api/v1/incidents", headers=officer).json() == []

    desk.incidents.tick(desk.clock.advance(3601))  # past the technicians' hour
    missed = [d.target for d in desk.deliveries(offline.id) if d.reason == "missed"]
    assert missed == ["ringwatch/v1/alerts/technician/technicians"], "not to the police"

    desk.send(health((desk.clock() - T0).total_seconds(), 0))  # back, outbox drained
    desk.incidents.tick(desk.clock.advance(1))
    assert {i.status for i in desk.rows(Incident)} == {"closed"}


# --- retention and the live stream ----------------------------------------------------------


def test_retention_purges_old_events_and_keeps_confirmed_evidence(desk: Desk) -> None:
    _pid, vec = desk.person("Kept Person", "red")
    desk.send(face(vec, 0))
    desk.clock.advance(1000)
    desk.send(face(vec, 1000), event(EventKind.INTRUSION, 1000, "door"))
    kept, dropped = sorted(
        desk.rows(Incident, Incident.kind == "watchlist"), key=lambda i: i.first_seen
    )
    with desk.hub.sessions.begin() as session:
        service = desk.incidents.service
        actor = crud.Actor("officer", "station_officer")
        service.confirm(session, session.merge(kept), actor, "seen", desk.clock())
        service.reject(session, session.merge(dropped), actor, "no", desk.clock())
    config = desk.hub.config.incidents.retention  # 30 days of events, 365 of incidents
    with desk.hub.sessions.begin() as session:
        assert purge(session, config, desk.clock.advance(29 * 86400)).events == 0
    with desk.hub.sessions.begin() as session:
        purged = purge(session, config, desk.clock.advance(2 * 86400))
    assert (purged.events, purged.sightings, purged.incidents) == (2, 1, 0)
    [left] = desk.rows(t.Event)
    assert left.id == desk.rows(IncidentPoint, IncidentPoint.incident_id == kept.id)[0].event_id
    with desk.hub.sessions.begin() as session:
        purged = purge(session, config, desk.clock.advance(366 * 86400))
    assert purged.incidents == 1, "the rejected one; the confirmed one is kept"
    assert {i.id for i in desk.rows(Incident, Incident.kind == "watchlist")} == {kept.id}


def test_the_sse_feed_resumes_after_an_id_and_is_scoped(desk: Desk) -> None:
    desk.send(event(EventKind.INTRUSION, 0, "gate"), event(EventKind.INTRUSION, 0, "door"))

    async def take(after: int, sites: frozenset[str] | None, n: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        stream = alert_stream(desk.hub.sessions, after, sites, poll_s=0.01)
        async for item in stream:
            got.append(item)
            if len(got) == n:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    everything = asyncio.run(take(0, None, 2))
    assert [item["event"] for item in everything] == ["incident", "incident"]
    north = asyncio.run(take(0, frozenset({"campus-n"}), 1))
    assert '"site": "campus-n"' in north[0]["data"]
    desk.send(event(EventKind.LOITERING, 5, "gate"))
    resumed = asyncio.run(take(int(everything[-1]["id"]), None, 1))
    assert '"kind": "loitering"' in resumed[0]["data"]
