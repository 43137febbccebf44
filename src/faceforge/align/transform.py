"""Five-point similarity alignment: templates, least-squares similarity, warping.

The five points are, in order: left eye centre, right eye centre, nose tip, left mouth corner,
right mouth corner ("left" = image left, as in InsightFace and MTCNN).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceforge.errors import UserError

# InsightFace ``arcface_dst`` (python-package/insightface/utils/face_align.py) for 112x112 crops.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
# SphereFace / CosFace 112x96 (H x W) template: the ArcFace one shifted 8 px to the left.
SPHEREFACE_112x96 = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ],
    dtype=np.float64,
)

# name -> (points, (H, W)) at the template's native size
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    "arcface": (ARCFACE_112, (112, 112)),
    "sphereface": (SPHEREFACE_112x96, (112, 96)),
}


class DegeneratePoints(UserError):
    """Landmarks from which no similarity can be estimated (coincident, non-finite, wrong shape)."""


def _size(size: int | tuple[int, int] | None, native: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return native
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        if len(size) != 2:
            raise UserError(f"alignment size: expected (H, W) or an int, got {size!r}")
        h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise UserError(f"alignment size: must be positive, got {(h, w)}")
    return h, w


def template_points(name: str = "arcface", size: int | tuple[int, int] | None = None) -> np.ndarray:
    """The 5 template points (float64 [5, 2], x/y in pixels) for an output of ``size`` (H, W).

    * a multiple of the native size (224x224 for arcface) scales the points;
    * a square multiple of 128 for ``arcface`` follows InsightFace ``estimate_norm``: the points
      scale by size/128 and shift right by 8*size/128 (the 112 face sits in a 128 canvas);
    * any other size scales by the limiting side and centres the template in the canvas, so
      ``sphereface`` at 112x112 equals ``arcface`` at 112x112.
    """
    if name not in TEMPLATES:
        from faceforge.errors import closest

        raise UserError(f"unknown alignment template '{name}': {closest(name, TEMPLATES)}")
    base, (h0, w0) = TEMPLATES[name]
    h, w = _size(size, (h0, w0))
    if h * w0 == w * h0 and h % h0 == 0:
        return base * (h / h0)
    if name == "arcface" and h == w and h % 128 == 0:
        ratio = h / 128.0
        out = base * ratio
        out[:, 0] += 8.0 * ratio
        return out
    scale = min(h / h0, w / w0)
    out = base * scale
    out[:, 0] += (w - w0 * scale) / 2.0
    out[:, 1] += (h - h0 * scale) / 2.0
    return out


def _check_points(points, name: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 2:
        raise DegeneratePoints(f"{name}: expected an array of shape [N>=2, 2], got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise DegeneratePoints(f"{name}: contains NaN or infinite coordinates")
    return p


def estimate_similarity(src, dst) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    ``src`` onto ``dst``, as a 2x3 float64 matrix.

    This is Umeyama's (1991) solution, eqs. 38-42, with the reflection excluded. In 2-D it has a
    closed form: writing the centred points as complex numbers z (source) and w (destination), the
    optimal ``c * R`` is ``sum(conj(z) * w) / sum(|z|^2)`` -- no SVD needed.
    """
    src = _check_points(src, "source points")
    dst = _check_points(dst, "destination points")
    if src.shape != dst.shape:
        raise DegeneratePoints(f"point sets differ in shape: {src.shape} vs {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var = float((sc * sc).sum())
    extent = max(float(np.abs(src).max()), 1.0)
    if var <= len(src) * (1e-9 * extent) ** 2:
        raise DegeneratePoints("source points: all (nearly) coincide; cannot estimate a similarity")
    a = float((sc * dc).sum()) / var  # c * cos(theta)
    b = float((sc[:, 0] * dc[:, 1] - sc[:, 1] * dc[:, 0]).sum()) / var  # c * sin(theta)
    return np.array(
        [
            [a, -b, mu_d[0] - a * mu_s[0] + b * mu_s[1]],
            [b, a, mu_d[1] - b * mu_s[0] - a * mu_s[1]],
        ]
    )


def transform_points(points, matrix) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to points [..., 2]."""
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise UserError(f"transform matrix: expected shape (2, 3), got {m.shape}")
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(matrix) -> np.ndarray:
    """The inverse of a 2x3 affine matrix (maps crop coordinates back to the image)."""
    m = np.asarray(matrix, dtype=np.float64)
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, (-a @ m[:, 2])[:, None]])


def alignment_matrix(points5, template: str = "arcface", size=None) -> np.ndarray:
    """The 2x3 matrix taking image coordinates to the aligned crop for ``template`` at ``size``."""
    pts = _check_points(points5, "five points")
    if pts.shape != (5, 2):
        raise DegeneratePoints(f"five points: expected shape (5, 2), got {pts.shape}")
    return estimate_similarity(pts, template_points(template, size))


def warp_face(img: np.ndarray, points5, template: str = "arcface", size=None, border: str = "constant"):
    """The aligned crop of ``img`` (H x W x C or H x W) for its five points.

    ``border="constant"`` fills outside the image with 0, as InsightFace's ``norm_crop`` does; models
    trained on its aligned sets (MS1M, Glint) have seen black corners, while ``"replicate"`` smears
    edge pixels into streaks such models never saw. ``"replicate"`` remains available for
    landmark/detector augmentation where black wedges would be a shortcut.
    """
    import cv2

    if border not in ("constant", "replicate"):
        raise UserError(f"border: expected 'constant' or 'replicate', got {border!r}")
    h, w = _size(size, TEMPLATES[template][1]) if template in TEMPLATES else (0, 0)
    m = alignment_matrix(points5, template, size)
    mode = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=0)


# ---------------------------------------------------------------------------------------------
# fitting an aligned crop to a model's input


def fit_to_input(image: np.ndarray, size: Sequence[int], template: str = "arcface") -> np.ndarray:
    """Fit one aligned RGB image to ``size`` (H, W): exact 112x112 -> 112x96 crop, the upper half
    of an ArcFace crop for ``arcface_upper_half`` models, else resize."""
    h, w = int(size[0]), int(size[1])
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image
    if template == "arcface_upper_half" and iw == w and ih == 2 * h:
        return image[:h]  # the eyes-and-brows half an upper-half-face model was trained on
    if (ih, iw) == (112, 112) and (h, w) == (112, 96):
        return image[:, 8:104]  # ArcFace -> SphereFace template: an 8 px shift (module docstring)
    import cv2

    interp = cv2.INTER_AREA if ih * iw > h * w else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)


def fit_batch(images: np.ndarray, size: Sequence[int], template: str = "arcface") -> np.ndarray:
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    return np.stack([fit_to_input(im, size, template) for im in images])
