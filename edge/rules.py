"""Zone rules for one camera: tracked persons in, zones and over lines -> contract events.

- ``zone``: each (track, zone) pair yields ``start`` once the track has been inside for the
  zone's ``debounce_frames`` frames in a row, ``update`` every ``update_every_s`` while it
  stays, and ``end`` once it has been outside (or not seen: lost) for ``exit_frames`` frames.
- ``intrusion``: a track inside a zone with ``intrusion_when_closed`` while the zone's schedule
  says closed (no schedule: always closed); ends with the zone presence. A track crossing a
  line in its counted direction while the line's schedule is closed (or it has none) is an
  intrusion too; the same crossing while open is a ``line_crossing``. Crossings are instants:
  one ``start`` event each.
- ``loitering``: dwell in a zone with ``loiter_s`` longer than that; ends with the presence.

Time comes from the frames (``at`` = capture time), so nothing here reads a clock or sleeps.
Pure logic: numpy and the contract only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ringwatch.contract.colours import Ring
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Box, Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.contract.zones import CameraZones, Line, Zone
from ringwatch.edge.tunables import (  # re-exported: the stage's own settings
    RulesConfig as RulesConfig,
)
from ringwatch.edge.zones import LineCounter, ZoneSet
from ringwatch.models.detections import Detections

FORGET_AFTER_FRAMES = 300


@dataclass(frozen=True, slots=True)
class EventStamp:
    """What every event of one camera shares: who sent it and the frame size of its boxes."""

    site: str
    device: str
    camera: str
    width: int
    height: int

    def box(self, xyxy: Any, label: str = "person", score: float | None = None) -> Box:
        """A contract box clipped to the frame (detectors overshoot the edges slightly)."""
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        x1, x2 = min(max(x1, 0.0), self.width - 1.0), min(max(x2, 1.0), float(self.width))
        y1, y2 = min(max(y1, 0.0), self.height - 1.0), min(max(y2, 1.0), float(self.height))
        x2, y2 = max(x2, x1 + 1.0), max(y2, y1 + 1.0)
        clipped = None if score is None else min(max(score, 0.0), 1.0)
        return Box(x1=x1, y1=y1, x2=x2, y2=y2, label=label, score=clipped)

    def event(self, kind: EventKind, phase: Phase, at: dt.datetime, **fields: Any) -> Event:
        return Event(
            event_id=new_event_id(),
            captured_at=at,
            site=self.site,
            device=self.device,
            camera=self.camera,
            kind=kind,
            phase=phase,
            frame_width=self.width,
            frame_height=self.height,
            **fields,
        )


@dataclass(slots=True)
class _Presence:
    """One track in one zone."""

    in_run: int = 0
    out_run: int = 0
    active: bool = False
    entered_at: dt.datetime | None = None
    last_emit: dt.datetime | None = None
    loitering: bool = False
    intrusion: bool = False
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    score: float = 0.0


@dataclass(slots=True)
class ZoneRules:
    """``update(persons, at) -> events`` for one camera; ``close(at)`` ends what is open."""

    config: CameraZones
    stamp: EventStamp
    rules: RulesConfig = field(default_factory=RulesConfig)
    zones: ZoneSet = field(init=False)
    lines: list[LineCounter] = field(init=False)
    _presence: dict[tuple[int, str], _Presence] = field(default_factory=dict)
    _last_seen: dict[int, int] = field(default_factory=dict)
    _frame: int = 0

    def __post_init__(self) -> None:
        size = (self.stamp.width, self.stamp.height)
        self.zones = ZoneSet.for_frame(self.config, size)
        self.lines = [LineCounter.for_frame(line, size) for line in self.config.lines]

    def update(self, persons: Detections, at: dt.datetime) -> list[Event]:
        """Events caused by this frame's tracked persons (``tracker_id`` required)."""
        if persons.tracker_id is None:
            raise ValueError("ZoneRules.update needs tracked detections (tracker_id)")
        self._frame += 1
        ids = [int(t) for t in persons.tracker_id]
        self._last_seen.update((t, self._frame) for t in ids)
        events = self._zone_events(persons, ids, at)
        events += self._line_events(persons, ids, at)
        self._forget_old_tracks()
        return events

    def close(self, at: dt.datetime) -> list[Event]:
        """End every open presence (the camera stops or its zones are replaced)."""
        events: list[Event] = []
        for (track_id, zone_id), state in sorted(self._presence.items()):
            if state.active:
                events += self._end(track_id, self._zone(zone_id), state, at)
        self._presence.clear()
        return events

    def _zone_events(self, persons: Detections, ids: list[int], at: dt.datetime) -> list[Event]:
        inside = self.zones.membership(persons)
        seen: set[tuple[int, str]] = set()
        events: list[Event] = []
        for i, track_id in enumerate(ids):
            for j, polygon in enumerate(self.zones.zones):
                if inside[i, j]:
                    key = (track_id, polygon.zone.id)
                    seen.add(key)
                    state = self._presence.setdefault(key, _Presence())
                    x1, y1, x2, y2 = (float(v) for v in persons.xyxy[i])
                    state.box = (x1, y1, x2, y2)
                    state.score = float(persons.confidence[i])
                    events += self._inside(track_id, polygon.zone, state, at)
        for key in sorted(set(self._presence) - seen):
            events += self._outside(key, at)
        return events

    def _inside(self, track_id: int, zone: Zone, state: _Presence, at: dt.datetime) -> list[Event]:
        state.out_run = 0
        state.in_run += 1
        if state.entered_at is None:
            state.entered_at = at
        events: list[Event] = []
        if not state.active and state.in_run >= zone.debounce_frames:
            state.active = True
            state.last_emit = at
            events.append(self._event(EventKind.ZONE, Phase.START, track_id, zone, state, at))
        if state.active:
            events += self._while_inside(track_id, zone, state, at)
        return events

    def _while_inside(
        self, track_id: int, zone: Zone, state: _Presence, at: dt.datetime
    ) -> list[Event]:
        events: list[Event] = []
        if not state.intrusion and zone.intrusion_when_closed and self._closed(zone.schedule, at):
            state.intrusion = True
            events.append(self._event(EventKind.INTRUSION, Phase.START, track_id, zone, state, at))
        dwell = (at - state.entered_at).total_seconds() if state.entered_at else 0.0
        if not state.loitering and zone.loiter_s is not None and dwell > zone.loiter_s:
            state.loitering = True
            events.append(self._event(EventKind.LOITERING, Phase.START, track_id, zone, state, at))
        every = self.rules.update_every_s
        last = state.last_emit
        if every is not None and last is not None and (at - last).total_seconds() >= every:
            state.last_emit = at
            events.append(self._event(EventKind.ZONE, Phase.UPDATE, track_id, zone, state, at))
        return events

    def _outside(self, key: tuple[int, str], at: dt.datetime) -> list[Event]:
        state = self._presence[key]
        state.in_run = 0
        state.out_run += 1
        if not state.active:
            del self._presence[key]
            return []
        if state.out_run < self.rules.exit_frames:
            return []
        del self._presence[key]
        return self._end(key[0], self._zone(key[1]), state, at)

    def _end(self, track_id: int, zone: Zone, state: _Presence, at: dt.datetime) -> list[Event]:
        events = [self._event(EventKind.ZONE, Phase.END, track_id, zone, state, at)]
        if state.loitering:
            events.append(self._event(EventKind.LOITERING, Phase.END, track_id, zone, state, at))
        if state.intrusion:
            events.append(self._event(EventKind.INTRUSION, Phase.END, track_id, zone, state, at))
        return events

    def _line_events(self, persons: Detections, ids: list[int], at: dt.datetime) -> list[Event]:
        events: list[Event] = []
        if not self.lines:
            return events
        rings = self.zones.rings(persons)
        for counter in self.lines:
            counted = counter.counts(*counter.trigger(persons))
            for i in np.flatnonzero(counted):
                events.append(self._crossing(counter.line, ids[i], persons, int(i), rings[i], at))
        return events

    def _crossing(
        self, line: Line, track_id: int, persons: Detections, i: int, ring: Ring, at: dt.datetime
    ) -> Event:
        closed = self._closed(line.schedule, at)
        kind = EventKind.INTRUSION if closed else EventKind.LINE_CROSSING
        score = float(persons.confidence[i])
        return self.stamp.event(
            kind,
            Phase.START,
            at,
            zone_id=line.id,
            ring=ring,
            track_id=track_id,
            scores={"person": min(max(score, 0.0), 1.0)},
            boxes=[self.stamp.box(persons.xyxy[i], score=score)],
            detail=f"crossed line {line.id} ({line.direction.value})",
        )

    def _event(
        self,
        kind: EventKind,
        phase: Phase,
        track_id: int,
        zone: Zone,
        state: _Presence,
        at: dt.datetime,
    ) -> Event:
        score = min(max(state.score, 0.0), 1.0)
        return self.stamp.event(
            kind,
            phase,
            at,
            zone_id=zone.id,
            ring=zone.role.ring,
            track_id=track_id,
            scores={"person": score},
            boxes=[self.stamp.box(state.box, score=score)],
        )

    def _closed(self, schedule: str | None, at: dt.datetime) -> bool:
        if schedule is None:
            return True
        return not self.config.schedules[schedule].is_open(at)

    def _zone(self, zone_id: str) -> Zone:
        return next(z.zone for z in self.zones.zones if z.zone.id == zone_id)

    def _forget_old_tracks(self) -> None:
        old = {t for t, f in self._last_seen.items() if self._frame - f > FORGET_AFTER_FRAMES}
        for track_id in old:
            del self._last_seen[track_id]
        for counter in self.lines:
            counter.forget(old)
