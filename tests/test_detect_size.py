"""Detection size: images resized for the detector, boxes and points mapped back; batched detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.align.detectors import Face, get_detector
from faceforge.align.detectors.base import check_det_size, detection_scale, map_faces, resize_for_detection
from faceforge.errors import UserError

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def _require(name: str) -> None:
    pytest.importorskip("onnxruntime", reason=f"detector '{name}' needs onnxruntime")


def _photo(name: str) -> np.ndarray:
    from faceforge.io.images import read_image

    if not (PHOTOS / name).is_file():
        pytest.skip(f"shared photo absent: {PHOTOS / name}")
    return read_image(PHOTOS / name)


def test_detection_scale_shrinks_long_side_only_unless_upscale():
    assert detection_scale(2333, 1434, 640) == pytest.approx(640 / 2333)
    assert detection_scale(480, 640, 640) == 1.0
    assert detection_scale(320, 213, 640) == 1.0
    assert detection_scale(320, 213, 640, upscale=True) == 2.0
    assert detection_scale(5000, 5000, None) == 1.0


def test_resize_reports_exact_per_axis_scale():
    img = np.zeros((333, 1001, 3), np.uint8)
    small, (sx, sy) = resize_for_detection(img, 640)
    assert small.shape[:2] == (round(333 * 640 / 1001), 640)
    assert sx == small.shape[1] / 1001 and sy == small.shape[0] / 333
    same, scale = resize_for_detection(img, None)
    assert same is img and scale == (1.0, 1.0)


def test_map_faces_divides_by_scale_and_clips():
    face = Face(np.array([10, 20, 110, 220], np.float32), 0.9,
                np.array([[30, 60], [80, 60], [55, 100], [35, 150], [75, 150]], np.float32))
    [back] = map_faces([face], (0.5, 0.25), (1000, 150))
    np.testing.assert_allclose(back.box, [20, 80, 150, 880])  # x2 = 220 clipped to the width 150
    np.testing.assert_allclose(back.landmarks[:, 0], face.landmarks[:, 0] * 2)
    np.testing.assert_allclose(back.landmarks[:, 1], face.landmarks[:, 1] * 4)
    assert back.score == pytest.approx(0.9) and back.box.dtype == np.float32
    assert map_faces([], (0.5, 0.5), (10, 10)) == []


def test_det_size_values():
    assert check_det_size(None) is None and check_det_size("full") is None and check_det_size(0) is None
    assert check_det_size(640) == 640 and check_det_size("960") == 960
    for bad in (16, -5, "big", 640.5, True):
        with pytest.raises(UserError, match="det_size"):
            check_det_size(bad)


@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
def test_upscaled_copy_gives_boxes_twice_as_large(name):
    import cv2

    _require(name)
    det = get_detector(name, det_size=None)
    for photo in ("obama.jpg", "biden.jpg"):
        full = _photo(photo)
        img = cv2.resize(full, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # faces ~120 px
        big = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
        a, b = det.detect(img)[0], det.detect(big)[0]  # the most confident face
        side = a.width  # RetinaFace's box edges move by up to ~5% of the face across scales
        assert np.abs(b.box / 2 - a.box).max() < 0.08 * side, photo
        assert np.abs(b.landmarks / 2 - a.landmarks).max() < 0.07 * side, photo


@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
def test_detection_size_maps_back_to_original(name):
    """Detecting at det_size equals detecting on the resized image by hand and scaling back."""
    _require(name)
    img = _photo("obama3.jpg")  # 1434x2333: shrunk to 640 on the long side
    det = get_detector(name, det_size=640)
    [face] = det.detect(img)
    small, (sx, sy) = resize_for_detection(img, 640)
    [ref] = get_detector(name, det_size=None).detect(small)
    np.testing.assert_allclose(face.box, ref.box / [sx, sy, sx, sy], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(face.landmarks, ref.landmarks / [sx, sy], rtol=1e-5, atol=1e-3)
    assert face.box[2] > img.shape[1] / 4  # in full-size coordinates, not the 640 px ones


def test_retinaface_full_and_640_agree_on_a_large_photo():
    _require("retinaface")
    img = _photo("obama3.jpg")
    [a] = get_detector("retinaface", det_size=None).detect(img)
    [b] = get_detector("retinaface").detect(img)
    assert np.abs(a.box - b.box).max() < 0.08 * a.width


def test_batch_equals_one_by_one_and_keeps_order():
    _require("retinaface")
    det = get_detector("retinaface")
    obama, t1 = _photo("obama.jpg"), _photo("t1.jpg")
    crop = np.ascontiguousarray(obama[5:, 3:])  # a different size that pads to the same batch shape
    images = [obama, t1, crop, obama[:, :, :1].repeat(3, axis=2)]
    batched = det.detect_batch(images)
    assert [len(f) for f in batched] == [len(det.detect(x)) for x in images]
    for faces, img in zip(batched, images):
        for f, g in zip(faces, det.detect(img)):
            np.testing.assert_allclose(f.box, g.box, atol=1e-2)
            np.testing.assert_allclose(f.landmarks, g.landmarks, atol=1e-2)
    assert det.detect_batch([]) == []


def test_max_size_is_the_old_name_of_det_size():
    _require("retinaface")
    assert get_detector("retinaface", max_size=1280).det_size == 1280
    assert get_detector("retinaface", max_size=None).det_size is None
    assert get_detector("retinaface").det_size == 640
    assert get_detector("mtcnn", det_size="full").det_size is None
