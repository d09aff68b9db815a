"""Simulated e-bike shed sensors: realistic bay readings with injectable faults.

Healthy bays sit near a 48 V pack (46.5-50 V), charge at 0-5 A (some bays idle at 0 A) and
run at 20-35 °C, each with a little noise. A fault takes over one bay after ``after_s``:

- ``overcurrent``: 14-18 A (a charger or cell short);
- ``voltage_sag``: 36-40 V (a failing pack under load);
- ``overheating``: temperature climbing 1.5 °C/s from the bay's normal level to ~95 °C.

:class:`SensorSimulator` is pure and seeded (its random generator is passed in); publishing
is the CLI's job (``ringwatch sim sensors``).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from enum import StrEnum

from ringwatch.contract.messages import SensorReading
from ringwatch.errors import ConfigError

NOMINAL_V = 48.0
OVERCURRENT_A = (14.0, 18.0)
SAG_V = (36.0, 40.0)
HEAT_RATE_C_PER_S = 1.5
MAX_HEAT_C = 95.0


class FaultKind(StrEnum):
    OVERCURRENT = "overcurrent"
    VOLTAGE_SAG = "voltage_sag"
    OVERHEATING = "overheating"


@dataclass(frozen=True, slots=True)
class Fault:
    bay: str
    kind: FaultKind
    after_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``BAY:KIND[@AFTER_S]``, e.g. ``b2:overheating@30``."""
        bay, _, rest = text.partition(":")
        kind, _, after = rest.partition("@")
        try:
            after_s = float(after) if after else 0.0
            if not 0.0 <= after_s < float("inf"):
                raise ValueError(after)
            return cls(bay, FaultKind(kind), after_s)
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ConfigError(
                f"fault {text!r}: expected BAY:KIND[@AFTER_S] with KIND one of {kinds}"
            ) from None


@dataclass(frozen=True, slots=True)
class _Bay:
    name: str
    current_a: float
    temperature_c: float


class SensorSimulator:
    """Readings for every bay of one shed at a given time."""

    def __init__(
        self,
        site: str,
        shed: str,
        bays: list[str],
        faults: list[Fault],
        rng: random.Random,
        start: dt.datetime,
    ) -> None:
        unknown = sorted({f.bay for f in faults} - set(bays))
        if unknown:
            raise ConfigError(f"faults name unknown bays {unknown}; bays are {bays}")
        self.site = site
        self.shed = shed
        self._faults = {f.bay: f for f in faults}
        self._rng = rng
        self._start = start
        self._bays = [self._new_bay(b) for b in bays]

    def _new_bay(self, name: str) -> _Bay:
        charging = self._rng.random() < 0.75
        current = self._rng.uniform(1.0, 5.0) if charging else 0.0
        return _Bay(name, current, 22.0 + 2.0 * current + self._rng.uniform(-1, 1))

    def readings(self, now: dt.datetime) -> list[SensorReading]:
        elapsed = (now - self._start).total_seconds()
        return [self._reading(bay, now, elapsed) for bay in self._bays]

    def _reading(self, bay: _Bay, now: dt.datetime, elapsed: float) -> SensorReading:
        noise = self._rng.gauss
        current = max(0.0, bay.current_a + (noise(0, 0.05) if bay.current_a else 0.0))
        voltage = NOMINAL_V + noise(0, 0.3) - 0.1 * current
        temp = bay.temperature_c + noise(0, 0.2)
        fault = self._faults.get(bay.name)
        if fault is not None and elapsed >= fault.after_s:
            since = elapsed - fault.after_s
            if fault.kind is FaultKind.OVERCURRENT:
                current = self._rng.uniform(*OVERCURRENT_A)
            elif fault.kind is FaultKind.VOLTAGE_SAG:
                voltage = self._rng.uniform(*SAG_V)
            else:
                temp = min(MAX_HEAT_C, temp + 10.0 + HEAT_RATE_C_PER_S * since)
        return SensorReading(
            site=self.site,
            shed=self.shed,
            bay=bay.name,
            current_a=round(current, 2),
            voltage_v=round(min(max(voltage, 0.0), 1000.0), 2),
            temperature_c=round(temp, 1),
            measured_at=now,
        )
