"""Incidents: correlation, colour, human confirmation, response stages and escalation.

- Watch-list: the sightings of one person at one site, each within ``window_s`` of the
  last, form one incident with a trajectory (camera, ring, time). Each sighting's colour is
  ``ColourPolicy.colour_for(ring, tier)``; the incident keeps the highest, and is marked
  *escalating* when the person goes deeper than before. A new one is routed at once as
  *unconfirmed*, with the evidence (live crop, enrolled photo, similarity, tier, reason, case
  reference). Its first stage is a human's confirm or reject (reason kept); nothing calls it
  confirmed before a person has.
- Intrusion and loitering alerts form one incident per camera and kind within the window,
  linked to identified persons seen on the same camera around that time.
- Shed alerts (warning/alarm, fused on the edge) form one incident per shed camera within
  the window, keeping the highest level, routed to the site's property manager.
- Technical: a device or camera offline longer than N minutes, an outbox that keeps growing.

Timers run from the hub's creation of the incident; an event older than the longest
deadline makes a *late* incident without timers. A missed deadline escalates to the
station's supervisors. :meth:`IncidentService.on_stored` runs inside the ingest transaction
(so an event and its incident commit together); :meth:`IncidentService.tick` runs the timers.

The package, by responsibility: :mod:`.correlation` (events and sightings into incidents),
:mod:`.persons` (identified persons linked to incidents), :mod:`.decisions` (confirm,
reject, steps, close), :mod:`.timers` (missed stages escalated), :mod:`.technical` and
:mod:`.watch` (devices offline, outbox rising, tampering), :mod:`.colour` (the colour
step and alert levels) and :mod:`.base` (statuses, errors, the incident-row primitives).
"""

from __future__ import annotations

from ringwatch.hub.incidents.base import (
    INCIDENTS,
    TIMERS,
    IncidentBase,
    IncidentError,
    Status,
    UnknownStage,
    active_statuses,
)
from ringwatch.hub.incidents.colour import (
    LEVEL_COLOUR,
    ColourStep,
    higher_level,
    policy_colour,
    watchlist_step,
)
from ringwatch.hub.incidents.correlation import Correlation, correlation_locks
from ringwatch.hub.incidents.decisions import Decisions
from ringwatch.hub.incidents.technical import tamper_finding
from ringwatch.hub.incidents.timers import Timers
from ringwatch.hub.incidents.watch import Finding, TechnicalWatch

__all__ = [
    "INCIDENTS",
    "LEVEL_COLOUR",
    "TIMERS",
    "ColourStep",
    "Finding",
    "IncidentBase",
    "IncidentError",
    "IncidentService",
    "Status",
    "TechnicalWatch",
    "UnknownStage",
    "active_statuses",
    "correlation_locks",
    "higher_level",
    "policy_colour",
    "tamper_finding",
    "watchlist_step",
]


class IncidentService(Correlation, Decisions, Timers):
    """Creates and updates incidents and their deliveries; all in the caller's session."""
