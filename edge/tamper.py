"""Camera tamper: covered, turned away or defocused, against the camera's own reference view.

Three measures of a small grey copy of each analysed frame, compared with a reference learnt
over the camera's first ``learn_s`` seconds:

- *brightness* (mean grey level): a hand, a cloth or paint over the lens makes it collapse;
- *edge energy* (mean Sobel gradient magnitude): a defocused, fogged or sprayed lens loses
  its edges while the brightness stays;
- *scene match* (correlation of a coarse, blurred thumbnail with the reference one): a camera
  turned away sees another scene, however sharp and bright.

A condition must hold for ``hold_s`` before a ``tamper`` start event, and be gone for
``clear_s`` before the end event, so a bus passing the lens or a person close to it does
not raise anything. While nothing is wrong the reference follows the scene slowly (dusk,
clouds), never while a condition holds. The hub turns the event into a technical incident
for the technicians.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from ringwatch.contract.messages import Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.edge.config import TamperConfig
from ringwatch.edge.motion import unit_centred
from ringwatch.edge.rules import EventStamp

Image = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
WORK_WIDTH = 160  # measures are taken on a copy this wide: cheap, and noise averages out
THUMB = (32, 18)  # the scene-match thumbnail


class Tamper(StrEnum):
    COVERED = "covered"
    DEFOCUSED = "defocused"
    TURNED = "turned away"


@dataclass(frozen=True, slots=True)
class ViewMeasures:
    """What one frame looks like, in the three measures."""

    brightness: float
    edges: float
    thumb: F32  # zero-mean, unit-norm

    @classmethod
    def of(cls, bgr: Image) -> ViewMeasures:
        import cv2

        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        h, w = grey.shape[:2]
        small = cv2.resize(grey, (WORK_WIDTH, max(1, round(h * WORK_WIDTH / w))))
        small = small.astype(np.float32)
        gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
        edges = float(np.mean(np.hypot(gx, gy)))
        thumb = cv2.resize(cv2.GaussianBlur(small, (0, 0), 3), THUMB, interpolation=cv2.INTER_AREA)
        return cls(float(small.mean()), edges, unit_centred(np.asarray(thumb, np.float32).ravel()))

    def blend(self, other: ViewMeasures, weight: float) -> ViewMeasures:
        """``(1 - weight) * self + weight * other``: the slowly following reference."""
        mix = (1 - weight) * self.thumb + weight * other.thumb
        return ViewMeasures(
            (1 - weight) * self.brightness + weight * other.brightness,
            (1 - weight) * self.edges + weight * other.edges,
            unit_centred(mix),
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    """A frame against the reference: ratios (1 = as usual) and the scene correlation."""

    brightness: float
    edges: float
    scene: float

    def verdict(self, cfg: TamperConfig) -> Tamper | None:
        if self.brightness < cfg.dark_ratio or self.edges < cfg.flat_ratio:
            return Tamper.COVERED
        if self.edges < cfg.blur_ratio:
            return Tamper.DEFOCUSED
        if self.scene < cfg.scene_match:
            return Tamper.TURNED
        return None

    def describe(self, what: Tamper) -> str:
        return (
            f"camera {what.value}: brightness {self.brightness:.0%} and edges {self.edges:.0%} "
            f"of the reference view, scene match {self.scene:.2f}"
        )

    def scores(self) -> dict[str, float]:
        """The three measures, clipped to 0..1 as event scores are."""
        values = {"brightness": self.brightness, "edges": self.edges, "scene": self.scene}
        return {k: float(min(max(v, 0.0), 1.0)) for k, v in values.items()}


def compare(frame: ViewMeasures, reference: ViewMeasures) -> Comparison:
    return Comparison(
        brightness=frame.brightness / max(reference.brightness, 1.0),
        edges=frame.edges / max(reference.edges, 1e-3),
        scene=float(np.dot(frame.thumb, reference.thumb)),
    )


class TamperWatch:
    """``observe(image, stamp, at) -> events`` for one camera: debounced tamper start/end."""

    def __init__(self, config: TamperConfig) -> None:
        self.config = config
        self.reference: ViewMeasures | None = None
        self._learning: list[ViewMeasures] = []
        self._learn_started: dt.datetime | None = None
        self._suspect: tuple[Tamper, dt.datetime] | None = None  # condition and since when
        self._active: Tamper | None = None
        self._clear_since: dt.datetime | None = None
        self.last: Comparison | None = None

    @property
    def tampered(self) -> Tamper | None:
        return self._active

    def observe(self, image: Image, stamp: EventStamp, at: dt.datetime) -> list[Event]:
        view = ViewMeasures.of(image)
        if self.reference is None:
            self._learn(view, at)
            return []
        found = compare(view, self.reference)
        self.last = found
        verdict = found.verdict(self.config)
        if self._active is None:
            return self._while_normal(verdict, view, found, stamp, at)
        return self._while_tampered(verdict, found, stamp, at)

    def close(self, stamp: EventStamp, at: dt.datetime) -> list[Event]:
        """The camera stops: an open tamper ends with it."""
        if self._active is None or self.last is None:
            return []
        self._active = None
        return [self._event(Phase.END, "camera stopped", self.last, stamp, at)]

    def _learn(self, view: ViewMeasures, at: dt.datetime) -> None:
        self._learn_started = self._learn_started or at
        self._learning.append(view)
        learnt_s = (at - self._learn_started).total_seconds()
        if learnt_s >= self.config.learn_s and len(self._learning) >= 3:
            ref = self._learning[0]
            for k, v in enumerate(self._learning[1:], start=2):
                ref = ref.blend(v, 1 / k)  # the running mean
            self.reference, self._learning = ref, []

    def _while_normal(
        self,
        verdict: Tamper | None,
        view: ViewMeasures,
        found: Comparison,
        stamp: EventStamp,
        at: dt.datetime,
    ) -> list[Event]:
        if verdict is None:
            self._suspect = None
            assert self.reference is not None
            self.reference = self.reference.blend(view, self.config.follow)
            return []
        if self._suspect is None:
            self._suspect = (verdict, at)
        since = self._suspect[1]
        if (at - since).total_seconds() < self.config.hold_s:
            return []
        self._active, self._suspect, self._clear_since = verdict, None, None
        return [self._event(Phase.START, found.describe(verdict), found, stamp, at)]

    def _while_tampered(
        self, verdict: Tamper | None, found: Comparison, stamp: EventStamp, at: dt.datetime
    ) -> list[Event]:
        if verdict is not None:
            self._clear_since = None
            return []
        self._clear_since = self._clear_since or at
        if (at - self._clear_since).total_seconds() < self.config.clear_s:
            return []
        what = self._active
        self._active, self._clear_since = None, None
        assert what is not None
        return [
            self._event(Phase.END, f"camera view restored (was {what.value})", found, stamp, at)
        ]

    def _event(
        self, phase: Phase, detail: str, found: Comparison, stamp: EventStamp, at: dt.datetime
    ) -> Event:
        return stamp.event(EventKind.TAMPER, phase, at, scores=found.scores(), detail=detail)
