"""MQTT topics, built and parsed by functions only.

Every topic starts with the versioned prefix ``ringwatch/v1``. Topics a device publishes or
receives carry its site and device id, so a broker ACL can pin each device to its own tree::

    ringwatch/v1/status/<site>/<device>                 retained "online"/"offline" (last will)
    ringwatch/v1/health/<site>/<device>                 periodic heartbeat
    ringwatch/v1/events/<site>/<device>/<kind>          edge events (QoS 1)
    ringwatch/v1/replies/<site>/<device>/<command>      answers to hub commands
    ringwatch/v1/receipts/<site>/<device>               hub -> device: committed event ids
    ringwatch/v1/commands/<site>/<device>/<command>     hub -> device commands
    ringwatch/v1/sensors/<site>/<shed>/<bay>            shed sensor readings
    ringwatch/v1/alerts/<recipient_kind>/<recipient>    routed alerts per recipient

Publish topics never contain wildcards; subscription filters are built by the ``*_filter``
functions, which accept ``+`` for any segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from ringwatch.contract.errors import ContractError

PREFIX = "ringwatch/v1"
ANY = "+"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PREFIX_PARTS = PREFIX.count("/") + 1  # segments of PREFIX


class EventKind(StrEnum):
    """Kinds of edge events, one topic each."""

    FACE = "face"
    ZONE = "zone"
    INTRUSION = "intrusion"
    LOITERING = "loitering"
    LINE_CROSSING = "line_crossing"
    SHED = "shed"
    TAMPER = "tamper"  # camera covered, turned away or defocused: a technical incident


class Command(StrEnum):
    """Commands the hub sends a device; each has a reply topic of the same name."""

    SNAPSHOT = "snapshot"
    ZONE_CONFIG = "zone_config"


class RecipientKind(StrEnum):
    """Who a routed alert goes to."""

    STATION = "station"
    MANAGER = "manager"
    DEVICE_TECH = "technician"


class TopicKind(StrEnum):
    STATUS = "status"
    HEALTH = "health"
    EVENTS = "events"
    REPLIES = "replies"
    RECEIPTS = "receipts"
    COMMANDS = "commands"
    SENSORS = "sensors"
    ALERTS = "alerts"


# Number of segments after the prefix, and the name of each one.
_LAYOUT: dict[TopicKind, tuple[str, ...]] = {
    TopicKind.STATUS: ("site", "device"),
    TopicKind.HEALTH: ("site", "device"),
    TopicKind.EVENTS: ("site", "device", "event_kind"),
    TopicKind.REPLIES: ("site", "device", "command"),
    TopicKind.RECEIPTS: ("site", "device"),
    TopicKind.COMMANDS: ("site", "device", "command"),
    TopicKind.SENSORS: ("site", "shed", "bay"),
    TopicKind.ALERTS: ("recipient_kind", "recipient"),
}


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its kind and named segments."""

    kind: TopicKind
    segments: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.segments[name]


def is_segment(value: object) -> bool:
    """Whether ``value`` is a valid id for a topic segment (no exception: for hot paths)."""
    return isinstance(value, str) and _SEGMENT.match(value) is not None


def check_segment(value: str, name: str) -> str:
    """Validate one id used as a topic segment; raise :class:`ContractError` naming it."""
    if not is_segment(value):
        raise ContractError(
            f"{name}: {value!r} is not a valid id (1-64 of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit; no '/', '+', '#' or '$')"
        )
    return value


def _build(kind: TopicKind, *values: str, wildcards: bool = False) -> str:
    names = _LAYOUT[kind]
    for name, value in zip(names, values, strict=True):
        if not (wildcards and value == ANY):
            check_segment(value, name)
    return "/".join((PREFIX, kind.value, *values))


def status_topic(site: str, device: str) -> str:
    return _build(TopicKind.STATUS, site, device)


def health_topic(site: str, device: str) -> str:
    return _build(TopicKind.HEALTH, site, device)


def event_topic(site: str, device: str, kind: EventKind) -> str:
    return _build(TopicKind.EVENTS, site, device, EventKind(kind).value)


def reply_topic(site: str, device: str, command: Command) -> str:
    return _build(TopicKind.REPLIES, site, device, Command(command).value)


def receipt_topic(site: str, device: str) -> str:
    return _build(TopicKind.RECEIPTS, site, device)


def command_topic(site: str, device: str, command: Command) -> str:
    return _build(TopicKind.COMMANDS, site, device, Command(command).value)


def sensor_topic(site: str, shed: str, bay: str) -> str:
    return _build(TopicKind.SENSORS, site, shed, bay)


def alert_topic(recipient_kind: RecipientKind, recipient: str) -> str:
    return _build(TopicKind.ALERTS, RecipientKind(recipient_kind).value, recipient)


def topic_filter(kind: TopicKind, *values: str) -> str:
    """A subscription filter: ``values`` fill the first segments, ``+`` allowed; the rest
    match anything (``+``). Example: ``topic_filter(TopicKind.EVENTS)`` ->
    ``ringwatch/v1/events/+/+/+``."""
    names = _LAYOUT[kind]
    if len(values) > len(names):
        raise ContractError(f"{kind.value} topics have {len(names)} segments, got {len(values)}")
    filled = (*values, *([ANY] * (len(names) - len(values))))
    return _build(kind, *filled, wildcards=True)


def shared_filter(group: str, topic_filter_: str) -> str:
    """An MQTT shared subscription ``$share/<group>/<filter>`` for hub workers."""
    check_segment(group, "group")
    return f"$share/{group}/{topic_filter_}"


def parse_topic(topic: str) -> Topic:
    """Parse a concrete (wildcard-free) topic; raise :class:`ContractError` saying why not."""
    parts = topic.split("/")
    prefix_len = PREFIX_PARTS
    if "/".join(parts[:prefix_len]) != PREFIX:
        raise ContractError(f"topic {topic!r}: does not start with {PREFIX!r}")
    try:
        kind = TopicKind(parts[prefix_len] if len(parts) > prefix_len else "")
    except ValueError:
        raise ContractError(f"topic {topic!r}: unknown topic kind") from None
    names = _LAYOUT[kind]
    values = parts[prefix_len + 1 :]
    if len(values) != len(names):
        raise ContractError(
            f"topic {topic!r}: {kind.value} topics need {len(names)} segments "
            f"({'/'.join(names)}), got {len(values)}"
        )
    for name, value in zip(names, values, strict=True):
        check_segment(value, name)
    segments = dict(zip(names, values, strict=True))
    _check_enum_segments(topic, segments)
    return Topic(kind=kind, segments=segments)


def _check_enum_segments(topic: str, segments: dict[str, str]) -> None:
    enums: dict[str, type[StrEnum]] = {
        "event_kind": EventKind,
        "command": Command,
        "recipient_kind": RecipientKind,
    }
    for name, enum in enums.items():
        if name in segments and segments[name] not in {e.value for e in enum}:
            allowed = ", ".join(e.value for e in enum)
            raise ContractError(f"topic {topic!r}: {name} {segments[name]!r} not one of {allowed}")
