"""Square face crops as 2x3 affine maps, and the horizontal flip of 88 landmarks.

Pixel convention: integer coordinates are pixel centres (OpenCV's), so a crop of side ``S`` spans
``[-0.5, S - 0.5]``. A face box becomes a square of side ``scale * max(w, h)`` around the box centre;
the crop maps that square onto the ``S x S`` crop, optionally rotated about its centre and mirrored
(``x -> S - 1 - x``, the same as ``np.fliplr`` of the crop). Normalised crop coordinates are
``(x + 0.5) / S`` in ``[0, 1]``, so a flip is ``u -> 1 - u`` there.
"""

from __future__ import annotations

import math

import numpy as np

from faceforge.data.synthetic import FLIP_PERMUTATION_88


def square(box, scale: float = 1.0) -> tuple[float, float, float]:
    """``(cx, cy, side)`` of the square of side ``scale * max(w, h)`` centred on ``box`` [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (x1 + x2) / 2, (y1 + y2) / 2, scale * max(x2 - x1, y2 - y1)


def crop_matrix(cx: float, cy: float, side: float, size: int, angle: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """The 2x3 map from image to crop pixels: the square (cx, cy, side) -> the size x size crop.

    ``angle`` (degrees, counter-clockwise in the image) turns the crop so a face rolled by
    ``angle`` comes out upright; ``flip`` mirrors the crop.
    """
    s = size / side
    a = math.radians(angle)
    c, si = math.cos(a) * s, math.sin(a) * s
    m = np.array([[c, -si, 0.0], [si, c, 0.0]])
    m[:, 2] = (size - 1) / 2 - m[:, :2] @ np.array([cx, cy])
    if flip:
        m = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    return m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points [..., 2] through the 2x3 map ``m``."""
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def invert(m: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, -a @ m[:, 2:3]])


def warp(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def flip_points(pts: np.ndarray, width: float) -> np.ndarray:
    """88 points [..., 88, 2] of an image mirrored as ``x -> width - 1 - x``, back in the 88 layout.

    Mirroring turns the subject's left features into image-right ones, so the indices are permuted
    (``FLIP_PERMUTATION_88``) as well as the x coordinates reflected.
    """
    out = np.array(pts, np.float64, copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    return out[..., FLIP_PERMUTATION_88, :]


def to_normalised(pts: np.ndarray, size: int) -> np.ndarray:
    return (np.asarray(pts, np.float64) + 0.5) / size


def from_normalised(u: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(u, np.float64) * size - 0.5
