"""Tracker: tiny literal boxes moving, occluded, scored low; ids must persist."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ringwatch.edge.faces_track import FaceTracks
from ringwatch.edge.tracking import Tracker, TrackerConfig, greedy_match
from ringwatch.models.detections import Detections
from ringwatch.models.nms import iou_matrix as box_iou


def dets(*rows: tuple[float, float, float, float, float]) -> Detections:
    arr = np.array(rows, np.float32).reshape(-1, 5)
    return Detections(
        xyxy=arr[:, :4].copy(),
        confidence=arr[:, 4].copy(),
        class_id=np.zeros(len(arr), np.int32),
    )


def ids(out: Detections) -> list[int]:
    assert out.tracker_id is not None
    return [int(t) for t in out.tracker_id]


def test_box_iou_and_greedy_match() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[20, 20, 30, 30], [0, 0, 10, 5], [100, 100, 110, 110]], np.float32)
    iou = box_iou(a, b)
    assert iou.tolist() == [[0.0, 0.5, 0.0], [1.0, 0.0, 0.0]]
    assert greedy_match(iou, 0.3) == [(1, 0), (0, 1)]
    assert greedy_match(iou, 0.6) == [(1, 0)]
    assert box_iou(a, np.zeros((0, 4), np.float32)).shape == (2, 0)


def test_two_boxes_moving_keep_their_ids_after_birth() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    seen = []
    for k in range(6):
        frame = dets(
            (10 + 6 * k, 10, 50 + 6 * k, 100, 0.9),  # walks right
            (300 - 6 * k, 10, 340 - 6 * k, 100, 0.8),  # walks left
        )
        seen.append(ids(tracker.update(frame)))
    # Born on the third hit, ids in order of appearance, then stable.
    assert seen == [[], [], [1, 2], [1, 2], [1, 2], [1, 2]]


def test_rows_keep_the_input_order_and_columns() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(dets((0, 0, 10, 10, 0.9), (50, 50, 60, 60, 0.9)))
    swapped = dets((50, 51, 60, 61, 0.9), (0, 1, 10, 11, 0.7))
    out = tracker.update(swapped)
    assert ids(out) == [2, 1]
    np.testing.assert_allclose(out.confidence, [0.9, 0.7])


def test_occlusion_gap_keeps_the_id_within_the_lost_buffer() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, lost_frames=5))
    for k in range(3):
        assert ids(tracker.update(dets((10 + 5 * k, 10, 50 + 5 * k, 100, 0.9)))) == [1]
    for _ in range(3):  # hidden behind a pillar for three frames
        assert len(tracker.update(Detections.empty())) == 0
    assert tracker.active_ids == {1}
    # Reappears further along its path: the constant-velocity prediction bridges the gap.
    assert ids(tracker.update(dets((40, 10, 80, 100, 0.9)))) == [1]


def test_a_track_lost_too_long_is_dropped_and_a_new_id_is_given() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, lost_frames=2))
    tracker.update(dets((10, 10, 50, 100, 0.9)))
    for _ in range(3):
        tracker.update(Detections.empty())
    assert tracker.active_ids == frozenset()
    assert ids(tracker.update(dets((10, 10, 50, 100, 0.9)))) == [2]


def test_low_score_detection_continues_a_track_but_never_starts_one() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, high_score=0.5, low_score=0.1))
    tracker.update(dets((10, 10, 50, 100, 0.9)))
    # Partly occluded: the score dips below the first-stage threshold.
    assert ids(tracker.update(dets((12, 10, 52, 100, 0.3)))) == [1]
    # A low-score box far from any track is not a new person.
    assert ids(tracker.update(dets((14, 10, 54, 100, 0.9), (400, 10, 440, 100, 0.3)))) == [1]


@pytest.mark.parametrize("hits", [1, 2, 4])
def test_one_frame_false_positive_never_becomes_a_track(hits: int) -> None:
    tracker = Tracker(TrackerConfig(min_hits=hits))
    out = tracker.update(dets((10, 10, 50, 100, 0.9)))
    for _ in range(5):
        out = tracker.update(Detections.empty())
    assert len(out) == 0
    assert tracker.active_ids == (frozenset({1}) if hits == 1 else frozenset())


def test_crossing_paths_do_not_swap_ids() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    for k in range(9):
        a = (10 + 20 * k, 10, 50 + 20 * k, 100, 0.9)
        b = (250 - 20 * k, 30, 290 - 20 * k, 120, 0.9)
        out = tracker.update(dets(a, b))
        by_x = dict(zip(ids(out), out.xyxy[:, 0].tolist(), strict=True))
        assert by_x[1] == pytest.approx(10 + 20 * k)
        assert by_x[2] == pytest.approx(250 - 20 * k)


# -- best face per track -----------------------------------------------------------------


class FakeCropper:
    """Records the boxes cut; returns a minimal JPEG-looking payload."""

    def __init__(self) -> None:
        self.boxes: list[list[float]] = []

    def crop(self, image: object, xyxy: npt.NDArray[np.float32]) -> bytes:
        self.boxes.append([float(v) for v in xyxy])
        return b"\xff\xd8fake-jpeg"


def faces(quality: float, x: float = 100.0, emb_axis: int = 0) -> Detections:
    embedding = np.zeros((1, 128), np.float32)
    embedding[0, emb_axis] = 2.0  # not unit length: the event normalises it
    return Detections(
        xyxy=np.array([[x, 20, x + 40, 70]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.zeros(1, np.int32),
        quality=np.array([quality], np.float32),
        embeddings=embedding,
    )


def test_one_face_event_per_track_and_an_update_only_for_a_much_better_shot() -> None:
    import datetime as dt

    from ringwatch.contract.colours import Ring
    from ringwatch.contract.zones import CameraZones
    from ringwatch.edge.faces_track import FaceTrackConfig
    from ringwatch.edge.rules import EventStamp
    from ringwatch.edge.zones import ZoneSet

    zones = CameraZones.model_validate(
        {
            "default_ring": "outer",
            "zones": [
                {"id": "yard", "role": "inner", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
            ],
        }
    )
    stamp = EventStamp("campus", "box", "gate", 400, 200)
    cropper = FakeCropper()
    tracks = FaceTracks(
        stamp,
        ZoneSet.for_frame(zones, (400, 200)),
        cropper,
        config=FaceTrackConfig(min_quality=0.5, improve_by=0.15, tracker=TrackerConfig(min_hits=1)),
    )
    person = dets((90, 0, 150, 200, 0.9)).with_columns(tracker_id=np.array([7], np.int64))
    image = np.zeros((200, 400, 3), np.uint8)
    at = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    got: list[tuple[object, ...]] = []
    for q in (0.3, 0.55, 0.6, 0.69, 0.75, 0.7):
        for e in tracks.update(faces(q), person, image, at):
            got.append((e.phase.value, e.track_id, e.face_quality, e.zone_id, e.ring))
    assert got == [
        ("start", 7, pytest.approx(0.55), "yard", Ring.INNER),
        ("update", 7, pytest.approx(0.75), "yard", Ring.INNER),
    ]
    event = tracks.update(faces(0.9, x=300), dets(), image, at)  # a new face, elsewhere
    assert len(event) == 1
    e = event[0]
    # Not inside a person box: the face track's own id, offset; seen outside the yard.
    assert e.track_id is not None and e.track_id > 1_000_000
    assert (e.zone_id, e.ring) == (None, Ring.OUTER)
    assert e.embedding is not None and e.embedding[0] == pytest.approx(1.0)
    assert e.face_crop_jpeg == b"\xff\xd8fake-jpeg" and cropper.boxes[-1] == [300, 20, 340, 70]
    inside = tracks.update(faces(0.9, x=300), dets(), image, at)
    assert inside == []  # the same face again, no better: nothing new


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls = 0

    def embed(self, bgr: object, faces_: Detections) -> Detections:
        self.calls += 1
        vectors = np.zeros((len(faces_), 128), np.float32)
        vectors[:, 1] = 1.0
        return faces_.with_columns(embeddings=vectors)


def _embedding_tracks(embedder: CountingEmbedder) -> FaceTracks:
    """Face tracks of a 400x200 camera without zones, born at the first hit."""
    from ringwatch.contract.zones import CameraZones
    from ringwatch.edge.faces_track import FaceTrackConfig
    from ringwatch.edge.rules import EventStamp
    from ringwatch.edge.zones import ZoneSet

    return FaceTracks(
        EventStamp("campus", "box", "gate", 400, 200),
        ZoneSet.for_frame(CameraZones(), (400, 200)),
        FakeCropper(),
        embedder,
        FaceTrackConfig(tracker=TrackerConfig(min_hits=1)),
    )


def test_only_published_shots_are_embedded() -> None:
    import datetime as dt

    embedder = CountingEmbedder()
    tracks = _embedding_tracks(embedder)
    image = np.zeros((200, 400, 3), np.uint8)
    at = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    published = []
    for q in (0.3, 0.6, 0.62, 0.61, 0.8, 0.7):
        bare = faces(q).with_columns(embeddings=None)
        published += tracks.update(bare, dets(), image, at)
    assert [e.phase.value for e in published] == ["start", "update"]
    assert embedder.calls == 2  # six frames with a face, two embeddings
    assert published[0].embedding is not None and published[0].embedding[1] == 1.0


def test_another_person_in_a_published_face_s_place_starts_a_new_track() -> None:
    """The tracker follows boxes: a face at the same spot is the same track. When it looks
    different (its thumbnail) it is embedded again; someone else (cosine under
    ``new_person_below``) starts a new track, published anew; the same person looking
    otherwise stays one track and raises nothing."""
    import datetime as dt

    embedder = CountingEmbedder()
    tracks = _embedding_tracks(embedder)
    rng = np.random.default_rng(16)
    look_a, look_b, look_c = (rng.integers(0, 255, (200, 400, 3), np.uint8) for _ in range(3))
    at = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    got: list[tuple[str, int | None]] = []

    def show(image: npt.NDArray[np.uint8], person_axis: int | None) -> None:
        shot = faces(0.6, emb_axis=person_axis or 0)
        if person_axis is None:  # no embedding given: the embedder's (axis 1) is used
            shot = shot.with_columns(embeddings=None)
        got.extend((e.phase.value, e.track_id) for e in tracks.update(shot, dets(), image, at))

    show(look_a, 0)
    show(look_a, 0)  # the same look: nothing, and not embedded again
    show(look_b, 0)  # looks different, embeds as the same person: nothing
    assert [p for p, _ in got] == ["start"] and tracks.splits == 0
    show(look_c, 1)  # someone else took the spot: a new track, published
    show(look_c, 1)
    assert [p for p, _ in got] == ["start", "start"] and tracks.splits == 1
    assert got[0][1] != got[1][1]
    # Embeddings are computed only when the look changed (or a shot is published).
    show(look_a, None)  # looks different: re-embedded (axis 1, the same person): nothing
    show(look_a, None)  # same look: not embedded
    assert embedder.calls == 1 and len(got) == 2


def test_a_face_not_verified_as_the_same_person_is_another_person() -> None:
    from ringwatch.edge.faces_track import FaceTrackConfig
    from ringwatch.models.faces import SAME_PERSON_THRESHOLD

    assert FaceTrackConfig().new_person_below == SAME_PERSON_THRESHOLD
