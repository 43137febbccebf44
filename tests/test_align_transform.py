import math

import numpy as np
import pytest

from faceforge.align.transform import (
    ARCFACE_112,
    DegeneratePoints,
    alignment_matrix,
    estimate_similarity,
    invert_affine,
    template_points,
    transform_points,
    warp_face,
)
from faceforge.errors import UserError


def similarity(angle, scale, tx, ty):
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def test_templates_native_and_scaled():
    np.testing.assert_allclose(template_points("arcface"), ARCFACE_112)
    np.testing.assert_allclose(template_points("arcface", 224), ARCFACE_112 * 2)
    # InsightFace estimate_norm for 128: same scale, shifted 8 px right
    expected = ARCFACE_112.copy()
    expected[:, 0] += 8
    np.testing.assert_allclose(template_points("arcface", (128, 128)), expected)
    np.testing.assert_allclose(template_points("arcface", 256), expected * 2)
    # sphereface 112x96 centred in a 112x112 canvas is the arcface template
    np.testing.assert_allclose(template_points("sphereface", (112, 112)), ARCFACE_112, atol=1e-9)
    np.testing.assert_allclose(template_points("sphereface", (224, 192)), template_points("sphereface") * 2)


def test_unknown_template_and_bad_size():
    with pytest.raises(UserError, match="arcface"):
        template_points("arcfcae")
    with pytest.raises(UserError, match="size"):
        template_points("arcface", (0, 112))


@pytest.mark.parametrize("angle,scale,tx,ty", [(0.0, 1.0, 0, 0), (0.3, 1.7, 12.5, -40), (-2.5, 0.31, 300, 7)])
def test_recovers_known_similarity(angle, scale, tx, ty):
    m = similarity(angle, scale, tx, ty)
    src = np.random.default_rng(0).uniform(0, 200, (5, 2))
    est = estimate_similarity(src, transform_points(src, m))
    np.testing.assert_allclose(est, m, atol=1e-9)


def umeyama_svd(src, dst):
    # Umeyama (1991) as published: SVD of the cross-covariance, reflection excluded
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    r = u @ np.diag(d) @ vt
    c = (s * d).sum() / ((sc**2).sum() / len(src))
    return np.hstack([c * r, (mu_d - c * r @ mu_s)[:, None]])


@pytest.mark.parametrize("seed", range(6))
def test_least_squares_with_noise_matches_umeyama_svd(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 100, (5, 2))
    dst = rng.uniform(0, 100, (5, 2)) if seed % 2 else src @ [[0, 1], [1, 0]]  # odd seeds: a reflection
    np.testing.assert_allclose(estimate_similarity(src, dst), umeyama_svd(src, dst), atol=1e-9)


def test_least_squares_is_optimal():
    rng = np.random.default_rng(7)
    src, dst = rng.uniform(0, 100, (5, 2)), rng.uniform(0, 100, (5, 2))
    m = estimate_similarity(src, dst)
    best = ((transform_points(src, m) - dst) ** 2).sum()
    for _ in range(50):  # any nearby similarity fits worse
        a, b, tx, ty = m[0, 0], m[1, 0], m[0, 2], m[1, 2]
        da, db, dtx, dty = rng.normal(0, [1e-3, 1e-3, 0.1, 0.1])
        other = np.array([[a + da, -(b + db), tx + dtx], [b + db, a + da, ty + dty]])
        assert ((transform_points(src, other) - dst) ** 2).sum() > best


def test_no_reflection():
    src = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.2]], float)
    dst = src.copy()
    dst[:, 0] *= -1  # a mirror image: the best similarity must still be a proper rotation
    m = estimate_similarity(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("angle,scale,tx,ty", [(0.4, 2.0, 30, 10), (-1.2, 0.5, -5, 80), (3.0, 1.3, 0, 0)])
def test_alignment_invariant_to_similarity_of_the_input(angle, scale, tx, ty):
    rng = np.random.default_rng(2)
    pts = ARCFACE_112 + rng.normal(0, 2.0, (5, 2)) + 40
    base = alignment_matrix(pts)
    moved = transform_points(pts, similarity(angle, scale, tx, ty))
    aligned_a = transform_points(pts, base)
    aligned_b = transform_points(moved, alignment_matrix(moved))
    np.testing.assert_allclose(aligned_a, aligned_b, atol=1e-8)


def test_invert_affine_round_trip():
    m = similarity(0.7, 1.9, 4, -3)
    pts = np.random.default_rng(3).uniform(-50, 50, (7, 2))
    np.testing.assert_allclose(transform_points(transform_points(pts, m), invert_affine(m)), pts, atol=1e-9)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.full((5, 2), 10.0), "coincide"),
        (np.array([[1, 2], [3, np.nan], [0, 0], [1, 1], [2, 2]]), "NaN"),
        (np.zeros((5, 3)), "shape"),
        (np.zeros((1, 2)), "shape"),
    ],
)
def test_degenerate_points_raise_clear_error(bad, match):
    with pytest.raises(DegeneratePoints, match=match):
        estimate_similarity(bad, np.zeros_like(bad) if bad.shape[-1] == 2 else bad)
    assert issubclass(DegeneratePoints, UserError)


def test_five_points_shape_checked():
    with pytest.raises(DegeneratePoints, match=r"\(5, 2\)"):
        alignment_matrix(np.random.default_rng(0).uniform(0, 9, (4, 2)))


def test_warp_face_puts_points_on_template():
    # draw five dots at known positions of a rotated, scaled face, warp, find the dots again
    import cv2

    m = similarity(0.35, 2.2, 60, 20)
    pts = transform_points(ARCFACE_112, m)
    img = np.zeros((400, 400, 3), np.uint8)
    for x, y in pts:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 5 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    crop = warp_face(img, pts)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    gray = crop[..., 0].astype(np.float64)
    for tx, ty in ARCFACE_112:
        x0, y0 = int(tx) - 5, int(ty) - 5
        win = gray[y0 : y0 + 11, x0 : x0 + 11]
        yy, xx = np.mgrid[y0 : y0 + 11, x0 : x0 + 11]
        cx, cy = (win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()
        assert abs(cx - tx) < 0.5 and abs(cy - ty) < 0.5
    big = warp_face(img, pts, size=224)
    assert big.shape == (224, 224, 3)
    sphere = warp_face(img, pts, template="sphereface")
    assert sphere.shape == (112, 96, 3)


def test_warp_border_modes():
    img = np.full((50, 50), 200, np.uint8)
    pts = ARCFACE_112 * 0.3 + 35  # the crop reaches past the bottom-right edge of the image
    assert warp_face(img, pts).min() == 0
    assert warp_face(img, pts, border="replicate").min() == 200
    with pytest.raises(UserError, match="border"):
        warp_face(img, pts, border="reflect")
