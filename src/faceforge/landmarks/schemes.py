"""Point schemes: the iBUG 68-point layout beside faceforge's 88, and the fixed map 68 -> 88.

iBUG 68 (0-based, "left" = image left = the subject's right, as in 300-W):

====================  =========  ==================================================================
group                 indices    order
====================  =========  ==================================================================
contour (jaw)         0-16       image-left temple -> chin (8) -> image-right temple
left_brow             17-21      outer -> inner
right_brow            22-26      inner -> outer
nose                  27-35      27-30 bridge top -> tip (30); 31-35 lower edge left ala -> right ala
left_eye              36-41      36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid
right_eye             42-47      42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid
mouth (outer)         48-59      48 left corner, 49-53 upper, 54 right corner, 55-59 lower right->left
mouth (inner)         60-67      60 left corner, 61-63 upper, 64 right corner, 65-67 lower
====================  =========  ==================================================================

68 -> 88 (:data:`RESAMPLE_68_TO_88`, ``pts88 = W @ pts68``): each facial curve of the 68 is read as
a piecewise-linear curve through its points in the order of the 88 layout
(``faceforge.data.synthetic.layout``), with parameter ``t`` = point index, and sampled at evenly
spaced ``t`` (index-uniform, not arc length, so the map is one fixed linear matrix and commutes with
flips). Closed contours wrap around.

==========  ===========================================  =======  ============================
88 group    68 points, in order                          curve    samples (t of the 88 points)
==========  ===========================================  =======  ============================
contour 21  0..16                                        open     t = 0.8 i (i = 0..20; 10 = chin)
left_eye 8  36 37 38 39 40 41                            closed   t = 0.75 i (4 = inner corner 39)
right_eye 8 45 44 43 42 47 46 (outer corner first)       closed   t = 0.75 i (4 = inner corner 42)
left_brow 8 17..21 (outer -> inner)                      open     t = 4 i / 7
right_brow  26..22 (outer -> inner)                      open     t = 4 i / 7
mouth 22    outer 48..59 as is (12 = 12); inner          closed   inner t = 0.8 i (i = 0..9;
            60..67 (8 -> 10)                                      5 = right corner 64)
nose 13     bridge 27..30 (4 -> 5, 4 = tip 30); lower    open     bridge t = 0.75 i; lower
            31..35 (5 -> 8)                                       t = 4 i / 7
==========  ===========================================  =======  ============================

The one difference in meaning: the 88 scheme's brows are closed outlines (upper edge out -> in,
lower edge back), the 68's are a single line, so 88 points derived from 68 put the 8 brow points
along that line (outer -> inner). Flipping is unaffected (brows swap index for index in both).

``pts68 ~ pinv(W) @ pts88`` (:func:`to_68`) recovers 68 points from 88 that lie on such curves
exactly, and is the least-squares estimate for 88 predicted by a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.data.synthetic import FLIP_PERMUTATION_88, LANDMARK_GROUPS, NUM_LANDMARKS
from faceforge.errors import UserError

NUM_68 = 68
GROUPS_68: dict[str, list[int]] = {
    "contour": list(range(0, 17)),
    "left_brow": list(range(17, 22)),
    "right_brow": list(range(22, 27)),
    "nose": list(range(27, 36)),
    "left_eye": list(range(36, 42)),
    "right_eye": list(range(42, 48)),
    "mouth": list(range(48, 68)),
}
OUTER_EYE_CORNERS_68 = (36, 45)


def _flip_68() -> np.ndarray:
    perm = np.arange(NUM_68)
    perm[0:17] = np.arange(16, -1, -1)
    perm[17:22], perm[22:27] = np.arange(26, 21, -1), np.arange(21, 16, -1)
    perm[31:36] = np.arange(35, 30, -1)
    perm[36:42] = [45, 44, 43, 42, 47, 46]
    perm[42:48] = [39, 38, 37, 36, 41, 40]
    perm[48:60] = [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    perm[60:68] = [64, 63, 62, 61, 60, 67, 66, 65]
    return perm


# After a horizontal flip ``x -> W - 1 - x``, ``flipped[FLIP_PERMUTATION_68]`` is again in this layout.
FLIP_PERMUTATION_68: np.ndarray = _flip_68()


def _curve(src: list[int], n: int, closed: bool) -> np.ndarray:
    """Rows [n, 68]: ``n`` index-uniform samples of the curve through the 68 points ``src``."""
    k = len(src)
    span = k if closed else k - 1
    rows = np.zeros((n, NUM_68))
    for i in range(n):
        t = span * i / (n if closed else n - 1)
        j = int(np.floor(t)) % k if closed else min(int(np.floor(t)), span - 1)
        f = t - np.floor(t) if closed else t - j
        a, b = src[j], src[(j + 1) % k]
        rows[i, a] += 1.0 - f
        rows[i, b] += f
    return rows


def _resample_matrix() -> np.ndarray:
    parts = {
        "contour": [_curve(list(range(17)), 21, False)],
        "left_eye": [_curve([36, 37, 38, 39, 40, 41], 8, True)],
        "right_eye": [_curve([45, 44, 43, 42, 47, 46], 8, True)],
        "left_brow": [_curve(list(range(17, 22)), 8, False)],
        "right_brow": [_curve(list(range(26, 21, -1)), 8, False)],
        "mouth": [np.eye(NUM_68)[48:60], _curve(list(range(60, 68)), 10, True)],
        "nose": [_curve([27, 28, 29, 30], 5, False), _curve(list(range(31, 36)), 8, False)],
    }
    w = np.zeros((NUM_LANDMARKS, NUM_68))
    for name, sl in LANDMARK_GROUPS.items():
        w[sl] = np.concatenate(parts[name])
    return w


RESAMPLE_68_TO_88: np.ndarray = _resample_matrix()
_PINV_88_TO_68: np.ndarray = np.linalg.pinv(RESAMPLE_68_TO_88)


def _check(points: np.ndarray, n: int, what: str) -> np.ndarray:
    p = np.asarray(points, np.float64)
    if p.shape[-2:] != (n, 2):
        raise UserError(f"{what}: expected shape [..., {n}, 2], got {p.shape}")
    return p


def to_88(points68: np.ndarray) -> np.ndarray:
    """68 iBUG points [..., 68, 2] -> the 88 layout [..., 88, 2] (see the module docstring)."""
    return RESAMPLE_68_TO_88 @ _check(points68, NUM_68, "68 points")


def to_68(points88: np.ndarray) -> np.ndarray:
    """88 points [..., 88, 2] -> 68 iBUG points, the least-squares inverse of :func:`to_88`."""
    return _PINV_88_TO_68 @ _check(points88, NUM_LANDMARKS, "88 points")


@dataclass(frozen=True)
class Scheme:
    """A point layout: its size, named groups (index lists), flip permutation and eye corners."""

    name: str
    num_points: int
    groups: dict
    flip: np.ndarray
    outer_eye_corners: tuple[int, int]


SCHEMES = {
    "ibug68": Scheme("ibug68", NUM_68, GROUPS_68, FLIP_PERMUTATION_68, OUTER_EYE_CORNERS_68),
    "faceforge88": Scheme("faceforge88", NUM_LANDMARKS,
                          {k: list(range(s.start, s.stop)) for k, s in LANDMARK_GROUPS.items()},
                          FLIP_PERMUTATION_88, (LANDMARK_GROUPS["left_eye"].start,
                                                LANDMARK_GROUPS["right_eye"].start)),
}


def get_scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise UserError(f"point scheme '{name}': unknown (valid: {', '.join(SCHEMES)})")
    return SCHEMES[name]


def flip_scheme_points(points: np.ndarray, width: float, scheme: str) -> np.ndarray:
    """Points of an image mirrored as ``x -> width - 1 - x``, re-indexed back into ``scheme``."""
    s = get_scheme(scheme)
    out = np.array(_check(points, s.num_points, scheme), copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    return out[..., s.flip, :]


def scheme_errors(pred: np.ndarray, truth: np.ndarray, scheme: str) -> dict:
    """NME (% of the outer-eye-corner distance of ``truth``) overall and per group of ``scheme``."""
    s = get_scheme(scheme)
    pred, truth = _check(pred, s.num_points, scheme), _check(truth, s.num_points, scheme)
    dist = np.sqrt(((pred - truth) ** 2).sum(-1))
    a, b = s.outer_eye_corners
    iod = np.maximum(np.linalg.norm(truth[:, a] - truth[:, b], axis=-1), 1e-9)
    each = dist.mean(1) / iod
    return {"scheme": scheme, "samples": int(len(pred)), "nme_percent": float(100 * each.mean()),
            "failure_rate_10_percent": float((each > 0.10).mean()),
            "groups": {g: float(100 * (dist[:, idx].mean(1) / iod).mean()) for g, idx in s.groups.items()}}
