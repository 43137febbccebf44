"""Landmark-driven masks (data/mask_mesh.py, landmarks/mask_points.py): the outline covers the nose
tip and mouth and leaves the eyes free on real photos, frontal and turned, on crops too; the warp is
piecewise affine; seeded; the folder tool and the CLI on photos."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import shared_path
from faceforge.data.mask_mesh import (
    EYES,
    MOUTH,
    NOSE_TIP,
    NU,
    NV,
    SHAPES,
    apply_landmark_masks,
    head_turn,
    mask_geometry,
    render_mask,
    warp_coordinates,
)
from faceforge.errors import UserError
from test_landmarks_cli import _need_detector

# celeba299 photos picked by the landmark model's head turn (bench/mask_sheets.py prints it): four
# three-quarter views each way, and four near-frontal faces
TURNED = ("07236/186240", "07260/044173", "07428/143693", "07322/189669",
          "07413/122063", "07411/069094", "07220/188289", "07375/071396")
FRONTAL = ("07422/124101", "07454/051244", "07426/011185", "07246/190073")
COVERED = [NOSE_TIP, *range(MOUTH[0], MOUTH[0] + 12)]  # nose tip, outer lip contour


def _inside(outline: np.ndarray, pts: np.ndarray) -> np.ndarray:
    poly = outline.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0 for x, y in pts])


def _check_coverage(points: np.ndarray, what: str, seeds=range(6)) -> None:
    for seed in seeds:
        for shape in SHAPES:
            outline = mask_geometry(points, np.random.default_rng(seed), shape)["outline"]
            case = f"{what} {shape} seed {seed}"
            assert _inside(outline, points[COVERED]).all(), f"{case}: nose/mouth uncovered"
            assert not _inside(outline, points[EYES]).any(), f"{case}: an eye covered"


def _synthetic_face():
    from faceforge.data.synthetic import SyntheticFaces

    img, truth = SyntheticFaces(seed=0, mode="wild").render(5, 3)
    return img, truth["landmarks"].astype(np.float64)


def test_outline_on_synthetic_faces_and_rolled():
    img, pts = _synthetic_face()
    _check_coverage(pts, "synthetic")
    c = np.array(img.shape[1::-1]) / 2
    a = np.deg2rad(35)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    _check_coverage((pts - c) @ rot.T + c, "rolled 35 deg")


def test_render_changes_only_the_mask_and_is_seeded():
    img, pts = _synthetic_face()
    a, geoms = apply_landmark_masks(img, [pts], np.random.default_rng(3))
    b, _ = apply_landmark_masks(img, [pts], np.random.default_rng(3))
    c, _ = apply_landmark_masks(img, [pts], np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    diff = np.abs(a.astype(int) - img).max(-1) > 0
    x0, y0 = geoms[0]["outline"].min(0) - geoms[0]["frame"].scale * 0.6  # ear loops reach past the mask
    x1, y1 = geoms[0]["outline"].max(0) + geoms[0]["frame"].scale * 0.6
    ys, xs = np.nonzero(diff)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1
    for x, y in pts[EYES]:
        assert not diff[int(round(y)), int(round(x))]
    assert diff[int(round(pts[NOSE_TIP, 1])), int(round(pts[NOSE_TIP, 0]))]
    out, none = apply_landmark_masks(img, [], np.random.default_rng(0))
    assert np.array_equal(out, img) and none == []


def test_warp_is_piecewise_affine_and_texture_follows_the_mesh():
    _, pts = _synthetic_face()
    g = mask_geometry(pts, np.random.default_rng(0), "surgical")
    mesh = g["mesh"]
    x0, y0 = np.floor(mesh.reshape(-1, 2).min(0)).astype(int)
    x1, y1 = np.ceil(mesh.reshape(-1, 2).max(0)).astype(int) + 1
    uv, inside = warp_coordinates(mesh, (x0, y0, x1, y1))
    # mesh vertices (rounded to the pixel grid) read back their own texture coordinates
    for i, j in [(NV // 2, NU // 2), (2, 3), (NV - 2, NU - 3)]:
        x, y = mesh[i, j]
        xi, yi = int(round(x)), int(round(y))
        assert inside[yi - y0, xi - x0]
        np.testing.assert_allclose(uv[yi - y0, xi - x0], (j / NU, i / NV), atol=0.08)
    # a left-half red / right-half blue texture lands on the image-left / image-right of the bridge
    tex = np.zeros((40, 80, 3), np.uint8)
    tex[:, :40, 0] = 255
    tex[:, 40:, 2] = 255
    out = render_mask(np.full((256, 256, 3), 128, np.uint8), g, np.random.default_rng(0), tex)
    left, right = mesh[NV // 2, NU // 4], mesh[NV // 2, 3 * NU // 4]
    pl, pr = out[int(left[1]), int(left[0])].astype(int), out[int(right[1]), int(right[0])].astype(int)
    assert pl[0] > pl[2] + 60 and pr[2] > pr[0] + 60


def test_bad_points_and_shapes_are_user_errors():
    _, pts = _synthetic_face()
    with pytest.raises(UserError, match="88"):
        mask_geometry(pts[:68], np.random.default_rng(0))
    with pytest.raises(UserError, match="shape"):
        mask_geometry(pts, np.random.default_rng(0), "scarf")
    with pytest.raises(UserError, match="RGB uint8"):
        apply_landmark_masks(np.zeros((64, 64), np.uint8), [pts], np.random.default_rng(0))


@pytest.fixture(scope="module")
def landmarker():
    _need_detector()
    from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

    return FaceLandmarker(LandmarkPredictor.load("builtin"))


def test_real_photos_frontal_and_turned(landmarker):
    from faceforge.io.images import read_image

    turns = {}
    for name in TURNED + FRONTAL:
        faces = landmarker(read_image(shared_path("data", "celeba299", f"{name}.jpg")))
        assert len(faces) >= 1, name
        pts = max(faces, key=lambda f: f[0].width)[1]
        turns[name] = head_turn(pts)
        _check_coverage(pts, name, seeds=range(3))
    assert all(abs(turns[n]) > 0.3 for n in TURNED), turns  # they really are turned
    assert all(abs(turns[n]) < 0.15 for n in FRONTAL), turns
    assert min(turns.values()) < -0.3 < 0.3 < max(turns.values())  # both ways


def test_group_photo_masks_every_face(landmarker):
    from faceforge.io.images import read_image

    img = read_image(shared_path("data", "photos", "t1.jpg"))
    faces = landmarker(img)
    assert len(faces) == 6
    out, geoms = apply_landmark_masks(img, [p for _, p in faces], np.random.default_rng(0))
    for (_, pts), g in zip(faces, geoms):
        assert _inside(g["outline"], pts[COVERED]).all() and not _inside(g["outline"], pts[EYES]).any()
        x, y = np.round(pts[NOSE_TIP]).astype(int)
        assert np.abs(out[y, x].astype(int) - img[y, x]).max() > 0


def test_aligned_crops_and_the_fixed_box_fallback():
    _need_detector()
    from faceforge.align.detectors import get_detector
    from faceforge.align.transform import warp_face
    from faceforge.io.images import read_image
    from faceforge.landmarks.mask_points import crop_box, mask_points

    points = mask_points("builtin", "crops")
    for name in ("07236/186240", "07413/122063", "07422/124101"):  # turned both ways, frontal
        img = read_image(shared_path("data", "celeba299", f"{name}.jpg"))
        face = get_detector("retinaface").detect(img)[0]
        crop = warp_face(img, face.landmarks, "arcface", (112, 112))
        (pts,) = points(crop)
        _check_coverage(pts, f"crop {name}", seeds=range(2))
    # no face for the detector: the points come from the fixed crop box, inside the crop
    (blank,) = points(np.full((112, 112, 3), 127, np.uint8))
    assert blank.shape == (88, 2) and (blank > -20).all() and (blank < 132).all()
    box = crop_box("arcface", (224, 224))
    np.testing.assert_allclose(box, np.array([12.3, 4.7, 101.0, 122.5]) * 2, atol=1e-6)


def test_cli_masks_photos_and_crops(tmp_path, capsys):
    _need_detector()
    import shutil

    from faceforge.cli.main import main

    src = tmp_path / "src"
    for ident, names in {"a": ("07236/186240", "07422/124101"), "b": ("07413/122063",)}.items():
        (src / ident).mkdir(parents=True)
        for n in names:
            shutil.copy(shared_path("data", "celeba299", f"{n}.jpg"), src / ident / f"{n.split('/')[1]}.jpg")
    cv2.imwrite(str(src / "b" / "blank.jpg"), np.full((200, 160, 3), 90, np.uint8))  # no face in it
    argv = ["data", "mask", str(src), str(tmp_path / "out"), "--input", "photos", "--seed", "3", "--quiet",
            "--textures", str(shared_path("data", "masks"))]
    assert main(argv) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["masked"] == 3 and counts["no_face"] == 1
    assert not (tmp_path / "out" / "b" / "blank.jpg").exists()
    first = (tmp_path / "out" / "a" / "186240.jpg").read_bytes()
    assert main(argv[:3] + [str(tmp_path / "again")] + argv[4:]) == 0
    assert (tmp_path / "again" / "a" / "186240.jpg").read_bytes() == first
    assert main(["data", "mask", str(src), str(tmp_path / "x"), "--shapes", "scarf", "--quiet"]) == 2
    assert "--shapes" in capsys.readouterr().err
