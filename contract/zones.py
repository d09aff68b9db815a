"""Per-camera zone configuration: rings, shed areas, fence/gate lines, privacy masks, schedules.

These models travel over the wire (the hub pushes a :class:`CameraZones` to a device) and are
loaded from the edge's site file, so both sides validate with the same code. Coordinates are
normalised to the image: ``0 <= x, y <= 1``, origin top-left.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ringwatch.contract.colours import Ring

Ident = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Id: 1-64 of A-Za-z0-9_.-"),
]
Point = tuple[float, float]


class ZoneRole(StrEnum):
    """What a zone is: one of the three campus rings, or an e-bike shed area."""

    OUTER = "outer"
    PERIMETER = "perimeter"
    INNER = "inner"
    SHED = "shed"

    @property
    def ring(self) -> Ring | None:
        return None if self is ZoneRole.SHED else Ring(self.value)


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAYS = list(Weekday)


def _check_point(point: Point) -> Point:
    x, y = point
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"point ({x}, {y}) is outside the image: need 0 <= x, y <= 1")
    return point


def _polygon_area(points: list[Point]) -> float:
    twice = sum(
        x1 * y2 - x2 * y1
        for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True)
    )
    return abs(twice) / 2.0


def _check_polygon(points: list[Point]) -> list[Point]:
    if len(points) < 3:
        raise ValueError(f"need >= 3 points, got {len(points)}")
    for point in points:
        _check_point(point)
    if _polygon_area(points) < 1e-6:
        raise ValueError("polygon has no area (points are repeated or on one line)")
    return points


Polygon = Annotated[list[Point], AfterValidator(_check_polygon)]


class OpenWindow(BaseModel):
    """A weekly window during which a site is open (rules that need 'closed' are off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Weekday] = Field(min_length=1, description="Weekdays this window applies to.")
    start: dt.time = Field(description="Local start time, e.g. 07:30.")
    end: dt.time = Field(description="Local end time, after start, e.g. 16:30.")

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self


class Schedule(BaseModel):
    """When a site is open; closed outside the windows and on holidays (time zone aware)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(description="IANA time zone, e.g. Europe/London.")
    open: list[OpenWindow] = Field(default_factory=list, description="Weekly open windows.")
    holidays: list[dt.date] = Field(default_factory=list, description="Closed all day.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected e.g. Europe/London)") from None
        return value

    def is_open(self, when: dt.datetime) -> bool:
        """True when ``when`` (timezone-aware) falls in an open window and is no holiday."""
        if when.tzinfo is None:
            raise ValueError("is_open needs a timezone-aware datetime")
        local = when.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        day = _WEEKDAYS[local.weekday()]
        now = local.time().replace(tzinfo=None)
        return any(day in w.days and w.start <= now < w.end for w in self.open)


class Zone(BaseModel):
    """A polygon zone tagged with its ring or role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident
    role: ZoneRole = Field(description="outer, perimeter, inner (campus rings) or shed.")
    polygon: Polygon = Field(description="Normalised polygon, >= 3 points.")
    schedule: str | None = Field(
        default=None, description="Name of a schedule; intrusion is raised while it is closed."
    )
    loiter_s: float | None = Field(
        default=None, gt=0, le=86_400, description="Dwell longer than this raises loitering."
    )
    intrusion_when_closed: bool = Field(
        default=False, description="Entering while the schedule says closed raises intrusion."
    )
    debounce_frames: int = Field(
        default=3, ge=1, le=100, description="Frames a person must stay in before 'start'."
    )


class LineDirection(StrEnum):
    """Which crossing of a directed line counts: from its left to its right side, or either."""

    LEFT_TO_RIGHT = "left_to_right"
    RIGHT_TO_LEFT = "right_to_left"
    BOTH = "both"


class Line(BaseModel):
    """A fence or gate line from ``a`` to ``b``; 'left' is as seen walking from a to b."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident
    a: Point
    b: Point
    direction: LineDirection = Field(default=LineDirection.BOTH, description="Which way counts.")
    schedule: str | None = Field(default=None, description="Only raise while it is closed.")

    @model_validator(mode="after")
    def _distinct_ends(self) -> Self:
        _check_point(self.a)
        _check_point(self.b)
        if abs(self.a[0] - self.b[0]) + abs(self.a[1] - self.b[1]) < 1e-4:
            raise ValueError("line ends a and b are the same point")
        return self


class Mask(BaseModel):
    """A privacy mask: nothing is detected there, and it is blurred in every image sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident
    polygon: Polygon = Field(description="Normalised polygon, >= 3 points.")


class CameraZones(BaseModel):
    """Everything drawn on one camera; swapped in whole when the hub pushes a new one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_ring: Ring = Field(
        default=Ring.OUTER, description="Ring of a detection that falls in no zone."
    )
    zones: list[Zone] = Field(default_factory=list)
    lines: list[Line] = Field(default_factory=list)
    masks: list[Mask] = Field(default_factory=list)
    schedules: dict[str, Schedule] = Field(
        default_factory=dict, description="Named schedules the zones and lines refer to."
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        ids = [z.id for z in self.zones] + [ln.id for ln in self.lines] + [m.id for m in self.masks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"ids must be unique within a camera, repeated: {dupes}")
        items: list[Zone | Line] = [*self.zones, *self.lines]
        for item in items:
            if item.schedule is not None and item.schedule not in self.schedules:
                known = sorted(self.schedules) or "none defined"
                raise ValueError(
                    f"{item.id}: schedule {item.schedule!r} is not defined (known: {known})"
                )
        return self
