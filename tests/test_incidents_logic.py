"""Pure incident logic, table-driven: colours and escalation, stage deadlines and late
events, missed stages, retry backoff, technical findings. Time is passed in; nothing sleeps."""

from __future__ import annotations

import datetime as dt

import pytest

from ringwatch.contract.colours import Colour, ColourPolicy, Ring, Tier
from ringwatch.contract.messages import AlertLevel
from ringwatch.hub.incident_config import IncidentsConfig, RetryPolicy
from ringwatch.hub.incidents import TechnicalWatch, higher_level, watchlist_step
from ringwatch.hub.stages import (
    IncidentKind,
    StageOutcome,
    StagePlans,
    StageState,
    deadlines,
    is_missed,
    outcome,
)

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
POLICY = ColourPolicy()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("tier", "ring", "expected"),
    [
        (Tier.YELLOW, Ring.OUTER, Colour.YELLOW),
        (Tier.YELLOW, Ring.PERIMETER, Colour.ORANGE),
        (Tier.ORANGE, Ring.INNER, Colour.RED),
        (Tier.RED, Ring.OUTER, Colour.ORANGE),  # red tier raises one step
        (Tier.RED, Ring.PERIMETER, Colour.RED),
        (Tier.RED, Ring.INNER, Colour.RED),  # capped
    ],
)
def test_first_sighting_colour_comes_from_the_policy(
    tier: Tier, ring: Ring, expected: Colour
) -> None:
    step = watchlist_step(POLICY, tier, ring, None, None)
    assert (step.colour, step.ring, step.deeper, step.raised) == (expected, ring, False, False)


@pytest.mark.parametrize(
    ("seen", "then", "colour", "deeper", "raised"),
    [
        (Ring.OUTER, Ring.PERIMETER, Colour.ORANGE, True, True),
        (Ring.PERIMETER, Ring.INNER, Colour.RED, True, True),
        (Ring.INNER, Ring.OUTER, Colour.RED, False, False),  # keeps the highest colour
        (Ring.PERIMETER, Ring.PERIMETER, Colour.ORANGE, False, False),
    ],
)
def test_an_incident_keeps_its_highest_colour_and_escalates_going_deeper(
    seen: Ring, then: Ring, colour: Colour, deeper: bool, raised: bool
) -> None:
    first = watchlist_step(POLICY, Tier.YELLOW, seen, None, None)
    step = watchlist_step(POLICY, Tier.YELLOW, then, first.colour, first.ring)
    assert (step.colour, step.deeper, step.raised) == (colour, deeper, raised)
    assert step.ring == max(seen, then)


def test_the_policy_is_data() -> None:
    policy = ColourPolicy(raise_by_tier={Tier.RED: 2, Tier.ORANGE: 1, Tier.YELLOW: 0})
    assert watchlist_step(policy, Tier.ORANGE, Ring.OUTER, None, None).colour is Colour.ORANGE


def test_shed_levels_only_go_up() -> None:
    assert higher_level(None, AlertLevel.WARNING) is AlertLevel.WARNING
    assert higher_level(AlertLevel.WARNING, AlertLevel.ALARM) is AlertLevel.ALARM
    assert higher_level(AlertLevel.ALARM, AlertLevel.WARNING) is AlertLevel.ALARM


def test_default_stages_are_one_three_five_minutes() -> None:
    plans = StagePlans()
    for kind, names in [
        (IncidentKind.WATCHLIST, ["acknowledged", "patrol_on_scene", "station_on_scene"]),
        (IncidentKind.INTRUSION, ["acknowledged", "patrol_on_scene", "station_on_scene"]),
        (IncidentKind.SHED, ["acknowledged", "onsite_check", "fire_service_called"]),
    ]:
        got = deadlines(plans, kind, T0, late=False)
        assert [d.name for d in got] == names
        assert [d.due_at for d in got] == [at(60), at(180), at(300)]


def test_an_event_older_than_the_longest_deadline_is_late_and_gets_no_timers() -> None:
    plans = StagePlans()
    assert not plans.is_late(IncidentKind.SHED, at(0), at(300))
    assert plans.is_late(IncidentKind.SHED, at(0), at(301))
    assert all(d.due_at is None for d in deadlines(plans, IncidentKind.SHED, at(301), late=True))


def test_stage_plans_are_validated() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        StagePlans.model_validate(
            {"plans": {"shed": [{"name": "a", "within_s": 60}, {"name": "b", "within_s": 30}]}}
        )


@pytest.mark.parametrize(
    ("due", "done", "missed", "now", "is_due", "result"),
    [
        (60, None, None, 59, False, StageOutcome.PENDING),
        (60, None, None, 61, True, StageOutcome.MISSED),
        (60, 30, None, 61, False, StageOutcome.MET),
        (60, 90, 61, 120, False, StageOutcome.MISSED),
        (60, None, 61, 120, False, StageOutcome.MISSED),  # escalates once only
        (None, None, None, 9999, False, StageOutcome.UNTIMED),
    ],
)
def test_missed_and_met_stages(
    due: float | None,
    done: float | None,
    missed: float | None,
    now: float,
    is_due: bool,
    result: StageOutcome,
) -> None:
    def t(s: float | None) -> dt.datetime | None:
        return None if s is None else at(s)

    state = StageState(t(due), t(done), t(missed))
    assert is_missed(state, at(now)) is is_due
    assert outcome(state, at(now)) is result


def test_webhook_backoff_grows_and_is_capped() -> None:
    retry = RetryPolicy(first_s=2, factor=2, max_s=10)
    assert [retry.wait_after(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_supervisors_default_per_station() -> None:
    config = IncidentsConfig(supervisors={"st-a": ["sgt-a"]})
    assert config.supervisors_of("st-a") == ["sgt-a"]
    assert config.supervisors_of("st-b") == ["st-b-supervisors"]


def _health(at_s: float, depth: int, camera_online: bool = True) -> dict[str, object]:
    return {
        "at": at(at_s).isoformat(),
        "outbox_depth": depth,
        "cameras": [{"camera": "gate", "online": camera_online}],
    }


def test_technical_watch_finds_offline_devices_cameras_and_growing_outboxes() -> None:
    watch = TechnicalWatch(dt.timedelta(seconds=300), rising_samples=3)

    def problems(last_seen: float, health: dict[str, object], now: float) -> set[str]:
        found = watch.observe("s", "box", at(last_seen), health, at(now))
        return {f"{f.kind.value}:{f.camera or ''}" for f in found if not f.resolved}

    assert problems(0, _health(0, 0), 10) == set()
    assert problems(0, _health(0, 0), 301) == {"device_offline:"}
    assert problems(400, _health(400, 0, camera_online=False), 400) == set()  # just went off
    assert problems(700, _health(700, 0, camera_online=False), 701) == {"camera_offline:gate"}
    assert problems(710, _health(710, 5), 710) == set()  # 0 -> 5: two samples rising
    assert problems(720, _health(720, 9), 720) == {"outbox_growing:"}  # 0, 5, 9
    assert problems(720, _health(720, 9), 725) == {"outbox_growing:"}  # same heartbeat
    assert problems(730, _health(730, 9), 730) == set()  # stopped growing
