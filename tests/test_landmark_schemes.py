"""The iBUG 68 scheme beside the 88, the 68 -> 88 resampling, flips in both, and teacher labels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path
from faceforge.data.synthetic import FLIP_PERMUTATION_88, LANDMARK_GROUPS
from faceforge.errors import UserError
from faceforge.landmarks import crop as C
from faceforge.landmarks.schemes import (
    FLIP_PERMUTATION_68,
    GROUPS_68,
    RESAMPLE_68_TO_88,
    flip_scheme_points,
    scheme_errors,
    to_68,
    to_88,
)


def test_68_groups_cover_every_point_once_with_the_published_sizes():
    sizes = {k: len(v) for k, v in GROUPS_68.items()}
    assert sizes == {"contour": 17, "left_brow": 5, "right_brow": 5, "nose": 9, "left_eye": 6,
                     "right_eye": 6, "mouth": 20}
    assert sorted(i for v in GROUPS_68.values() for i in v) == list(range(68))


def test_flip_68_is_an_involution_that_swaps_the_named_points():
    p = FLIP_PERMUTATION_68
    assert sorted(p) == list(range(68)) and (p[p] == np.arange(68)).all()
    pairs = {0: 16, 8: 8, 17: 26, 21: 22, 27: 27, 30: 30, 31: 35, 33: 33, 36: 45, 39: 42, 37: 44, 41: 46,
             48: 54, 51: 51, 57: 57, 60: 64, 62: 62, 66: 66, 67: 65}
    for a, b in pairs.items():
        assert p[a] == b and p[b] == a


def test_resampling_is_a_fixed_interpolation_with_the_documented_anchors():
    w = RESAMPLE_68_TO_88
    assert w.shape == (88, 68) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert np.linalg.matrix_rank(w) == 68
    g = {k: s.start for k, s in LANDMARK_GROUPS.items()}
    anchors = {g["contour"]: 0, g["contour"] + 10: 8, g["contour"] + 20: 16,
               g["left_eye"]: 36, g["left_eye"] + 4: 39, g["right_eye"]: 45, g["right_eye"] + 4: 42,
               g["left_brow"]: 17, g["left_brow"] + 7: 21, g["right_brow"]: 26, g["right_brow"] + 7: 22,
               g["mouth"]: 48, g["mouth"] + 6: 54, g["mouth"] + 12: 60, g["mouth"] + 17: 64,
               g["nose"]: 27, g["nose"] + 4: 30, g["nose"] + 5: 31, g["nose"] + 12: 35}
    for i88, i68 in anchors.items():
        assert w[i88, i68] == 1.0, (i88, i68)
    # each sample is between two neighbours of its curve: t = 0.8 on the jaw is 0.2 x p0 + 0.8 x p1
    np.testing.assert_allclose(w[g["contour"] + 1, :2], [0.2, 0.8])
    np.testing.assert_allclose(w[g["left_eye"] + 7, [41, 36]], [0.75, 0.25])  # closed: wraps to 36


def test_68_to_88_and_back_is_exact_and_shapes_are_checked():
    p68 = np.random.default_rng(1).uniform(0, 300, (4, 68, 2))
    p88 = to_88(p68)
    assert p88.shape == (4, 88, 2)
    np.testing.assert_allclose(to_68(p88), p68, atol=1e-9)
    with pytest.raises(UserError, match="68"):
        to_88(np.zeros((88, 2)))


def test_flips_commute_with_the_resampling_in_both_schemes():
    """A flip in 68 then 68->88 equals 68->88 then a flip in 88: the two permutations agree."""
    p68 = np.random.default_rng(2).uniform(0, 250, (3, 68, 2))
    a = to_88(flip_scheme_points(p68, 250, "ibug68"))
    b = flip_scheme_points(to_88(p68), 250, "faceforge88")
    np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(b, C.flip_points(to_88(p68), 250), atol=1e-9)
    assert (FLIP_PERMUTATION_88[FLIP_PERMUTATION_88] == np.arange(88)).all()


def test_scheme_errors_by_hand():
    truth = np.zeros((1, 68, 2))
    truth[0, 45, 0] = 10.0  # eye corners 10 px apart
    pred = truth.copy()
    pred[0, :, 1] += 1.0  # every point 1 px off
    e = scheme_errors(pred, truth, "ibug68")
    assert e["nme_percent"] == pytest.approx(10.0)
    assert e["groups"]["mouth"] == pytest.approx(10.0)
    with pytest.raises(UserError, match="unknown"):
        scheme_errors(pred, truth, "ibug98")


@pytest.fixture(scope="module")
def teacher():
    pytest.importorskip("dlib", reason="the dlib extra is not installed")
    pytest.importorskip("face_recognition_models")
    from faceforge.landmarks.teacher import Dlib68

    return Dlib68()


def test_flip_68_matches_the_teacher_on_a_mirrored_real_photo(teacher):
    """The teacher on the mirrored photo, re-indexed with FLIP_PERMUTATION_68, gives back its points."""
    from faceforge.align.detectors import get_detector
    from faceforge.io.images import read_image

    img = read_image(shared_path("data", "photos", "obama.jpg"))
    det = get_detector("retinaface")
    box = det.detect(img)[0].box
    p = teacher.points(img, box)
    w = img.shape[1]
    mirrored = np.ascontiguousarray(img[:, ::-1])
    mbox = det.detect(mirrored)[0].box
    q = flip_scheme_points(teacher.points(mirrored, mbox), w, "ibug68")
    iod = np.linalg.norm(p[36] - p[45])
    assert np.linalg.norm(p - q, axis=1).mean() < 0.05 * iod
    unpermuted = q[FLIP_PERMUTATION_68]  # without the permutation the sides are swapped
    assert np.linalg.norm(p - unpermuted, axis=1).mean() > 0.3 * iod


def test_label_cli_writes_88_68_and_provenance(teacher, tmp_path):
    from faceforge.landmarks.label_file import read_labels
    from faceforge.landmarks.teacher import read_points68

    src = shared_path("data", "photos")
    out = tmp_path / "labels.csv"
    r = subprocess.run([sys.executable, "-m", "faceforge", "landmarks", "label", str(src / "obama.jpg"),
                        str(out), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["images"] == 1 and res["labelled"] == 1
    meta = json.loads((tmp_path / "labels.csv.json").read_text())
    assert meta["teacher"]["file"] == "shape_predictor_68_face_landmarks.dat"
    assert meta["detector"] == "retinaface"
    lab = read_labels(out)
    p68 = read_points68(out)
    assert lab.points.shape == (1, 88, 2) and p68.shape == (1, 68, 2)
    np.testing.assert_allclose(lab.points, to_88(p68), atol=0.02)  # written with 2 decimals
    b = lab.boxes[0]
    assert (p68[0, 36:48, 0] > b[0]).all() and (p68[0, 36:48, 0] < b[2]).all()  # eyes inside the box
    header = out.read_text().split("\n", 1)[0].split(",")
    assert header[-4:] == ["face", "score", "teacher", "detector"]
