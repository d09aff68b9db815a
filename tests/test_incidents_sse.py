"""The dashboards' SSE stream over real HTTP (uvicorn + httpx): a new incident arrives on an
open stream as one ``incident`` event, without polling by the client; a user outside the
incident's site does not get it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ringwatch.contract.messages import encode
from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from tests.hub_fixtures import settings
from tests.services import free_port
from tests.test_incidents import T0, FakeClock, _user, event, incident_config


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Hub, FakeClock]]:
    clock = FakeClock(T0)
    app = create_app(
        settings(f"sqlite:///{tmp_path / 'hub.sqlite3'}"),
        incident_config(),
        clock=clock,
        ingest=False,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.05):
        if server.started:
            started.set()
    try:
        yield f"http://127.0.0.1:{port}", app.state.hub, clock
    finally:
        server.should_exit = True
        thread.join(15)


def test_a_new_incident_reaches_an_open_stream(served: tuple[str, Hub, FakeClock]) -> None:
    base, hub, clock = served
    admin = _user(hub, "admin", "admin", {})
    south = _user(hub, "south", "station_officer", {"station": ["st-south"]})
    connected = {name: threading.Event() for name in ("admin", "south")}
    received: dict[str, list[dict[str, Any]]] = {"admin": [], "south": []}

    def listen(name: str, headers: dict[str, str], timeout: float) -> None:
        url = f"{base}/api/v1/incidents/stream"
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                connected[name].set()
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        received[name].append(json.loads(line[5:]))
                        return
        except httpx.ReadTimeout:
            return

    readers = [
        threading.Thread(target=listen, args=("admin", admin, 20)),
        threading.Thread(target=listen, args=("south", south, 3)),
    ]
    for reader in readers:
        reader.start()
    assert all(c.wait(10) for c in connected.values())
    assert hub.incidents is not None
    ingest = Ingestor(hub.sessions, hub.matcher, clock, IngestStats(), hub.incidents.on_stored)
    alert = event(EventKind.INTRUSION, 0, "gate")
    ingest.ingest([Inbound(event_topic(alert.site, alert.device, alert.kind), encode(alert))])
    for reader in readers:
        reader.join(30)
    [got] = received["admin"]
    assert (got["kind"], got["site"], got["reason"], got["confirmed"]) == (
        "intrusion",
        "campus-n",
        "new",
        False,
    )
    assert received["south"] == [], "campus-n is not a site of st-south"


def test_streams_carry_only_the_kinds_a_role_may_see() -> None:
    from ringwatch.hub.api.routes.incidents import stream_kinds
    from ringwatch.hub.roles import Role

    manager = stream_kinds(Role.PROPERTY_MANAGER)
    assert manager == frozenset({"shed"})
    officer = stream_kinds(Role.STATION_OFFICER)
    assert officer is not None and "shed" in officer and "watchlist" in officer
    assert stream_kinds(Role.ADMIN) is None
