"""Privacy masks: nothing detected inside, masked pixels unrecognisable in every image sent;
and the annotator draws without touching the logic."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ringwatch.contract.messages import MAX_IMAGE_BYTES
from ringwatch.contract.zones import CameraZones, Mask
from ringwatch.edge.annotate import BoxAnnotator, ZoneAnnotator
from ringwatch.edge.privacy import JpegCropper, PrivacyMask, encode_jpeg
from ringwatch.models.detections import Detections

W, H = 320, 240
# The top-right quarter of the frame: x 160..320, y 0..120.
QUARTER = Mask(id="window", polygon=[(0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (0.5, 0.5)])


def noise(seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def boxes(*xyxy: tuple[float, float, float, float]) -> Detections:
    n = len(xyxy)
    return Detections(
        xyxy=np.array(xyxy, np.float32).reshape(n, 4),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.zeros(n, np.int32),
    )


def test_detections_centred_in_a_mask_are_dropped() -> None:
    mask = PrivacyMask.for_frame([QUARTER], (W, H))
    dets = boxes((200, 20, 240, 60), (20, 20, 60, 60), (150, 100, 190, 200))
    kept = mask.filter(dets)
    # The third box's centre (170, 150) is below the mask; its top overlaps but it stays.
    assert kept.xyxy[:, 0].tolist() == [20, 150]
    # Persons can be filtered by their feet instead.
    assert len(mask.filter(boxes((200, 20, 240, 60)), "bottom_center")) == 0
    assert len(PrivacyMask.for_frame([], (W, H)).filter(dets)) == 3


def test_masked_pixels_are_destroyed_and_the_rest_untouched() -> None:
    image = noise()
    out = PrivacyMask.for_frame([QUARTER], (W, H)).apply(image)
    assert out is not image and np.array_equal(image, noise())  # input not mutated
    inside, outside = (slice(4, 116), slice(164, 316)), (slice(130, 240), slice(0, 320))
    assert np.array_equal(out[outside], image[outside])
    # Random noise has a per-pixel std of ~74; pixelated and blurred it is nearly flat.
    assert float(image[inside].std()) > 60
    assert float(out[inside].std()) < 10
    assert np.abs(out[inside].astype(int) - image[inside].astype(int)).mean() > 40


def test_apply_refuses_a_frame_of_another_size() -> None:
    from ringwatch.errors import InputError

    with pytest.raises(InputError, match="320x240"):
        PrivacyMask.for_frame([QUARTER], (W, H)).apply(np.zeros((10, 10, 3), np.uint8))


def test_face_crop_is_a_small_jpeg_cut_from_the_masked_image() -> None:
    import cv2

    image = noise(1)
    cropper = JpegCropper(PrivacyMask.for_frame([QUARTER], (W, H)), margin=0.0, max_side=200)
    jpeg = cropper.crop(image, np.array([170, 10, 230, 110], np.float32))  # inside the mask
    assert jpeg.startswith(b"\xff\xd8") and len(jpeg) <= cropper.max_bytes
    crop = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None
    assert crop.shape == (100, 60, 3)
    assert float(crop.std()) < 15  # blurred, not the noise that was there


def test_encode_jpeg_fits_the_contract_limit() -> None:
    big = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    jpeg = encode_jpeg(big)
    assert jpeg.startswith(b"\xff\xd8") and len(jpeg) <= MAX_IMAGE_BYTES


def test_annotators_draw_zones_lines_masks_and_boxes_on_a_copy() -> None:
    zones = CameraZones.model_validate(
        {
            "zones": [
                {"id": "yard", "role": "inner", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.9]]}
            ],
            "lines": [{"id": "gate", "a": [0.1, 0.95], "b": [0.9, 0.95]}],
            "masks": [QUARTER.model_dump()],
        }
    )
    blank = np.zeros((H, W, 3), np.uint8)
    drawn = ZoneAnnotator().annotate(blank, zones)
    assert not blank.any() and drawn.shape == blank.shape
    assert drawn[int(0.1 * H), int(0.25 * W)].tolist() == [0, 0, 230]  # red inner outline
    assert drawn[int(0.95 * H), int(0.3 * W)].tolist() == [255, 0, 255]  # the gate line
    assert drawn[60, 240].any()  # the grey mask tint
    tracked = boxes((20, 20, 60, 80)).with_columns(tracker_id=np.array([3], np.int64))
    with_box = BoxAnnotator().annotate(blank, tracked, "person")
    assert with_box[50, 20].tolist() == [0, 255, 0]
