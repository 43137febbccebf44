"""88-point landmarks: flips, crops, metrics and losses by hand, cleaning, label files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.data.synthetic import FLIP_PERMUTATION_88, LANDMARK_GROUPS, SyntheticFaces, write_dataset
from faceforge.errors import UserError
from faceforge.landmarks import crop as C
from faceforge.landmarks.label_file import read_labels, write_labels
from faceforge.landmarks.loss import landmark_loss, mse_loss, wing_loss
from faceforge.landmarks.metrics import landmark_errors
from faceforge.landmarks.samples import FileLandmarks, clean, invalid_reasons, sample_crop


@pytest.fixture(scope="module")
def wild():
    faces = SyntheticFaces(seed=0, mode="wild", difficulty=0.5)
    return [faces.render(j, 0) for j in range(3)]


# --- flips -----------------------------------------------------------------------------------------


def test_flip_permutation_is_an_involution_that_swaps_sides():
    perm = FLIP_PERMUTATION_88
    assert sorted(perm) == list(range(88))
    assert (perm[perm] == np.arange(88)).all()
    g = LANDMARK_GROUPS
    assert list(perm[g["left_eye"]]) == list(range(g["right_eye"].start, g["right_eye"].stop))
    assert list(perm[g["right_brow"]]) == list(range(g["left_brow"].start, g["left_brow"].stop))
    assert perm[10] == 10 and perm[0] == 20  # chin stays, temples swap
    pts = np.random.default_rng(0).uniform(0, 200, (88, 2))
    np.testing.assert_allclose(C.flip_points(C.flip_points(pts, 200), 200), pts)


def _sides_ok(pts: np.ndarray) -> bool:
    """Image-left names on the image left (true for the synthetic faces' moderate yaw and roll)."""
    g = LANDMARK_GROUPS
    return bool(pts[g["left_eye"], 0].mean() < pts[g["right_eye"], 0].mean()
                and pts[g["left_brow"], 0].mean() < pts[g["right_brow"], 0].mean()
                and pts[0, 0] < pts[20, 0] and pts[53, 0] < pts[59, 0] and pts[80, 0] < pts[87, 0])


def test_flipped_image_keeps_left_points_on_the_left(wild):
    for img, truth in wild:
        pts = truth["landmarks"]
        assert _sides_ok(pts)
        flipped = C.flip_points(pts, img.shape[1])
        assert _sides_ok(flipped)
        # a mirrored point lands where the mirrored image shows the same pixel
        mirror = np.ascontiguousarray(img[:, ::-1])
        for i in (21, 53, 79):
            x, y = np.round(pts[i]).astype(int)
            j = FLIP_PERMUTATION_88[i]
            fx, fy = np.round(flipped[j]).astype(int)
            assert (fx, fy) == (img.shape[1] - 1 - x, y)
            assert (mirror[fy, fx] == img[y, x]).all()


def test_flipped_crop_is_the_mirror_of_the_crop(wild):
    img, truth = wild[0]
    pts, box = truth["landmarks"], truth["box"]
    cx, cy, side = C.square(box, 1.25)
    m0 = C.crop_matrix(cx, cy, side, 96, angle=10.0)
    m1 = C.crop_matrix(cx, cy, side, 96, angle=10.0, flip=True)
    a, b = C.warp(img, m0, 96), C.warp(img, m1, 96)
    assert np.abs(a[:, ::-1].astype(int) - b.astype(int)).max() <= 1
    np.testing.assert_allclose(C.apply(m1, pts)[FLIP_PERMUTATION_88], C.flip_points(C.apply(m0, pts), 96),
                               atol=1e-9)


def test_augmented_crop_points_follow_the_pixels():
    # a white dot on each of three landmarks; after any augmentation the dots sit under the points
    import cv2

    img = np.zeros((200, 200, 3), np.uint8)
    pts = SyntheticFaces(mode="wild", size=200).geometry(5, 0)["landmarks"].astype(np.float64)
    for i in (21, 29, 79):  # left eye corner, right eye corner, nose tip
        cv2.circle(img, tuple(int(v) for v in np.round(pts[i])), 2, (255, 255, 255), -1)
    box = np.concatenate([pts.min(0), pts.max(0)])
    for seed in range(6):
        rng = np.random.default_rng(seed)
        aug = {"shift": 0.05, "scale_jitter": 0.1, "rotation": 25, "flip": True}
        crop, out = sample_crop(img, pts, box, 64, 1.4, rng, **aug)
        for i in (21, 29, 79):
            x, y = np.round(out[i]).astype(int)
            assert crop[y - 1 : y + 2, x - 1 : x + 2].max() > 100, (seed, i)


def test_normalised_coordinates_flip_to_one_minus():
    p = np.array([[0.0, 3.0], [63.0, 10.5]])
    u = C.to_normalised(p, 64)
    np.testing.assert_allclose(C.to_normalised(C.flip_points(np.resize(p, (88, 2)), 64), 64)[
        FLIP_PERMUTATION_88][:2, 0], 1 - u[:, 0])
    np.testing.assert_allclose(C.from_normalised(u, 64), p)


# --- metrics and losses ------------------------------------------------------------------------------


def test_metrics_hand_computed():
    truth = np.zeros((2, 88, 2))
    truth[:, 21] = [40.0, 50.0]
    truth[:, 29] = [120.0, 50.0]  # outer eye corners 80 px apart
    pred = truth + [3.0, 4.0]  # every point off by a 3-4-5 triangle
    e = landmark_errors(pred, truth)
    assert e["mse"] == pytest.approx((9 + 16) / 2)
    assert e["mae"] == pytest.approx(3.5)
    assert e["mean_distance"] == pytest.approx(5.0)
    assert e["nme_percent"] == pytest.approx(100 * 5 / 80)
    assert e["groups"]["mouth"]["mae"] == pytest.approx(3.5)
    assert e["failure_rate_10_percent"] == 0.0
    pred2 = truth.copy()
    pred2[0, 60] += [6.0, 8.0]  # one mouth point of one face off by 10 px
    e2 = landmark_errors(pred2, truth)
    assert e2["mse"] == pytest.approx(100 / (2 * 176))
    assert e2["mae"] == pytest.approx(14 / (2 * 176))
    assert e2["nme_percent"] == pytest.approx(100 * (10 / 88 / 80) / 2)
    assert e2["groups"]["mouth"]["mae"] == pytest.approx(14 / (2 * 44))
    assert e2["groups"]["nose"]["mae"] == 0.0
    with pytest.raises(UserError):
        landmark_errors(pred[:, :5], truth)


def test_losses_hand_computed():
    t = torch.zeros(1, 88, 2)
    p = t.clone()
    p[0, 0, 0], p[0, 1, 1] = 1.0, 12.0
    assert float(mse_loss(p, t)) == pytest.approx((1 + 144) / 176)
    w, eps = 10.0, 2.0
    c = w - w * math.log(1 + w / eps)
    assert float(wing_loss(p, t)) == pytest.approx((w * math.log(1 + 1 / eps) + 12 - c) / 176, rel=1e-6)
    # the two pieces meet at |x| = w
    a, b = torch.full((1, 88, 2), w - 1e-4), torch.full((1, 88, 2), w + 1e-4)
    assert float(wing_loss(a, t)) == pytest.approx(float(wing_loss(b, t)), abs=1e-3)
    assert float(landmark_loss("l1")(p, t)) == pytest.approx(13 / 176)
    with pytest.raises(UserError):
        landmark_loss("huber")


# --- cleaning --------------------------------------------------------------------------------------


def test_cleaning_drops_invalid_points_with_reasons():
    faces = SyntheticFaces(mode="wild")
    geo = [faces.geometry(j, 0) for j in range(8)]
    pts = np.stack([g["landmarks"] for g in geo]).astype(np.float64)
    boxes = np.stack([g["box"] for g in geo]).astype(np.float64)
    pts[1, 5, 0] = np.nan
    boxes[2] = [50, 50, 40, 90]  # x2 < x1
    side = 1.25 * (boxes[3, 2:] - boxes[3, :2]).max()
    pts[3, 70] = boxes[3, 2:] + side  # far outside the crop
    pts[4] = pts[4].mean(0)  # every point collapsed onto one
    pts[5, 10, 0] += 0.5 * (boxes[5, 2] - boxes[5, 0])  # a sloppy point still inside the crop: kept
    r = invalid_reasons(pts, boxes)
    assert list(r) == ["", "not_finite", "bad_box", "outside_crop", "degenerate", "", "", ""]


def test_clean_report_on_a_label_file(tmp_path):
    faces = SyntheticFaces(mode="wild")
    pts = np.stack([faces.geometry(j, 0)["landmarks"] for j in range(200)]).astype(np.float64)
    pts[7, 3] = np.nan
    path = write_labels(tmp_path / "lab.csv", [f"img{i}.jpg" for i in range(200)], pts)
    keep, report = clean(FileLandmarks(str(path)))
    assert report["total"] == 200 and report["dropped"] == 1 and report["reasons"]["not_finite"] == 1
    assert report["dropped_percent"] == pytest.approx(0.5)
    assert 7 not in keep and len(keep) == 199
    assert report["examples"][0]["sample"].endswith("img7.jpg")


# --- label files -----------------------------------------------------------------------------------


def test_label_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 300, (5, 88, 2))
    boxes = rng.uniform(0, 300, (5, 4))
    names = [f"a/{i}.jpg" for i in range(5)]
    write_labels(tmp_path / "l.csv", names, pts, boxes, identities=[f"id{i}" for i in range(5)])
    lab = read_labels(tmp_path / "l.csv")
    assert lab.paths == [str(tmp_path / n) for n in names]
    np.testing.assert_allclose(lab.points, pts, atol=5e-4)
    np.testing.assert_allclose(lab.boxes, boxes, atol=5e-4)
    assert lab.identities == [f"id{i}" for i in range(5)]
    write_labels(tmp_path / "nobox.csv", names, pts)
    assert np.isnan(read_labels(tmp_path / "nobox.csv").boxes).all()


def test_headerless_tsv_layouts(tmp_path):
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 100, (2, 176))
    box = [10, 20, 90, 95]
    lines = ["/abs/x.png\t" + "\t".join(f"{v:.4f}" for v in pts[0]),
             "y.png\t" + "\t".join(f"{v:.4f}" for v in np.concatenate([pts[1], box]))]
    (tmp_path / "l.tsv").write_text("\n".join(lines) + "\n")
    lab = read_labels(tmp_path / "l.tsv")
    assert lab.paths == ["/abs/x.png", str(tmp_path / "y.png")]
    np.testing.assert_allclose(lab.points.reshape(2, 176), pts, atol=1e-4)
    assert np.isnan(lab.boxes[0]).all() and list(lab.boxes[1]) == box
    (tmp_path / "bad.tsv").write_text("x.png\t1\t2\t3\n")
    with pytest.raises(UserError, match="bad.tsv:1: 4 fields"):
        read_labels(tmp_path / "bad.tsv")
    (tmp_path / "bad2.tsv").write_text("x.png\t" + "\t".join(["1"] * 175 + ["oops"]) + "\n")
    with pytest.raises(UserError, match="'oops' is not a number"):
        read_labels(tmp_path / "bad2.tsv")


def test_reads_the_synth_layout(tmp_path):
    root = write_dataset(tmp_path / "s", 2, 2, mode="wild", offset=30)
    lab = read_labels(root / "landmarks.csv")
    faces = SyntheticFaces(mode="wild")
    assert len(lab) == 4 and lab.identities[0] == "id0000030"
    g = faces.geometry(31, 1)
    np.testing.assert_allclose(lab.points[3], g["landmarks"], atol=2e-3)
    np.testing.assert_allclose(lab.boxes[3], g["box"], atol=2e-3)
    assert FileLandmarks(str(root / "landmarks.csv")).read(3).shape == (256, 256, 3)
