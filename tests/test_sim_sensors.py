"""The shed sensor simulator: realistic healthy readings, each fault, and the CLI over MQTT."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable

import pytest

from ringwatch.cli import main
from ringwatch.contract.messages import SensorReading, decode
from ringwatch.contract.topics import TopicKind, parse_topic, topic_filter
from ringwatch.edge.mqtt import MqttClient
from ringwatch.edge.sensors_sim import Fault, FaultKind, SensorSimulator
from ringwatch.errors import ConfigError
from tests.services import Broker, free_port

T0 = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)
BAYS = ["b1", "b2", "b3", "b4"]


def sim(faults: list[Fault], seed: int = 7) -> SensorSimulator:
    return SensorSimulator("campus", "shed1", BAYS, faults, random.Random(seed), T0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_same_seed_same_readings_and_one_reading_per_bay() -> None:
    a, b = sim([]), sim([])
    ra, rb = a.readings(at(1)), b.readings(at(1))
    assert ra == rb
    assert [r.bay for r in ra] == BAYS
    assert all(r.measured_at == at(1) and r.shed == "shed1" for r in ra)
    assert sim([], seed=8).readings(at(1)) != ra


def test_healthy_bays_stay_in_realistic_ranges() -> None:
    s = sim([], seed=3)
    readings = [r for t in range(200) for r in s.readings(at(t))]
    assert all(46.0 <= r.voltage_v <= 50.0 for r in readings)
    assert all(0.0 <= r.current_a <= 5.5 for r in readings)
    assert all(19.0 <= r.temperature_c <= 36.0 for r in readings)
    assert len({r.current_a for r in readings}) > 10  # noisy, not constant


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        (FaultKind.OVERCURRENT, lambda r: r.current_a >= 14.0),
        (FaultKind.VOLTAGE_SAG, lambda r: r.voltage_v <= 40.0),
        (FaultKind.OVERHEATING, lambda r: r.temperature_c >= 60.0),
    ],
)
def test_a_fault_hits_only_its_bay_and_only_after_its_delay(
    kind: FaultKind, check: Callable[[SensorReading], bool]
) -> None:
    s = sim([Fault("b2", kind, after_s=10.0)])
    before = {r.bay: r for r in s.readings(at(9.5))}
    assert not any(check(r) for r in before.values())
    later = {r.bay: r for r in s.readings(at(40.0))}
    assert check(later["b2"])
    assert not any(check(later[b]) for b in ("b1", "b3", "b4"))


def test_overheating_climbs_over_time() -> None:
    s = sim([Fault("b1", FaultKind.OVERHEATING)])
    temps = [s.readings(at(t))[0].temperature_c for t in (0, 10, 20, 30, 60, 120)]
    assert temps == sorted(temps)
    assert temps[-1] == pytest.approx(95.0, abs=0.5)


def test_fault_specs_are_parsed_and_mistakes_named() -> None:
    assert Fault.parse("b2:overheating@30") == Fault("b2", FaultKind.OVERHEATING, 30.0)
    assert Fault.parse("b1:voltage_sag") == Fault("b1", FaultKind.VOLTAGE_SAG, 0.0)
    for bad in ("b2:melting", "b2", "b2:overcurrent@soon", "b2:overcurrent@-1"):
        with pytest.raises(ConfigError, match="BAY:KIND"):
            Fault.parse(bad)
    with pytest.raises(ConfigError, match="unknown bays \\['b9'\\]"):
        sim([Fault("b9", FaultKind.OVERCURRENT)])


def test_cli_rejects_a_bad_fault_with_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sim", "sensors", "--site", "s1", "--shed", "a", "--fault", "b1:fire"]
    assert main(args) == 2
    assert "expected BAY:KIND" in capsys.readouterr().err


def test_cli_publishes_readings_with_a_fault_over_a_real_broker(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[tuple[str, SensorReading]] = []
    sub = MqttClient(broker.url, f"test-sensors-{free_port()}", session_expiry_s=0)
    sub.subscribe(
        topic_filter(TopicKind.SENSORS, "simsite"),
        lambda m: got.append((m.topic, decode(SensorReading, m.payload))),
    )
    sub.start()
    try:
        assert sub.wait_subscribed(5)
        args = ["sim", "sensors", "--broker", broker.url, "--site", "simsite", "--shed", "shedA"]
        args += ["--bays", "3", "--interval", "0.05", "--count", "2", "--seed", "1"]
        assert main([*args, "--fault", "b2:overcurrent"]) == 0
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.close()
    assert len(got) == 6
    by_bay = {parse_topic(t)["bay"]: r for t, r in got}
    assert sorted(by_bay) == ["b1", "b2", "b3"]
    assert by_bay["b2"].current_a >= 14.0 and by_bay["b1"].current_a <= 5.5
    assert all(parse_topic(t)["shed"] == "shedA" == r.shed for t, r in got)
    assert capsys.readouterr().out.count("\n") == 2  # one line per round
