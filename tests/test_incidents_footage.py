"""Real footage through a real edge into the hub's incidents (SQLite and PostgreSQL, a real
Mosquitto): `ringwatch edge run` plays short_hamilton_clip.mp4 on a gate camera and
firesense_test1.mp4 / firesense_test7.mp4 on two shed cameras, while `ringwatch sim sensors`
publishes shed-a's bays with bay b2 overheating and shed-b's bays healthy.

- The gate camera has one zone, the whole frame, in the OUTER ring. Lin-Manuel Miranda is
  enrolled (lin-manuel-miranda.png) with tier RED. The default policy gives the outer ring
  yellow and raises a red-tier person one step: the expected colour is ORANGE.
- Expected: one watch-list incident for him, orange, trajectory filled, routed to station
  st-north as unconfirmed; confirming it works and is audited. His real face events,
  replayed as seen by a second site's camera, make a second incident, which is rejected
  with a reason (audited).
- One shed incident at level alarm for shed-a, routed to property manager pm-acme; none
  for shed-b (firesense_test7, a neon sign, played to its end).

The hub runs on its real clock here (the events carry real capture times); the timer
behaviour is tested with an injected clock in test_incidents.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, RoutedAlert, decode, encode
from ringwatch.contract.topics import EventKind, TopicKind, event_topic, topic_filter
from ringwatch.edge.mqtt import Message, MqttClient
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_tables import Incident, IncidentPoint
from ringwatch.hub.inventory import HubConfig
from ringwatch.models.faces import FacePipeline
from tests.hub_fixtures import BACKENDS, create_admin, database, enrol_person, settings, token
from tests.services import Broker, wait_for

REPO = Path(__file__).resolve().parent.parent
SITE, DEVICE = "campus-north", "box-gate-01"
LIN_TIER, GATE_RING, EXPECTED_COLOUR = "red", "outer", "orange"


def hub_config(tag: str) -> HubConfig:
    return HubConfig.model_validate(
        {
            "stations": [{"id": "st-north", "name": "North"}, {"id": "st-south", "name": "S"}],
            "managers": [{"id": "pm-acme", "name": "Acme"}],
            "sites": [
                {
                    "id": SITE,
                    "name": "North School",
                    "station": "st-north",
                    "manager": "pm-acme",
                    "devices": [
                        {
                            "id": DEVICE,
                            "cameras": [
                                {"id": "gate", "default_ring": GATE_RING},
                                {"id": "shed-a-cam", "role": "shed", "shed": "shed-a"},
                                {"id": "shed-b-cam", "role": "shed", "shed": "shed-b"},
                            ],
                        }
                    ],
                },
                {
                    "id": "campus-south",
                    "name": "South School",
                    "station": "st-north",
                    "devices": [{"id": "box-s", "cameras": [{"id": "door"}]}],
                },
            ],
            "ingest": {"group": f"g{tag}", "worker": f"w{tag}"},
        }
    )


def edge_config(tmp: Path, data: Path, broker_url: str) -> Path:
    raw = yaml.safe_load((REPO / "configs/site-campus.yaml").read_text())
    raw.update(site=SITE, device=DEVICE, health_interval_s=1)
    raw["broker"]["url"] = broker_url
    raw["outbox"]["path"] = str(tmp / "outbox.sqlite3")
    gate, shed = raw["cameras"][0], raw["cameras"][1]
    gate.update(
        source=str(data / "faces/watchlist_demo/short_hamilton_clip.mp4"),
        loop=False,
        realtime=False,  # every frame read, analysed at the camera's fps of video time:
        # the same shots on a loaded machine as on an idle one
        fps=10,
        tasks=["faces"],
        default_ring=GATE_RING,
        zones=[{"id": "road", "role": "outer", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        lines=[],
        masks=[],
    )
    gate.pop("schedules", None)
    shed.update(source=str(data / "fire/video/firesense_test1.mp4"), loop=False)
    neon = {
        **shed,
        "id": "shed-b-cam",
        "shed": "shed-b",
        "source": str(data / "fire/video/firesense_test7.mp4"),
        "zones": [{**shed["zones"][0], "id": "shed-b-bays"}],
    }
    raw["cameras"] = [gate, shed, neon]
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Observer:
    """Listens to routed alerts and to the edge's face events (a plain subscriber)."""

    def __init__(self, broker_url: str) -> None:
        self.alerts: list[RoutedAlert] = []
        self.faces: list[Event] = []
        self.lock = threading.Lock()
        self.client = MqttClient(broker_url, f"observer-{uuid.uuid4().hex[:8]}", session_expiry_s=0)
        self.client.subscribe(topic_filter(TopicKind.ALERTS), self._alert)
        self.client.subscribe(topic_filter(TopicKind.EVENTS, SITE, DEVICE, "face"), self._face)
        self.client.start()
        assert self.client.wait_connected(10)

    def _alert(self, m: Message) -> None:
        with self.lock:
            self.alerts.append(decode(RoutedAlert, m.payload))

    def _face(self, m: Message) -> None:
        with self.lock:
            self.faces.append(decode(Event, m.payload))


def sim(broker_url: str, shed: str, *faults: str) -> subprocess.Popen[bytes]:
    args = ["--broker", broker_url, "--site", SITE, "--shed", shed, "--bays", "3"]
    args += ["--interval", "1", "--count", "60", "--seed", "7"]
    for fault in faults:
        args += ["--fault", fault]
    return subprocess.Popen(
        [sys.executable, "-m", "ringwatch", "sim", "sensors", *args],
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
def running(
    request: pytest.FixtureRequest, broker: Broker, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A fresh database for the backend in ``request.param``."""
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        yield url, tmp_path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _incidents(hub: Hub, **where: Any) -> list[Incident]:
    with hub.sessions() as session:
        query = sa.select(Incident).filter_by(**where)
        return list(session.scalars(query))


def _camera_ended(hub: Hub, camera: str) -> bool:
    with hub.sessions() as session:
        device = session.get(t.Device, (SITE, DEVICE))
        health = None if device is None else device.last_health
    cams = {c["camera"]: c for c in (health or {}).get("cameras", [])}
    return camera in cams and not cams[camera]["online"]


@pytest.mark.data
@pytest.mark.parametrize("running", BACKENDS, indirect=True)
def test_real_edge_footage_makes_the_expected_incidents(
    running: tuple[str, Path], broker: Broker, models_dir: Path, data_dir: Path
) -> None:
    url, tmp = running
    create_admin(url)
    pipeline = FacePipeline.from_models_dir(models_dir)
    app = create_app(settings(url, broker.url), hub_config(uuid.uuid4().hex[:8]), faces=pipeline)
    hub: Hub = app.state.hub
    observer = Observer(broker.url)
    procs: list[subprocess.Popen[bytes]] = []
    with TestClient(app) as client:
        admin = token(client, "admin", "admin-password")
        lin = _enrol_lin(client, admin, data_dir)
        assert hub.link is not None and hub.link.connected.wait(10)
        try:
            procs.append(sim(broker.url, "shed-a", "b2:overheating@0"))
            procs.append(sim(broker.url, "shed-b"))
            command = [sys.executable, "-m", "ringwatch", "edge", "run"]
            command += ["-c", str(edge_config(tmp, data_dir, broker.url))]
            procs.append(subprocess.Popen([*command, "--models-dir", str(models_dir)], cwd=tmp))
            wait_for(lambda: bool(_incidents(hub, kind="watchlist")), 120, "a watch-list incident")
            wait_for(lambda: bool(_incidents(hub, kind="shed", level="alarm")), 120, "shed alarm")
            wait_for(lambda: _camera_ended(hub, "gate"), 120, "the end of the Hamilton clip")
            wait_for(lambda: _camera_ended(hub, "shed-b-cam"), 120, "the end of the neon clip")
            wait_for(lambda: _temperature_over(hub, 60.0), 60, "bay b2 overheating")
        finally:
            for proc in reversed(procs):
                _stop(proc)

        # --- watch list: one incident, the policy's colour, trajectory, unconfirmed alert ---
        [match] = _incidents(hub, kind="watchlist")
        assert match.person_id == lin and match.site_id == SITE
        assert (match.colour, match.ring) == (EXPECTED_COLOUR, GATE_RING)
        assert match.detail["person"]["tier"] == LIN_TIER
        with hub.sessions() as session:  # the trajectory: the incident's sighting points
            trajectory = list(
                session.scalars(
                    sa.select(IncidentPoint).filter_by(incident_id=match.id, role="sighting")
                )
            )
        # At the 1:N threshold 0.5 the deterministic run (every frame, 10 fps of video time)
        # yields one matching best shot; several sightings forming one trajectory: see
        # test_incidents.py::test_sightings_of_one_person_form_one_incident_with_trajectory...
        assert len(trajectory) >= 1, "his sighting on the gate camera"
        assert {(p.camera_id, p.ring, p.colour) for p in trajectory} == {
            ("gate", GATE_RING, EXPECTED_COLOUR)
        }
        assert min(p.similarity or 0.0 for p in trajectory) >= hub.matcher.threshold
        wait_for(lambda: bool(_alerts(observer, match.id)), 30, "the routed alert on MQTT")
        first = _alerts(observer, match.id)[0]
        assert (first.recipient_kind.value, first.recipient) == ("station", "st-north")
        assert first.confirmed is False and first.detail["status"] == "open"
        assert first.colour is not None and first.colour.value == EXPECTED_COLOUR
        assert first.detail["person"]["case_reference"] == "CASE-LMM"
        crop = client.get(first.detail["live_crop"], headers=admin)
        assert crop.status_code == 200 and crop.content.startswith(b"\xff\xd8")

        res = client.post(
            f"/api/v1/incidents/{match.id}/confirm", json={"reason": "it is him"}, headers=admin
        )
        assert res.status_code == 200 and res.json()["confirmed"] is True, res.text
        wait_for(lambda: any(a.confirmed for a in _alerts(observer, match.id)), 30, "confirmed")

        # --- the same real face events seen by another site's camera: reject that one ---
        replay = [
            e.model_copy(
                update={
                    "event_id": new_event_id(),
                    "site": "campus-south",
                    "device": "box-s",
                    "camera": "door",
                    "ring": None,
                }
            )
            for e in observer.faces
        ]
        assert replay, "the observer saw the edge's face events"
        for e in replay:
            assert hub.link.publish(event_topic(e.site, e.device, EventKind.FACE), encode(e))
        wait_for(lambda: bool(_incidents(hub, site_id="campus-south")), 60, "second incident")
        [other] = _incidents(hub, site_id="campus-south")
        res = client.post(
            f"/api/v1/incidents/{other.id}/reject",
            json={"reason": "test: other site"},
            headers=admin,
        )
        assert res.status_code == 200 and res.json()["status"] == "rejected", res.text
        audit = client.get("/api/v1/audit?entity=incident", headers=admin).json()
        actions = {(a["action"], a["entity_id"]) for a in audit}
        assert {("confirm", match.id), ("reject", other.id)} <= actions

        # --- sheds: one alarm for shed-a, routed to the manager; none for shed-b ---
        sheds = _incidents(hub, kind="shed")
        assert [(i.camera_id, i.level) for i in sheds] == [("shed-a-cam", "alarm")]

        # The overheating bay may raise a sensor warning before the camera confirms the fire
        # (the evidence rule takes ~1 s of fire): the alarm is then the incident's upgrade.
        def alarm_alerts() -> list[RoutedAlert]:
            return [
                a
                for a in _alerts(observer, sheds[0].id)
                if a.level is not None and a.level.value == "alarm"
            ]

        wait_for(lambda: bool(alarm_alerts()), 30, "the shed alarm alert on MQTT")
        shed_alert = alarm_alerts()[0]
        assert (shed_alert.recipient_kind.value, shed_alert.recipient) == ("manager", "pm-acme")
    observer.client.close()


def _enrol_lin(client: TestClient, admin: dict[str, str], data_dir: Path) -> int:
    photo = data_dir / "faces/watchlist_demo/lin-manuel-miranda.png"
    person = enrol_person(
        client,
        admin,
        "Lin-Manuel Miranda",
        photo,
        tier=LIN_TIER,
        reason="demo watch-list entry (test)",
        case_reference="CASE-LMM",
    )
    assert person is not None
    return person


def _alerts(observer: Observer, incident_id: str) -> list[RoutedAlert]:
    with observer.lock:
        return [a for a in observer.alerts if a.incident_id == incident_id]


def _temperature_over(hub: Hub, celsius: float) -> bool:
    with hub.sessions() as session:
        hottest = session.scalar(
            sa.select(sa.func.max(t.SensorReading.temperature_c)).where(
                t.SensorReading.shed == "shed-a", t.SensorReading.bay == "b2"
            )
        )
    return hottest is not None and hottest > celsius
