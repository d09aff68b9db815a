from __future__ import annotations

import pytest

from ringwatch.contract import topics as t
from ringwatch.contract.errors import ContractError


@pytest.mark.parametrize(
    ("topic", "kind", "segments"),
    [
        (t.status_topic("s1", "d1"), t.TopicKind.STATUS, {"site": "s1", "device": "d1"}),
        (t.health_topic("s1", "d1"), t.TopicKind.HEALTH, {"site": "s1", "device": "d1"}),
        (
            t.event_topic("s1", "d1", t.EventKind.FACE),
            t.TopicKind.EVENTS,
            {"site": "s1", "device": "d1", "event_kind": "face"},
        ),
        (
            t.sensor_topic("s1", "shed-a", "bay.3"),
            t.TopicKind.SENSORS,
            {"site": "s1", "shed": "shed-a", "bay": "bay.3"},
        ),
        (
            t.alert_topic(t.RecipientKind.STATION, "central"),
            t.TopicKind.ALERTS,
            {"recipient_kind": "station", "recipient": "central"},
        ),
        (t.receipt_topic("s1", "d1"), t.TopicKind.RECEIPTS, {"site": "s1", "device": "d1"}),
        (
            t.command_topic("s1", "d1", t.Command.SNAPSHOT),
            t.TopicKind.COMMANDS,
            {"site": "s1", "device": "d1", "command": "snapshot"},
        ),
        (
            t.reply_topic("s1", "d1", t.Command.ZONE_CONFIG),
            t.TopicKind.REPLIES,
            {"site": "s1", "device": "d1", "command": "zone_config"},
        ),
    ],
)
def test_built_topics_parse_back(topic: str, kind: t.TopicKind, segments: dict[str, str]) -> None:
    assert topic.startswith("ringwatch/v1/")
    parsed = t.parse_topic(topic)
    assert parsed.kind is kind
    assert parsed.segments == segments


def test_event_topic_layout_is_stable() -> None:
    assert (
        t.event_topic("campus", "box1", t.EventKind.SHED) == "ringwatch/v1/events/campus/box1/shed"
    )


@pytest.mark.parametrize("bad", ["+", "#", "a/b", "", "$SYS", "a b", "-lead", "x" * 65, "é"])
def test_publish_topics_refuse_wildcards_and_bad_ids(bad: str) -> None:
    with pytest.raises(ContractError, match="site"):
        t.status_topic(bad, "d1")


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("other/v1/status/s/d", "does not start with"),
        ("ringwatch/v2/status/s/d", "does not start with"),
        ("ringwatch/v1/nope/s/d", "unknown topic kind"),
        ("ringwatch/v1", "unknown topic kind"),
        ("ringwatch/v1/status/s", "need 2 segments"),
        ("ringwatch/v1/status/s/d/x", "need 2 segments"),
        ("ringwatch/v1/events/s/d/unknown", "event_kind 'unknown' not one of"),
        ("ringwatch/v1/commands/s/d/reboot", "command 'reboot' not one of"),
        ("ringwatch/v1/alerts/pope/x", "recipient_kind 'pope' not one of"),
        ("ringwatch/v1/status/+/d", "site"),
        ("ringwatch/v1/health/s/#", "device"),
    ],
)
def test_parse_rejects_malformed_topics(topic: str, why: str) -> None:
    with pytest.raises(ContractError, match=why):
        t.parse_topic(topic)


def test_filters_allow_wildcards_and_shared_groups() -> None:
    assert t.topic_filter(t.TopicKind.EVENTS) == "ringwatch/v1/events/+/+/+"
    assert t.topic_filter(t.TopicKind.RECEIPTS, "s1", "d1") == "ringwatch/v1/receipts/s1/d1"
    assert (
        t.shared_filter("hub", t.topic_filter(t.TopicKind.EVENTS))
        == "$share/hub/ringwatch/v1/events/+/+/+"
    )
    with pytest.raises(ContractError, match="segments"):
        t.topic_filter(t.TopicKind.STATUS, "a", "b", "c")
