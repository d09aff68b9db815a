from __future__ import annotations

import pytest
from pydantic import ValidationError

from ringwatch.contract.colours import (
    Colour,
    ColourPolicy,
    Ring,
    Tier,
    deepest_ring,
    highest_colour,
)


def test_one_colour_order_everywhere() -> None:
    assert Colour.YELLOW < Colour.ORANGE < Colour.RED
    assert sorted([Colour.RED, Colour.YELLOW, Colour.ORANGE]) == [
        Colour.YELLOW,
        Colour.ORANGE,
        Colour.RED,
    ]
    assert max(Colour.ORANGE, Colour.RED, Colour.YELLOW) is Colour.RED
    assert Colour.RED > Colour.ORANGE >= Colour.ORANGE > Colour.YELLOW
    assert Ring.INNER > Ring.PERIMETER > Ring.OUTER and Ring.OUTER <= Ring.OUTER
    with pytest.raises(TypeError, match="cannot compare Colour with Ring"):
        _ = Colour.RED < Ring.INNER
    assert highest_colour([]) is None
    assert highest_colour([Colour.YELLOW, Colour.ORANGE]) is Colour.ORANGE


@pytest.mark.parametrize(
    ("ring", "tier", "expected"),
    [
        (Ring.OUTER, Tier.YELLOW, Colour.YELLOW),
        (Ring.OUTER, Tier.ORANGE, Colour.YELLOW),
        (Ring.OUTER, Tier.RED, Colour.ORANGE),
        (Ring.PERIMETER, Tier.YELLOW, Colour.ORANGE),
        (Ring.PERIMETER, Tier.RED, Colour.RED),
        (Ring.INNER, Tier.YELLOW, Colour.RED),
        (Ring.INNER, Tier.RED, Colour.RED),  # capped at red
    ],
)
def test_default_policy(ring: Ring, tier: Tier, expected: Colour) -> None:
    assert ColourPolicy().colour_for(ring, tier) is expected


def test_delisted_people_have_no_colour() -> None:
    with pytest.raises(ValueError, match="delisted"):
        ColourPolicy().colour_for(Ring.INNER, Tier.GREEN)


def test_deepest_ring_wins_and_default_applies() -> None:
    assert deepest_ring([Ring.OUTER, Ring.INNER, Ring.PERIMETER], Ring.OUTER) is Ring.INNER
    assert deepest_ring([], Ring.PERIMETER) is Ring.PERIMETER


def test_policy_is_data() -> None:
    policy = ColourPolicy.model_validate(
        {
            "base_by_ring": {"outer": "orange", "perimeter": "orange", "inner": "red"},
            "raise_by_tier": {"red": 2},
        }
    )
    assert policy.colour_for(Ring.OUTER, Tier.RED) is Colour.RED
    assert policy.colour_for(Ring.OUTER, Tier.YELLOW) is Colour.ORANGE
    with pytest.raises(ValidationError, match="missing rings"):
        ColourPolicy.model_validate({"base_by_ring": {"outer": "red"}})
    with pytest.raises(ValidationError, match="between -2 and 2"):
        ColourPolicy.model_validate({"raise_by_tier": {"red": 5}})
