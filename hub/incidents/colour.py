"""Colour of incidents: the watch-list colour step, alert levels, the policy's colour."""

from __future__ import annotations

from dataclasses import dataclass

from ringwatch.contract.colours import Colour, ColourPolicy, Ring, Tier
from ringwatch.contract.messages import AlertLevel

LEVEL_COLOUR = {AlertLevel.WARNING: Colour.ORANGE, AlertLevel.ALARM: Colour.RED}


_LEVEL_RANK = {AlertLevel.WARNING: 0, AlertLevel.ALARM: 1}


@dataclass(frozen=True, slots=True)
class ColourStep:
    """The outcome of adding one sighting to a watch-list incident."""

    colour: Colour
    ring: Ring
    deeper: bool
    raised: bool


def watchlist_step(
    policy: ColourPolicy, tier: Tier, ring: Ring, colour: Colour | None, deepest: Ring | None
) -> ColourStep:
    """Colour and ring of an incident after a sighting of a ``tier`` person in ``ring``."""
    seen = policy.colour_for(ring, tier)
    new_colour = seen if colour is None else max(colour, seen)
    new_ring = ring if deepest is None else max(deepest, ring)
    return ColourStep(
        colour=new_colour,
        ring=new_ring,
        deeper=deepest is not None and ring > deepest,
        raised=colour is not None and new_colour > colour,
    )


def higher_level(old: AlertLevel | None, new: AlertLevel) -> AlertLevel:
    return new if old is None or _LEVEL_RANK[new] > _LEVEL_RANK[old] else old


def policy_colour(policy: ColourPolicy, ring: Ring, tier: str) -> str | None:
    try:
        return policy.colour_for(ring, Tier(tier)).value
    except ValueError:
        return None
