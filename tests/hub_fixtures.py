"""Helpers for the hub tests: a database per test module on SQLite or PostgreSQL, a
running hub app, real face events made from a real clip, and an MQTT "edge" client."""

from __future__ import annotations

import datetime as dt
import functools
import queue
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Receipt, decode, encode
from ringwatch.contract.topics import EventKind, event_topic, receipt_topic
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.settings import HubSettings

BACKENDS = ["sqlite", "postgresql"]
SECRET = "test-secret-not-default"


def review_due(now: dt.datetime | None = None, days: int = 90) -> str:
    """A watch-list review date the hub accepts: ``days`` after ``now`` (the hub's clock;
    default the real UTC time), within the 12-month window."""
    at = dt.datetime.now(dt.UTC) if now is None else now
    return (at.date() + dt.timedelta(days=days)).isoformat()


CLIP_EVERY = 15

HUB_CONFIG: dict[str, Any] = {
    "stations": [{"id": "st-north", "name": "North"}, {"id": "st-south", "name": "South"}],
    "managers": [{"id": "pm-acme", "name": "Acme"}],
    "sites": [
        {
            "id": "campus-n",
            "name": "North School",
            "station": "st-north",
            "manager": "pm-acme",
            "devices": [{"id": "box-1", "cameras": [{"id": "gate", "default_ring": "perimeter"}]}],
        },
        {
            "id": "campus-s",
            "name": "South School",
            "station": "st-south",
            "devices": [{"id": "box-9", "cameras": [{"id": "door", "default_ring": "inner"}]}],
        },
    ],
}


@contextmanager
def database(backend: str, tmp: Path, pg_url: str | None) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a fresh schema on the shared PostgreSQL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'hub.sqlite3'}"
        return
    assert pg_url is not None
    schema = f"hubtest_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in pg_url else "?"
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def settings(db_url: str, broker_url: str | None = None) -> HubSettings:
    return HubSettings(
        database_url=db_url, broker_url=broker_url, jwt_secret=SECRET, template_key=SECRET
    )


def hub_config(**extra: Any) -> HubConfig:
    return HubConfig.model_validate({**HUB_CONFIG, **extra})


def token(client: Any, username: str, password: str) -> dict[str, str]:
    res = client.post(
        "/api/v1/login/access-token", data={"username": username, "password": password}
    )
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['access_token']}"}


def make_user(
    client: Any, admin: dict[str, str], username: str, role: str, **scope: Any
) -> dict[str, str]:
    body = {"username": username, "password": f"{username}-password", "role": role, **scope}
    res = client.post("/api/v1/users", json=body, headers=admin)
    assert res.status_code == 201, res.text
    return token(client, username, f"{username}-password")


def person_body(name: str, review: str | None = None, **fields: str) -> dict[str, str]:
    """A watch-list entry as the API takes it (red tier, station st-north; ``fields``
    override), its review ``review`` (ISO date) or 90 days from now."""
    return {
        "display_name": name,
        "tier": "red",
        "reason": "test watch-list entry",
        "case_reference": f"CASE-{name}",
        "legal_basis": "court order (test)",
        "station_id": "st-north",
        "review_due": review or review_due(),
        **fields,
    }


def enrol_person(
    client: Any,
    admin: dict[str, str],
    name: str,
    photo: Path,
    refusal_ok: bool = False,
    **fields: str,
) -> int | None:
    """A watch-list entry for ``name`` (:func:`person_body`) and its one photo, over the
    API; its id. With ``refusal_ok`` a refused photo (422) gives None, not a failure."""
    res = client.post("/api/v1/persons", json=person_body(name, **fields), headers=admin)
    assert res.status_code == 201, res.text
    person_id: int = res.json()["id"]
    with photo.open("rb") as fh:
        res = client.post(
            f"/api/v1/persons/{person_id}/photos", files={"photo": (photo.name, fh)}, headers=admin
        )
    if refusal_ok and res.status_code == 422:
        return None
    assert res.status_code == 201, res.text
    return person_id


def health(client: Any) -> dict[str, Any]:
    """The hub's full ``/health`` (counters included), as an admin sees it: without a
    token it says only ok or degraded."""
    res = client.get("/api/v1/health", headers=token(client, "admin", "admin-password"))
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def add_quarantine(
    sessions: Any,
    now: dt.datetime,
    *,
    login: str = "box-1",
    site: str = "campus-n",
    minutes: int = 60,
    bad_count: int = 500,
    reasons: str = "invalid 500",
) -> int:
    """A hub-only flood quarantine (hub/quarantine.py) of ``login``, active for ``minutes``;
    its id."""
    from ringwatch.hub import tables as t

    with sessions.begin() as session:
        row = t.DeviceQuarantine(
            login=login,
            site_id=site,
            device_id=login,
            started_at=now,
            until=now + dt.timedelta(minutes=minutes),
            bad_count=bad_count,
            window_s=10,
            reasons=reasons,
            broker_ban=False,
        )
        session.add(row)
        session.flush()
        return int(row.id)


def create_admin(db_url: str) -> None:
    from ringwatch.hub import crud
    from ringwatch.hub.db import make_engine, migrate, session_factory
    from ringwatch.hub.schemas import UserCreate

    engine = make_engine(db_url)
    migrate(engine)
    with session_factory(engine).begin() as session:
        data = UserCreate.model_validate(
            {"username": "admin", "password": "admin-password", "role": "admin"}
        )
        crud.create_user(session, data, dt.datetime.now(dt.UTC))
    engine.dispose()


@functools.cache
def clip_face_events(models_dir: Path, clip: Path) -> tuple[Event, ...]:
    """Face events made by the real face pipeline over every 15th frame of ``clip``: one
    event per detected face, with its embedding, quality and face crop (site campus-n,
    device box-1, camera gate)."""
    import cv2

    from ringwatch.hub.registry import face_crop_jpeg
    from ringwatch.models.faces import FacePipeline

    pipeline = FacePipeline.from_models_dir(models_dir)
    capture = cv2.VideoCapture(str(clip))
    events: list[Event] = []
    start = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    index = 0
    while True:
        ok, raw = capture.read()
        if not ok:
            break
        frame = np.asarray(raw, np.uint8)
        if index % CLIP_EVERY == 0:
            faces = pipeline.detect_and_embed(frame)
            assert faces.embeddings is not None and faces.quality is not None
            for j in range(len(faces)):
                x1, y1, x2, y2 = (float(v) for v in faces.xyxy[j])
                h, w = frame.shape[:2]
                events.append(
                    Event.model_validate(
                        {
                            "event_id": new_event_id(),
                            "captured_at": start + dt.timedelta(seconds=index / 29.97),
                            "site": "campus-n",
                            "device": "box-1",
                            "camera": "gate",
                            "kind": EventKind.FACE,
                            "phase": "update",
                            "track_id": j,
                            "frame_width": w,
                            "frame_height": h,
                            "boxes": [
                                {
                                    "x1": max(0.0, x1),
                                    "y1": max(0.0, y1),
                                    "x2": min(float(w), x2),
                                    "y2": min(float(h), y2),
                                    "label": "face",
                                }
                            ],
                            "embedding": [float(v) for v in faces.embeddings[j]],
                            "face_quality": float(min(1.0, max(0.0, faces.quality[j]))),
                            "face_crop_jpeg": _b64(face_crop_jpeg(frame, faces.xyxy[j])),
                        }
                    )
                )
        index += 1
    capture.release()
    return tuple(events)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


class Edge:
    """A stand-in edge device: publishes events QoS 1 and collects the hub's receipts."""

    def __init__(self, host: str, port: int, site: str, device: str) -> None:
        self.site, self.device = site, device
        self.receipts: queue.Queue[Receipt] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = lambda c, u, m: self.receipts.put(
            decode(Receipt, bytes(m.payload))
        )
        self.client.connect(host, port)
        self.client.loop_start()
        result, _mid = self.client.subscribe(receipt_topic(site, device), qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)  # let the subscription settle before the first receipt can come

    def publish(self, event: Event) -> None:
        self.publish_raw(event_topic(event.site, event.device, event.kind), encode(event))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS

    def receipted_ids(self, want: dict[str, int], timeout_s: float = 30) -> dict[str, int]:
        """Collect receipts until each id in ``want`` was named at least that many times."""
        got: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        while any(got.get(k, 0) < n for k, n in want.items()) and time.monotonic() < deadline:
            try:
                receipt = self.receipts.get(timeout=0.2)
            except queue.Empty:
                continue
            for event_id in receipt.event_ids:
                got[event_id] = got.get(event_id, 0) + 1
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
