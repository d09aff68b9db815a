"""Zones, lines and rules on tiny literal tracks with injected time (nothing sleeps)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ringwatch.contract.colours import Ring
from ringwatch.contract.messages import Event
from ringwatch.contract.zones import CameraZones, Line, LineDirection, Zone, ZoneRole
from ringwatch.edge.rules import EventStamp, RulesConfig, ZoneRules
from ringwatch.edge.zones import LineCounter, PolygonZone, ZoneSet, points_in_polygon
from ringwatch.models.detections import Detections

W, H = 200, 100
STAMP = EventStamp(site="campus-north", device="box-1", camera="gate", width=W, height=H)
# Saturday 2026-11-28 10:00 UTC: closed under a weekday school-hours schedule.
SATURDAY = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
MONDAY = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)

SCHEDULES = {
    "school-hours": {
        "timezone": "Europe/London",
        "open": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:30", "end": "17:00"}],
    }
}


def tracked(*rows: tuple[int, float, float]) -> Detections:
    """Persons as (track id, foot x, foot y) in pixels; boxes 10 wide, 30 tall."""
    if not rows:
        return Detections.empty().with_columns(tracker_id=np.zeros(0, np.int64))
    arr = np.array(rows, np.float32)
    x, y = arr[:, 1], arr[:, 2]
    xyxy = np.stack([x - 5, y - 30, x + 5, y], axis=1).astype(np.float32)
    return Detections(
        xyxy=xyxy,
        confidence=np.full(len(arr), 0.9, np.float32),
        class_id=np.zeros(len(arr), np.int32),
        tracker_id=arr[:, 0].astype(np.int64),
    )


def summary(events: list[Event]) -> list[tuple[str, str, str | None, int | None]]:
    return [(e.kind.value, e.phase.value, e.zone_id, e.track_id) for e in events]


def left_half(**extra: object) -> dict[str, object]:
    return {"id": "left", "role": "inner", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], **extra}


def run(rules: ZoneRules, frames: list[Detections], start: dt.datetime, step_s: float = 1.0):  # type: ignore[no-untyped-def]
    events: list[list[Event]] = []
    for k, frame in enumerate(frames):
        events.append(rules.update(frame, start + dt.timedelta(seconds=k * step_s)))
    return events


def test_points_in_a_concave_polygon() -> None:
    # An L shape: the notch at the top right is outside.
    poly = np.array([[0, 0], [4, 0], [4, 2], [2, 2], [2, 4], [0, 4]], np.float32)
    pts = np.array([[1, 1], [3, 1], [3, 3], [1, 3], [5, 5], [-1, 1]], np.float32)
    assert points_in_polygon(pts, poly).tolist() == [True, True, False, True, False, False]


def test_persons_are_placed_by_their_feet_faces_by_their_centre() -> None:
    zone = Zone.model_validate(
        {"id": "z", "role": "outer", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
    )
    pz = PolygonZone.for_frame(zone, (W, H))
    person = tracked((1, 50, 60))  # box y 30..60: feet inside, centre (45) outside
    assert pz.trigger(person).tolist() == [True]
    assert pz.trigger(person, "center").tolist() == [False]


def test_nested_zones_take_the_deepest_ring_and_no_zone_takes_the_default() -> None:
    cfg = CameraZones.model_validate(
        {
            "default_ring": "perimeter",
            "zones": [
                {"id": "road", "role": "outer", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]},
                {
                    "id": "yard",
                    "role": "inner",
                    "polygon": [[0.4, 0], [0.6, 0], [0.6, 1], [0.4, 1]],
                },
                {
                    "id": "bikes",
                    "role": "shed",
                    "polygon": [[0.45, 0], [0.55, 0], [0.55, 1], [0.45, 1]],
                },
            ],
        }
    )
    zones = ZoneSet.for_frame(cfg, (W, H))
    people = tracked((1, 20, 50), (2, 100, 50))
    assert zones.rings(people) == [Ring.OUTER, Ring.INNER]
    inside = zones.membership(people)
    assert inside.tolist() == [[True, False, False], [True, True, True]]
    deepest = zones.deepest_zone(inside[1])
    assert deepest is not None and deepest.id == "yard"
    nowhere = ZoneSet.for_frame(CameraZones(default_ring=Ring.PERIMETER), (W, H))
    assert nowhere.rings(people) == [Ring.PERIMETER, Ring.PERIMETER]


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        (LineDirection.LEFT_TO_RIGHT, [False, True, False, False, False]),
        (LineDirection.RIGHT_TO_LEFT, [False, False, False, True, False]),
        (LineDirection.BOTH, [False, True, False, True, False]),
    ],
)
def test_line_counts_crossings_per_track_in_its_direction(
    direction: LineDirection, expected: list[bool]
) -> None:
    # A horizontal line at y=50 from x=20 to x=180 (a -> b points right; left is up).
    line = Line(id="gate", a=(0.1, 0.5), b=(0.9, 0.5), direction=direction)
    counter = LineCounter.for_frame(line, (W, H))
    got = []
    for y in (40, 60, 70, 45, 44):  # down across, stay, back up across, stay
        lr, rl = counter.trigger(tracked((7, 100, y)))
        got.append(bool(counter.counts(lr, rl)[0]))
    assert got == expected


def test_passing_beyond_the_end_of_a_gate_line_does_not_count() -> None:
    line = Line(id="gate", a=(0.1, 0.5), b=(0.5, 0.5))
    counter = LineCounter.for_frame(line, (W, H))
    counter.trigger(tracked((1, 150, 40)))
    lr, rl = counter.trigger(tracked((1, 150, 60)))  # x=150 is past b (x=100)
    assert not lr.any() and not rl.any()


def test_zone_start_is_debounced_and_end_follows_exit_frames() -> None:
    cfg = CameraZones.model_validate({"zones": [left_half(debounce_frames=3)]})
    rules = ZoneRules(cfg, STAMP, RulesConfig(exit_frames=2, update_every_s=None))
    inside, outside = tracked((4, 50, 50)), tracked((4, 150, 50))
    frames = [
        inside,
        inside,
        outside,
        inside,
        inside,
        inside,
        inside,
        outside,
        inside,
        outside,
        outside,
    ]
    got = [summary(e) for e in run(rules, frames, MONDAY)]
    start = [("zone", "start", "left", 4)]
    end = [("zone", "end", "left", 4)]
    assert got == [[], [], [], [], [], start, [], [], [], [], end]


def test_a_lost_track_ends_its_zone_presence() -> None:
    cfg = CameraZones.model_validate({"zones": [left_half(debounce_frames=1)]})
    rules = ZoneRules(cfg, STAMP, RulesConfig(exit_frames=3, update_every_s=None))
    frames = [tracked((1, 50, 50))] + [tracked()] * 3
    got = [summary(e) for e in run(rules, frames, MONDAY)]
    assert got == [[("zone", "start", "left", 1)], [], [], [("zone", "end", "left", 1)]]
    assert rules.update(tracked(), MONDAY) == []


def test_event_fields_follow_the_contract() -> None:
    cfg = CameraZones.model_validate({"zones": [left_half(debounce_frames=1)]})
    rules = ZoneRules(cfg, STAMP)
    (event,) = rules.update(tracked((9, 50, 99.5)), MONDAY)
    assert (event.site, event.device, event.camera) == ("campus-north", "box-1", "gate")
    assert event.ring is Ring.INNER and event.captured_at == MONDAY
    assert (event.frame_width, event.frame_height) == (W, H)
    assert event.boxes[0].xyxy() == pytest.approx((45, 69.5, 55, 99.5))
    assert event.scores == {"person": pytest.approx(0.9)}


@pytest.mark.parametrize(("when", "intrusion"), [(SATURDAY, True), (MONDAY, False)])
def test_entering_an_inner_zone_while_closed_is_an_intrusion(
    when: dt.datetime, intrusion: bool
) -> None:
    cfg = CameraZones.model_validate(
        {
            "schedules": SCHEDULES,
            "zones": [
                left_half(debounce_frames=2, schedule="school-hours", intrusion_when_closed=True)
            ],
        }
    )
    rules = ZoneRules(cfg, STAMP, RulesConfig(exit_frames=1, update_every_s=None))
    frames = [tracked((3, 50, 50))] * 2 + [tracked()]
    got = [summary(e) for e in run(rules, frames, when)]
    intrusion_start = [("intrusion", "start", "left", 3)] if intrusion else []
    intrusion_end = [("intrusion", "end", "left", 3)] if intrusion else []
    assert got == [
        [],
        [("zone", "start", "left", 3), *intrusion_start],
        [("zone", "end", "left", 3), *intrusion_end],
    ]


def test_dwelling_longer_than_the_limit_is_loitering_and_updates_come_periodically() -> None:
    cfg = CameraZones.model_validate({"zones": [left_half(debounce_frames=1, loiter_s=2.5)]})
    rules = ZoneRules(cfg, STAMP, RulesConfig(exit_frames=1, update_every_s=2.0))
    frames = [tracked((5, 50, 50))] * 5 + [tracked()]
    got = [summary(e) for e in run(rules, frames, MONDAY)]
    assert got == [
        [("zone", "start", "left", 5)],
        [],
        [("zone", "update", "left", 5)],
        [("loitering", "start", "left", 5)],  # 3 s > 2.5 s
        [("zone", "update", "left", 5)],
        [("zone", "end", "left", 5), ("loitering", "end", "left", 5)],
    ]


@pytest.mark.parametrize(("when", "kind"), [(SATURDAY, "intrusion"), (MONDAY, "line_crossing")])
def test_crossing_a_perimeter_line_while_closed_is_an_intrusion(
    when: dt.datetime, kind: str
) -> None:
    cfg = CameraZones.model_validate(
        {
            "schedules": SCHEDULES,
            "zones": [
                {
                    "id": "fence",
                    "role": "perimeter",
                    "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
                }
            ],
            "lines": [
                {
                    "id": "gate",
                    "a": [0.1, 0.5],
                    "b": [0.9, 0.5],
                    "direction": "left_to_right",
                    "schedule": "school-hours",
                }
            ],
        }
    )
    rules = ZoneRules(cfg, STAMP, RulesConfig(update_every_s=None))
    events = [
        e for es in run(rules, [tracked((2, 100, 40)), tracked((2, 100, 60))], when) for e in es
    ]
    crossings = [e for e in events if e.zone_id == "gate"]
    assert summary(crossings) == [(kind, "start", "gate", 2)]
    assert crossings[0].ring is Ring.PERIMETER
    # Walking back out (right to left) is not counted by a left_to_right line.
    back = rules.update(tracked((2, 100, 40)), when + dt.timedelta(seconds=5))
    assert [e for e in back if e.zone_id == "gate"] == []


def test_close_ends_every_open_presence_in_track_order() -> None:
    cfg = CameraZones.model_validate({"zones": [left_half(debounce_frames=1)]})
    rules = ZoneRules(cfg, STAMP)
    rules.update(tracked((8, 10, 50), (2, 20, 50)), MONDAY)
    assert summary(rules.close(MONDAY)) == [("zone", "end", "left", 2), ("zone", "end", "left", 8)]
    assert rules.close(MONDAY) == []


def test_untracked_detections_are_refused() -> None:
    rules = ZoneRules(CameraZones(), STAMP)
    with pytest.raises(ValueError, match="tracker_id"):
        rules.update(Detections.empty(), MONDAY)
    zone = Zone(id="x", role=ZoneRole.SHED, polygon=[(0, 0), (1, 0), (1, 1)])
    assert zone.role.ring is None
