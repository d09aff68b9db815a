"""Hostile MQTT payloads for the fuzz suite and the fuzz benchmark: hypothesis strategies
whose every draw is certain to break the contract (so each one must be counted), and the
valid messages they are mixed with.

Every malformed payload is one of: random bytes; JSON that is not an object; a nesting
bomb; oversized; a valid message of the topic's kind with an unknown key added (the
contract forbids extra keys) and other fields overwritten with random JSON; a valid
message with a time out of bounds; a valid message naming a site with a control
character."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import strategies as st

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import MAX_MESSAGE_BYTES

SITE, DEVICE, CAMERA = "campus-n", "box-1", "gate"
P = "ringwatch/v1"
# topic -> the kind of valid message its payloads are mutated from
HUB_TOPICS = {
    f"{P}/events/{SITE}/{DEVICE}/intrusion": "event",
    f"{P}/events/{SITE}/{DEVICE}/face": "event",
    f"{P}/health/{SITE}/{DEVICE}": "health",
    f"{P}/sensors/{SITE}/shed-1/b1": "sensor",
    f"{P}/events/{SITE}/{DEVICE}/nosuchkind": "event",  # a topic the contract lacks
}
ZONE_TOPICS = {
    f"{P}/replies/{SITE}/{DEVICE}/snapshot": "reply",
    f"{P}/replies/{SITE}/{DEVICE}/zone_config": "answer",
    f"{P}/status/{SITE}/{DEVICE}": "status",
}
RECEIPT_TOPIC = f"{P}/receipts/{SITE}/{DEVICE}"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def valid(kind: str) -> dict[str, Any]:
    """A valid message of ``kind`` for campus-n/box-1 (times: now)."""
    at = now_iso()
    if kind == "event":
        return {
            "event_id": new_event_id(),
            "captured_at": at,
            "site": SITE,
            "device": DEVICE,
            "camera": CAMERA,
            "kind": "intrusion",
            "phase": "start",
            "frame_width": 640,
            "frame_height": 480,
        }
    if kind == "health":
        return {
            "site": SITE,
            "device": DEVICE,
            "at": at,
            "agent_version": "1",
            "uptime_s": 1,
            "outbox_depth": 0,
            "outbox_dropped": 0,
        }
    if kind == "sensor":
        return {
            "site": SITE,
            "shed": "shed-1",
            "bay": "b1",
            "current_a": 1,
            "voltage_v": 48,
            "temperature_c": 20,
            "measured_at": at,
        }
    if kind == "status":
        return {"site": SITE, "device": DEVICE, "state": "online"}
    if kind == "reply":
        return {"request_id": "r1", "camera": CAMERA, "error": "no frame yet"}
    if kind == "answer":
        return {"request_id": "r1", "camera": CAMERA, "accepted": True}
    if kind == "receipt":
        return {"site": SITE, "device": DEVICE, "event_ids": [new_event_id()], "sent_at": at}
    raise ValueError(kind)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    body = valid(kind)
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=3, unique=True)):
        body[key] = draw(JSON)
    body[f"fuzz_{draw(st.integers(0, 999))}"] = draw(JSON)  # extra keys are forbidden
    return json.dumps(body).encode()


@st.composite
def bad_time(draw: st.DrawFn, kind: str) -> bytes:
    body = valid(kind)
    times = [k for k in ("captured_at", "at", "measured_at", "sent_at") if k in body]
    if not times:
        body["fuzz"] = 1
        return json.dumps(body).encode()
    body[draw(st.sampled_from(times))] = draw(
        st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2999-01-01T00:00:00Z"])
    )
    return json.dumps(body).encode()


@st.composite
def bad_site(draw: st.DrawFn, kind: str) -> bytes:
    body = valid(kind)
    junk = draw(st.sampled_from(["\x00", "\x1b[2J", "\n", "\u202e", "/", "+", "#", " "]))
    key = "site" if "site" in body else "camera"
    body[key] = body[key] + junk
    return json.dumps(body).encode()


def bomb(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


OVERSIZED = b'{"pad": "' + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"}'


def malformed(kind: str) -> st.SearchStrategy[bytes]:
    """Payloads certain to break the contract for a topic of ``kind``."""
    return st.one_of(
        st.binary(max_size=200).filter(lambda b: not b.strip().startswith(b"{")),
        JSON.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
        st.integers(50, 20000).map(bomb),
        st.integers(50, 900).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        mutated(kind),
        bad_time(kind),
        bad_site(kind),
        st.just(OVERSIZED),
    )


class Bad:
    """A malformed payload and its topic (a plain class: hypothesis prints a failing
    example with this short repr, where a dataclass would print every byte)."""

    __slots__ = ("payload", "topic")

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic = topic
        self.payload = payload

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them short
        return f"Bad({self.topic!r}, {len(self.payload)} bytes: {self.payload[:60]!r})"


def bad_messages(topics: dict[str, str]) -> st.SearchStrategy[Bad]:
    return st.sampled_from(sorted(topics.items())).flatmap(
        lambda tk: malformed(tk[1]).map(lambda payload: Bad(tk[0], payload))
    )
