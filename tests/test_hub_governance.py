"""Governance of the hub, on SQLite and PostgreSQL with the injected clock of the incidents
tests: a rejected match is attached to nothing and its live face crops are erased (audited);
reads of watch-list incidents in lists and live streams are audited; a role sees only the
event kinds it may; watch-list entries need non-blank legal fields and a review date within
12 months; the hub refuses short secrets."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from starlette.requests import Request

from ringwatch.contract.topics import EventKind
from ringwatch.errors import ConfigError, InputError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import get_caller, get_current_user
from ringwatch.hub.api.routes import dashboard_support, incidents
from ringwatch.hub.app import build_hub, create_app
from ringwatch.hub.incident_tables import Incident, IncidentPoint
from ringwatch.hub.schemas import review_due_error
from ringwatch.hub.settings import HubSettings
from tests import test_incidents
from tests.hub_fixtures import SECRET, hub_config, review_due
from tests.test_incidents import Desk, alerts, event, face, jpeg

desk = test_incidents.desk  # the incidents tests' fixture: a hub on a fresh database

BASE = "/api/v1/incidents"


def _audit(desk: Desk, action: str, entity: str) -> list[t.AuditEntry]:
    return desk.rows(t.AuditEntry, t.AuditEntry.action == action, t.AuditEntry.entity == entity)


# --- 1, 2: a rejected match ---------------------------------------------------------------


def test_a_rejected_match_is_linked_to_nothing_and_its_face_crops_are_erased(desk: Desk) -> None:
    _pid, vec = desk.person("Red Person", "red")
    desk.send(face(vec, 0))
    desk.send(event(EventKind.INTRUSION, 20, "gate", ring="perimeter"))
    [match] = desk.rows(Incident, Incident.kind == "watchlist")
    [gate] = desk.rows(Incident, Incident.kind == "intrusion")
    assert gate.detail["persons"] == [], "not confirmed: not attached"
    [sighting] = desk.rows(t.Sighting)
    assert sighting.crop_jpeg is not None
    crop_url = f"/api/v1/sightings/{sighting.id}/crop"
    assert desk.client.get(crop_url, headers=desk.admin).status_code == 200

    officer = desk.users["north-officer"]
    res = desk.client.post(
        f"{BASE}/{match.id}/reject", json={"reason": "a different man"}, headers=officer
    )
    assert res.status_code == 200, res.text
    desk.send(face(vec, 30))  # a later sighting opens a new, unconfirmed match
    [gate] = desk.rows(Incident, Incident.kind == "intrusion")
    assert gate.detail["persons"] == []
    assert desk.rows(IncidentPoint, IncidentPoint.role == "person") == []
    assert [a.detail["reason"] for a in alerts(desk, gate.id)] == ["new"], "nothing routed"

    [kept] = desk.rows(t.Sighting, t.Sighting.id == sighting.id)
    assert kept.crop_jpeg is None, "an innocent person's face is not kept"
    assert (kept.similarity, kept.threshold, kept.camera_id) == (
        sighting.similarity,
        sighting.threshold,
        "gate",
    )
    assert desk.client.get(crop_url, headers=desk.admin).status_code == 404
    [rejected] = desk.rows(Incident, Incident.id == match.id)
    assert rejected.detail["live_crop"] is None
    [erased] = _audit(desk, "erase_crops", "incident")
    assert (erased.entity_id, erased.actor, erased.detail["sightings"]) == (
        match.id,
        "north-officer",
        [sighting.id],
    )
    [row] = desk.client.get(f"{BASE}/reports/false-matches", headers=officer).json()
    assert (row["camera"], row["decided"], row["rejected"]) == ("gate", 1, 1)


# --- 3: reads of watch-list incidents are audited -----------------------------------------


def test_lists_of_watchlist_incidents_are_audited(desk: Desk) -> None:
    _pid, vec = desk.person("Orange Person", "orange")
    desk.send(face(vec, 0), event(EventKind.INTRUSION, 0, "door"))
    [match] = desk.rows(Incident, Incident.kind == "watchlist")
    officer = desk.users["north-officer"]

    listed = desk.client.get(BASE, headers=officer).json()
    assert [i["detail"]["person"]["case_reference"] for i in listed] == ["CASE-Orange Person"]
    [entry] = _audit(desk, "list", "incident")
    assert (entry.actor, entry.detail["incidents"]) == ("north-officer", [match.id])

    board = desk.client.get("/api/v1/dashboard/board", headers=desk.admin).json()
    assert {i["kind"] for i in board["incidents"]} == {"watchlist", "intrusion"}
    entries = _audit(desk, "list", "incident")
    assert [(e.actor, e.detail["incidents"]) for e in entries] == [
        ("north-officer", [match.id]),
        ("admin", [match.id]),
    ]

    assert desk.client.get(f"{BASE}?kind=intrusion", headers=desk.admin).status_code == 200
    assert len(_audit(desk, "list", "incident")) == 2, "no watch-list entry shown: no row"


def test_opening_an_incident_stream_is_audited(desk: Desk) -> None:
    with desk.hub.sessions() as session:
        token = desk.users["north-officer"]["Authorization"].removeprefix("Bearer ")
        caller = get_caller(session, get_current_user(session, desk.hub, token))
        session.expunge_all()

    async def open_both() -> None:
        await incidents.stream(desk.hub, caller, None)
        cookie = f"{dashboard_support.COOKIE}={token}".encode()
        request = Request({"type": "http", "headers": [(b"cookie", cookie)]})
        await dashboard_support.stream(desk.hub, request, "7")

    asyncio.run(open_both())
    entries = _audit(desk, "open", "incident_stream")
    assert [(e.actor, e.entity_id) for e in entries] == [
        ("north-officer", "incidents/stream"),
        ("north-officer", "dashboard/stream"),
    ]
    assert entries[1].detail["after"] == 7


# --- 4: a role sees only its event kinds --------------------------------------------------


def test_property_managers_see_shed_events_only_and_technicians_no_faces(desk: Desk) -> None:
    _pid, vec = desk.person("Yellow Person", "yellow")
    shed = event(EventKind.SHED, 0, "shed-cam", level="warning", snapshot_jpeg=jpeg())
    intrusion = event(EventKind.INTRUSION, 0, "gate", snapshot_jpeg=jpeg())  # a pm-acme site
    seen = face(vec, 1)
    desk.send(shed, intrusion, seen)
    acme, tech = desk.users["acme"], desk.users["tech"]

    def kinds(headers: dict[str, str]) -> set[str]:
        return {e["kind"] for e in desk.client.get("/api/v1/events", headers=headers).json()}

    assert kinds(desk.admin) == {"shed", "intrusion", "face"}
    assert kinds(acme) == {"shed"}
    assert kinds(tech) == {"intrusion"}  # campus-n only, and no faces

    def status(path: str, headers: dict[str, str]) -> int:
        return desk.client.get(path, headers=headers).status_code

    assert status(f"/api/v1/events/{shed.event_id}", acme) == 200
    assert status(f"/api/v1/events/{intrusion.event_id}", acme) == 403
    assert status(f"/api/v1/events/{seen.event_id}", tech) == 403
    assert status(f"/api/v1/events/{intrusion.event_id}", tech) == 200
    snapshot = "/api/v1/dashboard/events/{}/snapshot"
    assert status(snapshot.format(shed.event_id), acme) == 200
    assert status(snapshot.format(intrusion.event_id), acme) == 403
    assert status(snapshot.format(intrusion.event_id), desk.users["north-officer"]) == 200


# --- 5: watch-list entries ----------------------------------------------------------------


def _entry(desk: Desk, **change: str) -> dict[str, str]:
    return {
        "display_name": "Entry",
        "tier": "orange",
        "reason": "seen with a weapon near the school",
        "case_reference": "CASE-1",
        "legal_basis": "court order 12/2026",
        "station_id": "st-north",
        "review_due": review_due(desk.clock()),
        **change,
    }


def test_watchlist_entries_need_legal_fields_and_a_review_within_a_year(desk: Desk) -> None:
    today = desk.clock().date()
    post = "/api/v1/persons"
    for blank in ("legal_basis", "case_reference", "reason", "display_name"):
        res = desk.client.post(post, json=_entry(desk, **{blank: " \t "}), headers=desk.admin)
        assert res.status_code == 422, blank
    for due in (today, today - dt.timedelta(days=1), today + dt.timedelta(days=367)):
        res = desk.client.post(post, json=_entry(desk, review_due=str(due)), headers=desk.admin)
        assert res.status_code == 422 and "review_due" in res.text, due
    spaced = _entry(desk, case_reference="  CASE-2 ", review_due=str(today + dt.timedelta(1)))
    res = desk.client.post(post, json=spaced, headers=desk.admin)
    assert res.status_code == 201, res.text
    assert res.json()["case_reference"] == "CASE-2"
    person = f"{post}/{res.json()['id']}"

    def patch(**change: str | None) -> int:
        res = desk.client.patch(person, json={**change, "why": "review"}, headers=desk.admin)
        return res.status_code

    assert patch(review_due="2099-01-01") == 422
    assert patch(legal_basis=None) == 422
    assert patch(legal_basis="   ") == 422
    assert patch(review_due=str(today + dt.timedelta(days=200))) == 200
    assert len(_audit(desk, "update", "person")) == 1, "refused changes are not made"


def test_the_review_window_follows_the_given_clock() -> None:
    day = dt.date(2028, 2, 29)
    assert review_due_error(day + dt.timedelta(days=1), day) is None
    assert review_due_error(dt.date(2029, 2, 28), day) is None
    assert review_due_error(dt.date(2029, 3, 1), day) is not None
    assert review_due_error(day, day) is not None
    later = dt.datetime(2031, 6, 1, tzinfo=dt.UTC)
    crud.check_review_due(dt.date(2032, 5, 1), later)  # far ahead of the real today
    with pytest.raises(InputError, match="12 months"):
        crud.check_review_due(dt.date(2032, 6, 2), later)


# --- 6: secrets ---------------------------------------------------------------------------


def test_the_hub_is_not_built_with_default_or_short_secrets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    with pytest.raises(ConfigError, match="left at the default"):
        build_hub(HubSettings(database_url=url), hub_config())
    short = HubSettings(database_url=url, jwt_secret="short-secret", template_key=SECRET)
    with pytest.raises(ConfigError, match="jwt_secret shorter than 16 characters"):
        create_app(short, hub_config(), ingest=False)
    hub = build_hub(HubSettings(database_url=url, jwt_secret=SECRET, template_key=SECRET))
    assert len(SECRET) >= 16 and hub.settings.jwt_secret == SECRET
    hub.engine.dispose()
