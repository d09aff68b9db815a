from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import numpy as np
import pytest

from ringwatch.contract.errors import ContractError
from ringwatch.contract.ids import event_id_time_ms, is_uuid7, new_event_id
from ringwatch.contract.messages import (
    MAX_IMAGE_BYTES,
    MAX_MESSAGE_BYTES,
    DeviceStatus,
    Event,
    Health,
    Receipt,
    RoutedAlert,
    SensorReading,
    SnapshotReply,
    ZoneConfigAnswer,
    ZoneConfigPush,
    decode,
    encode,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
# A snapshot reply is decoded by the hub, so its frame header (SOF0: 640x360) must be there.
FRAME_JPEG = b"\xff\xd8\xff\xc0\x00\x11\x08\x01\x68\x02\x80\x03" + b"\x00" * 60


def unit_vector(dim: int = 128, seed: int = 0) -> list[float]:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return [float(x) for x in v / np.linalg.norm(v)]


def face_event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "event_id": new_event_id(),
        "captured_at": "2026-11-25T08:00:00.250Z",
        "site": "campus-north",
        "device": "box-1",
        "camera": "gate",
        "kind": "face",
        "phase": "start",
        "zone_id": "yard",
        "ring": "inner",
        "track_id": 7,
        "scores": {"face": 0.93, "quality": 0.8},
        "frame_width": 640,
        "frame_height": 360,
        "boxes": [{"x1": 10, "y1": 20, "x2": 60, "y2": 90, "label": "face", "score": 0.93}],
        "face_crop_jpeg": base64.b64encode(JPEG).decode(),
        "embedding": unit_vector(),
        "face_quality": 0.8,
    }
    base.update(overrides)
    return base


def test_ids_are_uuid7_unique_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert ids == sorted(ids)
    assert all(is_uuid7(i) for i in ids)
    assert new_event_id(now_ms=1_700_000_000_000) and event_id_time_ms(ids[0]) > 1_700_000_000_000
    assert not is_uuid7("not-a-uuid")
    assert not is_uuid7("6ba7b810-9dad-11d1-80b4-00c04fd430c8")  # v1


def test_event_round_trip() -> None:
    event = Event.model_validate(face_event())
    back = decode(Event, encode(event))
    assert back == event
    assert back.captured_at.tzinfo is dt.UTC
    assert back.face_crop_jpeg == JPEG
    emb = back.embedding_array()
    assert emb is not None and emb.dtype == np.float32 and emb.shape == (128,)
    assert abs(float(np.linalg.norm(emb)) - 1) < 1e-5


def test_without_biometrics_strips_embedding_and_crop() -> None:
    event = Event.model_validate(face_event()).without_biometrics()
    assert event.embedding is None and event.face_crop_jpeg is None
    assert b"embedding" not in encode(event)


def test_offsets_are_normalised_to_utc() -> None:
    event = Event.model_validate(face_event(captured_at="2026-11-25T09:00:00+01:00"))
    assert event.captured_at == dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"schema_version": 2}, "schema_version"),
    ({"event_id": "123"}, "event_id"),
    ({"event_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, "event_id"),
    ({"captured_at": "2026-11-25T08:00:00"}, "captured_at: time must carry a UTC offset"),
    ({"captured_at": "yesterday"}, "captured_at"),
    ({"site": "a/b"}, "site"),
    ({"device": "+"}, "device"),
    ({"camera": ""}, "camera"),
    ({"kind": "explosion"}, "kind"),
    ({"phase": "middle"}, "phase"),
    ({"zone_id": "#"}, "zone_id"),
    ({"ring": "moat"}, "ring"),
    ({"track_id": -1}, "track_id"),
    ({"track_id": 2**31}, "track_id"),
    ({"scores": {"face": 1.5}}, "scores.face"),
    ({"scores": {"face": "nan"}}, "scores.face"),
    ({"frame_width": 0}, "frame_width"),
    ({"frame_height": -5}, "frame_height"),
    ({"boxes": [{"x1": 50, "y1": 20, "x2": 10, "y2": 90}]}, "x1 < x2"),
    ({"boxes": [{"x1": 10, "y1": 20, "x2": 900, "y2": 90}]}, "outside the 640x360 frame"),
    ({"boxes": [{"x1": 1, "y1": 2, "x2": 3, "y2": 4, "colour": "red"}]}, "boxes[0].colour"),
    ({"face_crop_jpeg": base64.b64encode(b"GIF89a").decode()}, "not a JPEG"),
    ({"face_crop_jpeg": "***"}, "face_crop_jpeg"),
    (
        {"snapshot_jpeg": base64.b64encode(b"\xff\xd8" + b"0" * MAX_IMAGE_BYTES).decode()},
        "snapshot_jpeg: image is",
    ),
    ({"embedding": unit_vector(64)}, "need 128 values, got 64"),
    ({"embedding": [x * 2 for x in unit_vector()]}, "L2 norm must be 1"),
    ({"embedding": [float("nan")] * 128}, "embedding"),
    ({"face_quality": 2}, "face_quality"),
    ({"kind": "zone"}, "only face events carry an embedding"),
    ({"kind": "shed", "embedding": None}, "shed events need a level"),
    ({"level": "panic"}, "level"),
    ({"surprise": 1}, "surprise"),
    ({"detail": "x" * 501}, "detail"),
]


@pytest.mark.parametrize(("overrides", "needle"), BAD_FIELDS)
def test_event_rejects_each_malformed_field(overrides: dict[str, Any], needle: str) -> None:
    payload = json.dumps(face_event(**overrides)).encode()
    with pytest.raises(ContractError) as info:
        decode(Event, payload)
    assert needle in str(info.value)
    assert str(info.value).startswith("Event: ")


@pytest.mark.parametrize("missing", ["event_id", "captured_at", "site", "kind", "frame_width"])
def test_event_requires_core_fields(missing: str) -> None:
    payload = face_event()
    del payload[missing]
    with pytest.raises(ContractError, match=f"{missing}: Field required"):
        decode(Event, json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json", "Invalid JSON"),
        (b"[]", "Input should be an object"),
        (b"", "EOF"),
        (b"\xff\xfe", "Event"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "limit"),
    ],
)
def test_garbage_payloads_are_contract_errors(payload: bytes, needle: str) -> None:
    with pytest.raises(ContractError, match=needle):
        decode(Event, payload)


def now() -> str:
    return "2026-11-25T08:00:00Z"


def test_receipt_round_trip_and_rejections() -> None:
    ids = [new_event_id() for _ in range(3)]
    receipt = Receipt(site="s", device="d", event_ids=ids, sent_at=dt.datetime.now(dt.UTC))
    assert decode(Receipt, encode(receipt)).event_ids == ids
    cases: list[tuple[dict[str, object], str]] = [
        ({"event_ids": []}, "event_ids"),
        ({"event_ids": ["nope"]}, "event_ids[0]"),
        ({"device": "a/b"}, "device"),
    ]
    for bad, needle in cases:
        data: dict[str, object] = {
            "site": "s",
            "device": "d",
            "event_ids": ids,
            "sent_at": now(),
            **bad,
        }
        with pytest.raises(ContractError, match=needle.replace("[", r"\[")):
            decode(Receipt, json.dumps(data).encode())


def test_sensor_reading_round_trip_and_bounds() -> None:
    data = {
        "site": "s",
        "shed": "shed-a",
        "bay": "b1",
        "current_a": 4.2,
        "voltage_v": 48.1,
        "temperature_c": 31.5,
        "measured_at": now(),
    }
    reading = decode(SensorReading, json.dumps(data).encode())
    assert decode(SensorReading, encode(reading)) == reading
    for key, value in [
        ("current_a", -1),
        ("voltage_v", 5000),
        ("temperature_c", float("inf")),
        ("temperature_c", "hot"),
        ("bay", "b/1"),
        ("measured_at", "2026-11-25 08:00"),
    ]:
        with pytest.raises(ContractError, match=key):
            decode(SensorReading, json.dumps({**data, key: value}).encode())


def test_status_health_commands_alerts_round_trip() -> None:
    at = dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC)
    messages = [
        DeviceStatus(site="s", device="d", state="offline"),
        Health(
            site="s",
            device="d",
            at=at,
            agent_version="0.1.0",
            uptime_s=5,
            cameras=[
                {
                    "camera": "c",
                    "online": True,
                    "fps": 5,
                    "latency_ms": 40,
                    "dropped_frames": 0,
                    "reconnects": 1,
                }
            ],
            outbox_depth=3,
            outbox_dropped=0,
        ),
        SnapshotReply(
            request_id="r1", camera="c", jpeg=base64.b64encode(FRAME_JPEG), width=640, height=360
        ),
        ZoneConfigPush.model_validate(
            {
                "request_id": "r2",
                "camera": "c",
                "zones": {
                    "zones": [{"id": "z", "role": "inner", "polygon": [[0, 0], [1, 0], [1, 1]]}]
                },
            }
        ),
        ZoneConfigAnswer(request_id="r2", camera="c", accepted=False, reason="bad polygon"),
        RoutedAlert(
            alert_id="a1",
            incident_id="i1",
            recipient_kind="station",
            recipient="central",
            kind="watchlist",
            colour="red",
            site="s",
            title="Watch-list match, unconfirmed",
            created_at=at,
        ),
    ]
    for message in messages:
        assert decode(type(message), encode(message)) == message
    with pytest.raises(ContractError, match="either jpeg or error"):
        decode(SnapshotReply, b'{"request_id": "r", "camera": "c"}')
    with pytest.raises(ContractError, match="zones.zones"):
        decode(
            ZoneConfigPush,
            b'{"request_id":"r","camera":"c","zones":{"zones":[{"id":"z","role":"inner",'
            b'"polygon":[[0,0],[1,1]]}]}}',
        )
