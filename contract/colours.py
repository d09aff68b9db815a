"""Alert colours, ring depth, and the colour policy (data, not code).

One ordering is used everywhere: ``yellow < orange < red``. Rings are ordered from the road
inwards: ``outer < perimeter < inner``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Ranked(StrEnum):
    """A string enum ordered by ``rank``, not alphabetically (str's own order is replaced)."""

    @property
    def rank(self) -> int:
        raise NotImplementedError

    def _other_rank(self, other: object) -> int:
        if type(other) is not type(self) or not isinstance(other, _Ranked):
            raise TypeError(f"cannot compare {type(self).__name__} with {type(other).__name__}")
        return other.rank

    def __lt__(self, other: object) -> bool:
        return self.rank < self._other_rank(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= self._other_rank(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > self._other_rank(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= self._other_rank(other)


class Colour(_Ranked):
    """Alert colour; compare with ``<`` and ``max``: yellow < orange < red."""

    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        return _COLOUR_RANK[self]

    def raised(self, steps: int) -> Colour:
        """This colour moved ``steps`` up (or down), capped at red and floored at yellow."""
        rank = min(max(self.rank + steps, 0), len(_COLOURS) - 1)
        return _COLOURS[rank]


_COLOURS = (Colour.YELLOW, Colour.ORANGE, Colour.RED)
_COLOUR_RANK = {colour: rank for rank, colour in enumerate(_COLOURS)}


class Ring(_Ranked):
    """Campus ring, from the road inwards: outer < perimeter < inner."""

    OUTER = "outer"
    PERIMETER = "perimeter"
    INNER = "inner"

    @property
    def rank(self) -> int:
        return _RING_DEPTH[self]

    @property
    def depth(self) -> int:
        return _RING_DEPTH[self]


_RING_DEPTH = {Ring.OUTER: 0, Ring.PERIMETER: 1, Ring.INNER: 2}


class Tier(StrEnum):
    """Watch-list tier of a person; ``green`` means delisted and is never matched."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    GREEN = "green"


def deepest_ring(rings: Iterable[Ring], default: Ring) -> Ring:
    """The deepest of ``rings`` (nested zones: the deepest wins), or ``default`` if none."""
    return max(rings, default=default)


def highest_colour(colours: Iterable[Colour]) -> Colour | None:
    """The highest colour seen, or None when there are none."""
    return max(colours, default=None)


class ColourPolicy(BaseModel):
    """How a watch-list sighting gets its colour.

    Defaults: outer ring yellow, perimeter orange, inner red; a red-tier person raises the
    colour one step, capped at red. An incident keeps the highest colour it has seen.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_by_ring: dict[Ring, Colour] = Field(
        default_factory=lambda: {
            Ring.OUTER: Colour.YELLOW,
            Ring.PERIMETER: Colour.ORANGE,
            Ring.INNER: Colour.RED,
        },
        description="Base colour of a sighting in each ring.",
    )
    raise_by_tier: dict[Tier, int] = Field(
        default_factory=lambda: {Tier.RED: 1, Tier.ORANGE: 0, Tier.YELLOW: 0},
        description="Steps a person's tier raises the base colour (capped at red).",
    )

    @model_validator(mode="after")
    def _every_ring_has_a_colour(self) -> Self:
        missing = [ring.value for ring in Ring if ring not in self.base_by_ring]
        if missing:
            raise ValueError(f"base_by_ring: missing rings {missing}")
        if any(not -2 <= steps <= 2 for steps in self.raise_by_tier.values()):
            raise ValueError("raise_by_tier: steps must be between -2 and 2")
        return self

    def colour_for(self, ring: Ring, tier: Tier) -> Colour:
        """Colour of one sighting of a person of ``tier`` in ``ring``."""
        if tier is Tier.GREEN:
            raise ValueError("a delisted (green) person is never matched, so has no colour")
        return self.base_by_ring[ring].raised(self.raise_by_tier.get(tier, 0))
