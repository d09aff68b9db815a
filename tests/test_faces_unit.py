"""Face pre/post-processing on tiny arrays, plus a few checks of the real models."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from ringwatch.cli import main
from ringwatch.errors import InputError
from ringwatch.models.face_quality import (
    POSE_FLOOR,
    face_quality,
    pose_factor,
    sharpness_factor,
    size_factor,
    yaw_degrees,
)
from ringwatch.models.faces import (
    SAME_PERSON_THRESHOLD,
    FacePipeline,
    accuracy_at,
    best_threshold,
    match_gallery,
    read_image,
)
from ringwatch.models.sface import ARCFACE_TEMPLATE, align_face, cosine, to_tensor, umeyama
from ringwatch.models.yunet import Letterbox, decode, preprocess

F32 = npt.NDArray[np.float32]


# --- YuNet letterbox and decode ------------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "scale", "width", "height"),
    [
        ((250, 250), 2.56, 640, 640),
        ((360, 640), 1.0, 640, 360),
        ((1000, 2000), 0.32, 640, 320),
        ((1154, 768), 640 / 1154, 426, 640),
    ],
)
def test_letterbox_scales_by_the_long_side(
    hw: tuple[int, int], scale: float, width: int, height: int
) -> None:
    box = Letterbox.fit(hw)
    assert box.scale == pytest.approx(scale)
    assert (box.width, box.height) == (width, height)
    np.testing.assert_allclose(
        box.to_original(np.array([[64.0, 32.0]], np.float32)), [[64 / scale, 32 / scale]], rtol=1e-6
    )


def test_preprocess_pads_bottom_right_and_keeps_bgr() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0], image[..., 2] = 10, 200  # blue 10, red 200
    tensor, box = preprocess(image, size=64)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert (box.width, box.height) == (64, 32)
    assert tensor[0, 0, :32].mean() == pytest.approx(10) and tensor[
        0, 2, :32
    ].mean() == pytest.approx(200)
    assert tensor[0, :, 32:].max() == 0  # bottom padding


def _outputs(size: int) -> dict[str, F32]:
    out = {}
    for s in (8, 16, 32):
        n = (size // s) ** 2
        out[f"cls_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"obj_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((1, n, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((1, n, 10), np.float32)
    return out


def test_decode_a_hand_built_cell() -> None:
    out = _outputs(64)  # stride 16 -> a 4x4 grid
    cell = 1 * 4 + 2  # row 1, col 2
    out["cls_16"][0, cell, 0], out["obj_16"][0, cell, 0] = 0.81, 1.0
    out["bbox_16"][0, cell] = [0.5, 0.5, np.log(2), np.log(3)]
    out["kps_16"][0, cell] = [0.25, 0.75] * 5
    out["cls_8"][0, 5, 0], out["obj_8"][0, 5, 0] = 0.3, 0.3  # score 0.3: below threshold
    out["cls_32"][0, 0, 0], out["obj_32"][0, 0, 0] = 1.5, -0.2  # clipped to 1 and 0
    dets = decode(out, score_threshold=0.6, size=64)
    assert len(dets) == 1
    assert float(dets.confidence[0]) == pytest.approx(0.9)
    # centre ((2,1)+0.5)*16 = (40,24); size (2*16, 3*16) = (32,48)
    np.testing.assert_allclose(dets.xyxy[0], [24, 0, 56, 48], atol=1e-4)
    assert dets.landmarks is not None
    np.testing.assert_allclose(dets.landmarks[0], [[36, 28]] * 5, atol=1e-4)
    assert dets.class_id.tolist() == [0]


def test_decode_of_nothing_is_empty() -> None:
    dets = decode(_outputs(64), score_threshold=0.6, size=64)
    assert len(dets) == 0 and dets.landmarks is not None and dets.landmarks.shape == (0, 5, 2)


# --- alignment ------------------------------------------------------------------------------


def _similarity(scale: float, degrees: float, tx: float, ty: float) -> npt.NDArray[np.float64]:
    a = np.deg2rad(degrees)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, [[tx], [ty]]])


def _apply(matrix: npt.NDArray[np.float64], points: F32) -> F32:
    out: F32 = (points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
    return out


@pytest.mark.parametrize(
    ("scale", "degrees", "tx", "ty"),
    [
        (1.0, 0.0, 0.0, 0.0),
        (2.0, 30.0, 100.0, 80.0),
        (0.4, -75.0, -5.0, 12.5),
        (3.3, 180.0, 7.0, 0),
    ],
)
def test_umeyama_recovers_a_known_similarity(
    scale: float, degrees: float, tx: float, ty: float
) -> None:
    truth = _similarity(scale, degrees, tx, ty)
    src = ARCFACE_TEMPLATE
    np.testing.assert_allclose(umeyama(src, _apply(truth, src)), truth, atol=1e-4)


def test_umeyama_never_reflects() -> None:
    mirrored = ARCFACE_TEMPLATE * np.array([-1, 1], np.float32)
    matrix = umeyama(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_umeyama_rejects_coincident_points() -> None:
    with pytest.raises(ValueError, match="coincide"):
        umeyama(np.ones((5, 2), np.float32), ARCFACE_TEMPLATE)


def test_align_face_puts_landmarks_on_the_template() -> None:
    # Dots at the template mapped into a big image by scale 2.5, rotation 20 deg, shift.
    to_image = _similarity(2.5, 20.0, 150.0, 40.0)
    landmarks = _apply(to_image, ARCFACE_TEMPLATE)
    image = np.zeros((480, 480, 3), np.uint8)
    for k, (x, y) in enumerate(landmarks):
        cv2.circle(image, (round(x), round(y)), 6, (0, 0, 50 * (k + 1)), -1)
    aligned = align_face(image, landmarks)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    for k, (x, y) in enumerate(ARCFACE_TEMPLATE):
        assert aligned[round(y), round(x), 2] == pytest.approx(50 * (k + 1), abs=3)


def test_to_tensor_is_rgb_chw() -> None:
    face = np.zeros((112, 112, 3), np.uint8)
    face[..., 0] = 7  # blue
    tensor = to_tensor(face)
    assert tensor.shape == (1, 3, 112, 112) and tensor.dtype == np.float32
    assert tensor[0, 2].max() == 7 and tensor[0, 0].max() == 0


def test_cosine_shapes_and_values() -> None:
    a = np.array([[1, 0], [0, 2]], np.float32)
    b = np.array([[3, 0], [1, 1], [0, -1]], np.float32)
    sims = cosine(a, b)
    assert sims.shape == (2, 3)
    np.testing.assert_allclose(sims, [[1, 0.70710677, 0], [0, 0.70710677, -1]], atol=1e-6)
    assert cosine(a[0], b).shape == (3,) and cosine(a, b[0]).shape == (2,)
    assert float(cosine(a[0], b[0])) == pytest.approx(1.0)


# --- quality --------------------------------------------------------------------------------

FRONTAL = np.array([[38, 52], [74, 52], [56, 72], [42, 92], [70, 92]], np.float32)


def _textured(seed: int = 0) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    grey = cv2.resize(small, (200, 200), interpolation=cv2.INTER_NEAREST)
    return np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), np.uint8)


def test_blurred_face_scores_lower_than_sharp() -> None:
    sharp = _textured()
    blurred = np.asarray(cv2.GaussianBlur(sharp, (0, 0), 4), np.uint8)
    box = np.array([20, 20, 180, 180], np.float32)
    lm = FRONTAL * 1.4 + 20
    assert sharpness_factor(blurred, box) < sharpness_factor(sharp, box)
    assert face_quality(blurred, box, lm) < face_quality(sharp, box, lm)


def test_small_face_scores_lower_than_large() -> None:
    assert size_factor(np.array([0, 0, 20, 24], np.float32)) < size_factor(
        np.array([0, 0, 100, 120], np.float32)
    )
    assert size_factor(np.array([5, 5, 5, 9], np.float32)) == 0.0


def test_pose_frontal_beats_turned_and_profile() -> None:
    turned = FRONTAL.copy()
    turned[2, 0] = 66  # nose moved towards the left eye: head turned
    profile = FRONTAL.copy()
    profile[2, 0] = 80  # nose outside the eyes
    pitched = FRONTAL.copy()
    pitched[2, 1] = 55  # nose near the eye line: head tilted back
    assert pose_factor(FRONTAL) > 0.9
    assert pose_factor(FRONTAL) > pose_factor(turned) > pose_factor(profile) > 0
    assert pose_factor(pitched) < pose_factor(FRONTAL)


def test_pose_falls_smoothly_as_the_nose_passes_an_eye() -> None:
    """The old symmetry ratio dropped to 0 once the nose left the eyes (a ~45-55 degree
    turn scored like a profile); the yaw estimate keeps falling smoothly instead."""
    scores, yaws = [], []
    for x in np.arange(56.0, 96.0, 1.0):
        lm = FRONTAL.copy()
        lm[2, 0] = x
        scores.append(pose_factor(lm))
        yaws.append(yaw_degrees(lm))
    assert all(a >= b for a, b in itertools.pairwise(scores))
    assert all(a <= b for a, b in itertools.pairwise(yaws))
    assert max(abs(a - b) for a, b in itertools.pairwise(scores)) < 0.06
    at_eye = FRONTAL.copy()
    at_eye[2, 0] = 74  # nose on the left eye
    assert 45 < yaw_degrees(at_eye) < 65 and pose_factor(at_eye) > 0.2
    assert yaw_degrees(FRONTAL) < 1 and min(scores) >= POSE_FLOOR


def test_pose_ignores_roll() -> None:
    rolled = _apply(_similarity(1.0, 35.0, 10.0, 10.0), FRONTAL)
    assert pose_factor(rolled) == pytest.approx(pose_factor(FRONTAL), abs=1e-5)


def test_quality_is_within_0_and_1() -> None:
    image = _textured()
    q = face_quality(image, np.array([0, 0, 200, 200], np.float32), FRONTAL * 1.8)
    assert 0.0 < q <= 1.0
    assert face_quality(image, np.array([300, 300, 400, 400], np.float32), FRONTAL) == 0.0


# --- threshold maths ------------------------------------------------------------------------


def test_accuracy_and_best_threshold() -> None:
    sims = np.array([0.9, 0.8, 0.5, 0.3, 0.2, 0.1], np.float32)
    same = np.array([True, True, True, False, False, True])
    assert accuracy_at(sims, same, 0.4) == pytest.approx(5 / 6)
    threshold, accuracy = best_threshold(sims, same)
    assert accuracy == pytest.approx(5 / 6)
    assert 0.3 < threshold <= 0.5


def test_best_threshold_separable() -> None:
    sims = np.array([0.9, 0.7, 0.2, 0.1], np.float32)
    threshold, accuracy = best_threshold(sims, np.array([True, True, False, False]))
    assert accuracy == 1.0 and 0.2 < threshold < 0.7


def test_match_gallery() -> None:
    gallery = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    probes = np.array([[0.9, 0.1, 0], [0, 0, 1], [0.2, 1, 0.1]], np.float32)
    assert match_gallery(probes, gallery, ["ann", "bob"], 0.5) == ["ann", None, "bob"]
    assert match_gallery(probes[:0], gallery, ["ann", "bob"], 0.5) == []


# --- image reading --------------------------------------------------------------------------


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.jpg: no such file"):
        read_image(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match=r"corrupt\.jpg: cannot be decoded"):
        read_image(corrupt)
    with pytest.raises(InputError, match="not a file"):
        read_image(tmp_path)


# --- real models: detection geometry and `faces compare` ------------------------------------


@pytest.fixture(scope="module")
def pipeline(models_dir: Path) -> FacePipeline:
    return FacePipeline.from_models_dir(models_dir)


def test_detect_real_face_geometry(pipeline: FacePipeline, data_dir: Path) -> None:
    image = read_image(data_dir / "faces/watchlist_demo/knn/train/obama/obama.jpg")
    faces = pipeline.detect_and_embed(image)
    assert len(faces) == 1 and faces.landmarks is not None and faces.quality is not None
    x1, y1, x2, y2 = faces.xyxy[0]
    lm = faces.landmarks[0]
    assert ((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)).all()
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # person's right = image left
    assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth
    assert 0.5 < float(faces.quality[0]) <= 1.0
    assert faces.embeddings is not None
    assert np.linalg.norm(faces.embeddings[0]) == pytest.approx(1.0, abs=1e-5)


def test_detect_nothing_on_a_blank_image(pipeline: FacePipeline) -> None:
    assert len(pipeline.detect(np.full((300, 400, 3), 127, np.uint8))) == 0


def test_real_blurred_face_has_lower_quality(pipeline: FacePipeline, data_dir: Path) -> None:
    image = read_image(data_dir / "faces/watchlist_demo/knn/train/obama/obama.jpg")
    blurred = np.asarray(cv2.GaussianBlur(image, (0, 0), 5), np.uint8)
    sharp_q, blurred_q = pipeline.detect(image).quality, pipeline.detect(blurred).quality
    assert sharp_q is not None and blurred_q is not None and len(blurred_q) == 1
    assert float(blurred_q[0]) < float(sharp_q[0]) - 0.1


def test_compare_cli(models_dir: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = data_dir / "faces/watchlist_demo/knn/train"
    base = ["faces", "compare", "--models", str(models_dir)]
    assert main([*base, str(train / "obama/obama.jpg"), str(train / "obama/obama2.jpg")]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["same_person"] is True and same["similarity"] >= same["threshold"]
    assert same["threshold"] == SAME_PERSON_THRESHOLD
    assert main([*base, str(train / "obama/obama.jpg"), str(train / "biden/biden.jpg")]) == 0
    different = json.loads(capsys.readouterr().out)
    assert different["same_person"] is False and different["similarity"] < 0.2


def test_compare_cli_errors_name_the_file(
    models_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    face = str(data_dir / "faces/watchlist_demo/knn/train/obama/obama.jpg")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 90, np.uint8))
    base = ["faces", "compare", "--models", str(models_dir)]
    assert main([*base, face, str(blank)]) != 0
    assert f"no face found in {blank}" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "nope.jpg"), face]) != 0
    assert f"{tmp_path / 'nope.jpg'}: no such file" in capsys.readouterr().err


def test_a_turned_face_is_published_then_updated_by_a_frontal_shot() -> None:
    """Issue 16: a face turned so far that the nose lies on an eye used to score pose 0 and
    was never published. Now it goes out as a poorer shot (start) and the frontal shot of
    the same track follows as an update, with the site file's default thresholds."""
    import datetime as dt

    from ringwatch.contract.zones import CameraZones
    from ringwatch.edge.config import Thresholds
    from ringwatch.edge.faces_track import FaceTracks, face_track_config
    from ringwatch.edge.rules import EventStamp
    from ringwatch.edge.zones import ZoneSet
    from ringwatch.models.detections import Detections

    image = np.asarray(cv2.resize(_textured(), (400, 400)), np.uint8)
    box = np.array([100, 100, 260, 260], np.float32)
    frontal = FRONTAL * 2 + 100
    turned = frontal.copy()
    turned[2, 0] = frontal[1, 0]  # the nose on the left eye: about 55 degrees of yaw
    quality = [face_quality(image, box, lm) for lm in (turned, frontal)]
    config = face_track_config(Thresholds())
    assert quality[0] >= config.min_quality and quality[1] >= quality[0] + config.improve_by

    class Cropper:
        def crop(self, image: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32]) -> bytes:
            return b"\xff\xd8jpeg"

    stamp = EventStamp("campus", "box", "gate", 400, 400)
    zones = ZoneSet.for_frame(CameraZones.model_validate({"default_ring": "outer"}), (400, 400))
    tracks = FaceTracks(stamp, zones, Cropper(), config=config)
    at = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    got: list[tuple[str, object]] = []
    for lm, q in [(turned, quality[0])] * 3 + [(frontal, quality[1])] * 2:
        face = Detections(
            xyxy=box[None],
            confidence=np.array([0.9], np.float32),
            class_id=np.zeros(1, np.int32),
            landmarks=lm[None].astype(np.float32),
            quality=np.array([q], np.float32),
            embeddings=np.eye(1, 128, dtype=np.float32),
        )
        got += [
            (e.phase.value, e.face_quality)
            for e in tracks.update(face, Detections.empty(), image, at)
        ]
    assert got == [
        ("start", pytest.approx(quality[0], abs=1e-6)),
        ("update", pytest.approx(quality[1], abs=1e-6)),
    ]
