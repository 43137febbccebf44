"""Identities: the fixed parameters (head shape, skin, eyes, brows, nose, mouth, hair, glasses,
beard, mole) drawn from ``(seed, j)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceforge.data.synthetic.layout import NUM_LANDMARKS

MODES = ("aligned", "wild")
ALIGNED_SIZE = 112
WILD_SIZE = 256
_ID_TAG, _IMG_TAG = 0x1D, 0x1A  # keep identity and image seed sequences apart

# RGB palettes; identities interpolate inside them
_SKIN = np.array(
    [[255, 226, 200], [241, 196, 162], [226, 174, 132], [200, 138, 94], [160, 106, 70], [115, 76, 52],
     [78, 52, 36]], np.float64)
_HAIR = np.array(
    [[22, 17, 14], [58, 40, 27], [105, 72, 44], [165, 125, 80], [222, 192, 135], [148, 62, 28],
     [135, 132, 128], [222, 220, 214]], np.float64)
_HAIR_P = np.array([0.3, 0.22, 0.16, 0.09, 0.09, 0.05, 0.06, 0.03])
_IRIS = np.array(
    [[62, 40, 24], [102, 66, 36], [58, 96, 145], [74, 114, 76], [108, 110, 118], [128, 98, 52]], np.float64)
_IRIS_P = np.array([0.35, 0.25, 0.15, 0.1, 0.08, 0.07])


@dataclass
class Identity:
    """Stable parameters of one synthetic person (canonical face units: half face width ~ 1)."""

    points: np.ndarray  # [N, 3] canonical points: 88 landmarks, then the extras in ``blocks``
    blocks: dict[str, slice]
    skin: np.ndarray
    hair: np.ndarray
    brow: np.ndarray
    iris: np.ndarray
    lip: np.ndarray
    hair_style: int  # 0 bald, 1 short, 2 long, 3 fringe
    glasses: int  # 0 none, 1 round, 2 rectangular
    glasses_colour: np.ndarray
    beard: int  # 0 none, 1 full, 2 moustache, 3 goatee
    mole: bool
    eye_open: float
    mouth_width: float
    lip_upper: float
    palette: dict | None = None  # drawing colours as cv2 tuples, filled on first use
    polygons: dict | None = None  # point indices of the composite outlines


class _Blocks:
    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.slices: dict[str, slice] = {}
        self.n = 0

    def add(self, name: str, pts) -> None:
        pts = np.asarray(pts, np.float64).reshape(-1, 3)
        self.slices[name] = slice(self.n, self.n + len(pts))
        self.parts.append(pts)
        self.n += len(pts)


def _depth(x, y, w, top, low):
    """Depth of a point on the face: a half ellipsoid, zero at the silhouette."""
    h = np.where(y < 0, top, low)
    r = 1.0 - (x / w) ** 2 - (y / h) ** 2 * 0.45
    return 0.62 * np.sqrt(np.clip(r, 0.0, None))


def _pick(rng, probs):
    return int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum()))


def make_identity(seed: int, j: int, spread: float = 1.0) -> Identity:
    """The stable parameters of identity ``j``; ``spread`` scales how far identities lie apart."""
    rng = np.random.default_rng([seed, _ID_TAG, j])
    z = np.clip(rng.standard_normal(40), -2.5, 2.5) * spread

    def p(i, mean, sd):
        return mean + sd * z[i]

    w = p(0, 1.0, 0.06)  # half face width at the cheeks
    top = p(1, 1.28, 0.07)  # centre -> top of head
    low = p(2, 1.32, 0.08)  # centre -> chin
    taper = float(np.clip(p(3, 0.3, 0.08), 0.05, 0.55))
    chin_pow = float(np.clip(p(4, 1.0, 0.2), 0.55, 1.6))

    eye_y = p(5, -0.14, 0.035)
    eye_dx = p(6, 0.41, 0.03)
    eye_w = p(7, 0.17, 0.018)
    eye_h = p(8, 0.075, 0.012)
    eye_tilt = p(9, 0.0, 0.025)
    brow_gap = p(10, 0.19, 0.03)
    brow_len = p(11, 0.25, 0.025)
    brow_th = float(np.clip(p(12, 0.055, 0.015), 0.02, 0.1))
    brow_arch = p(13, 0.05, 0.025)
    brow_slant = p(14, 0.0, 0.03)
    nose_y = p(15, 0.3, 0.04)
    nose_w = p(16, 0.15, 0.022)
    nose_z = p(17, 0.34, 0.05)
    mouth_y = p(18, 0.66, 0.045)
    mouth_w = p(19, 0.28, 0.03)
    lip_u = float(np.clip(p(20, 0.05, 0.012), 0.02, 0.09))
    lip_l = float(np.clip(p(21, 0.065, 0.014), 0.03, 0.11))
    skin_u = float(np.clip(0.35 + 0.28 * z[22], 0.0, 1.0))
    hairline = p(23, -0.72, 0.09)
    hair_vol = float(np.clip(p(24, 0.1, 0.05), 0.0, 0.25))
    ear_y = p(25, -0.02, 0.05)
    ear_size = p(26, 0.19, 0.025)

    b = _Blocks()
    # contour: the lower part of a superellipse from temple to temple
    ang = np.linspace(math.radians(192), math.radians(-12), 21)
    c, s = np.cos(ang), np.sin(ang)
    sy = np.where(s > 0, np.abs(s) ** chin_pow, -np.abs(s))
    x = w * c * (1 - taper * np.clip(s, 0, None) ** 2)
    y = np.where(s > 0, low * sy, top * sy)
    b.add("contour", np.stack([x, y, np.full(21, 0.04) + 0.2 * np.clip(s, 0, None) ** 4], 1))

    def eye(cx):
        # ellipse angles: pi = the corner on the image left, then over the upper lid
        t = np.array([1.0, 0.75, 0.5, 0.25, 0.0, -0.25, -0.5, -0.75]) * math.pi
        ex = cx + eye_w * np.cos(t)
        ey = eye_y - np.sin(t) * np.where(np.sin(t) > 0, eye_h * 1.1, eye_h * 0.8)
        ey = ey - eye_tilt * np.clip(-np.cos(t), 0, None)  # outer corner up (positive tilt)
        return np.stack([ex, ey, _depth(ex, ey, w, top, low)], 1)

    left_eye = eye(-eye_dx)
    b.add("left_eye", left_eye)
    b.add("right_eye", left_eye * [-1, 1, 1])  # the exact mirror, index for index

    tb = np.array([-1.0, -0.33, 0.33, 1.0])  # outer end -> inner end
    bx = -eye_dx - 0.02 + tb * brow_len
    by = eye_y - brow_gap - brow_arch * (1 - tb**2) + brow_slant * tb
    th = brow_th * (0.6 + 0.4 * (tb + 1) / 2)  # thicker at the inner end
    brow_x = np.concatenate([bx, bx[::-1]])
    brow_y = np.concatenate([by - th / 2, (by + th / 2)[::-1]])
    left_brow = np.stack([brow_x, brow_y, _depth(brow_x, brow_y, w, top, low) + 0.03], 1)
    b.add("left_brow", left_brow)
    b.add("right_brow", left_brow * [-1, 1, 1])

    # mouth
    mx_u = np.array([-0.6, -0.22, 0.0, 0.22, 0.6])
    outer_x = np.concatenate([[-1.0], mx_u, [1.0], [0.6, 0.3, 0.0, -0.3, -0.6]]) * mouth_w
    outer_y = np.concatenate([[0.0], -lip_u * np.array([0.75, 1.05, 0.8, 1.05, 0.75]), [0.0],
                              lip_l * np.array([0.7, 0.95, 1.0, 0.95, 0.7])])
    inner_x = np.array([-0.82, -0.45, -0.15, 0.15, 0.45, 0.82, 0.45, 0.15, -0.15, -0.45]) * mouth_w
    inner_y = np.array([0.0, -0.12, -0.15, -0.15, -0.12, 0.0, 0.08, 0.1, 0.1, 0.08]) * lip_u
    mxs = np.concatenate([outer_x, inner_x])
    mys = mouth_y + np.concatenate([outer_y, inner_y])
    b.add("mouth", np.stack([mxs, mys, _depth(mxs, mys, w, top, low) + 0.06], 1))

    # nose: bridge, tip, lower edge
    bridge_t = np.linspace(0.0, 0.78, 4)
    nbx = np.zeros(4)
    nby = eye_y + 0.02 + bridge_t * (nose_y - eye_y - 0.02)
    nbz = 0.62 + bridge_t * nose_z * 0.85
    base_x = np.array([-1.0, -0.9, -0.5, -0.18, 0.18, 0.5, 0.9, 1.0]) * nose_w
    base_y = nose_y + np.array([-0.03, 0.035, 0.065, 0.075, 0.075, 0.065, 0.035, -0.03])
    base_z = 0.62 + nose_z * np.array([0.25, 0.3, 0.45, 0.6, 0.6, 0.45, 0.3, 0.25])
    nose = np.stack([np.concatenate([nbx, [0.0], base_x]), np.concatenate([nby, [nose_y], base_y]),
                     np.concatenate([nbz, [0.62 + nose_z], base_z])], 1)
    b.add("nose", nose)
    assert b.n == NUM_LANDMARKS

    # extras (not landmarks): head top, hair, ears, neck, glasses, beard, mole, box helpers
    ang = np.linspace(math.radians(-12), math.radians(-168), 13)
    hx, hy = w * np.cos(ang), top * np.sin(ang)
    b.add("head_top", np.stack([hx, hy, np.zeros(13) + 0.04], 1))
    vol = 1.0 + hair_vol
    ang = np.linspace(math.radians(15), math.radians(-195), 19)
    hair_outer = [w * vol * 1.04 * np.cos(ang), top * vol * np.sin(ang) - 0.03, np.zeros(19)]
    b.add("hair_outer", np.stack(hair_outer, 1))
    hl = np.linspace(-1, 1, 9)
    hl_x = hl * w * 0.93
    hl_y = hairline + 0.18 * hl**2 * (1 if rng.random() < 0.6 else -0.3)
    b.add("hairline", np.stack([hl_x, hl_y, _depth(hl_x, hl_y, w, top, low)], 1))
    fringe_y = eye_y - brow_gap - 0.12 + 0.06 * (np.arange(9) % 2)
    b.add("fringe", np.stack([hl_x * 0.98, fringe_y, _depth(hl_x, fringe_y, w, top, low)], 1))
    long_len = p(27, 1.6, 0.35)
    b.add("hair_long", [[-w * vol * 1.05, 0.0, -0.1], [-w * vol * 1.15, long_len, -0.2],
                        [w * vol * 1.15, long_len, -0.2], [w * vol * 1.05, 0.0, -0.1]])
    b.add("ears", [[-w * 0.99, ear_y, -0.05], [w * 0.99, ear_y, -0.05], [0, ear_size, 0]])
    b.add("neck", [[-0.45 * w, 0.6 * low, -0.2], [-0.5 * w, 2.3, -0.3], [0.5 * w, 2.3, -0.3],
                   [0.45 * w, 0.6 * low, -0.2]])
    b.add("shoulders", [[-0.55 * w, 1.55, -0.3], [-2.6, 2.2, -0.4], [-2.6, 3.2, -0.4], [2.6, 3.2, -0.4],
                        [2.6, 2.2, -0.4], [0.55 * w, 1.55, -0.3]])
    gang = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    gr = eye_w * p(28, 1.5, 0.1)
    square = 1 if rng.random() < 0.5 else 0
    gx = np.cos(gang) * gr
    gy = np.sin(gang) * gr * (0.75 if square else 0.85)
    if square:
        gx = np.sign(gx) * np.abs(gx) ** 0.6 * gr**0.4
        gy = np.sign(gy) * np.abs(gy) ** 0.6 * (gr * 0.75) ** 0.4
    lg = np.stack([-eye_dx + gx, eye_y + 0.01 + gy, np.full(12, 0.75)], 1)
    b.add("glasses_left", lg)
    b.add("glasses_right", lg * [-1, 1, 1])
    b.add("glasses_arms", [[-eye_dx - gr, eye_y, 0.7], [-w * 0.98, eye_y - 0.02, 0.05],
                           [eye_dx + gr, eye_y, 0.7], [w * 0.98, eye_y - 0.02, 0.05]])
    # beard: from the contour below the cheeks up around the mouth; moustache; goatee
    cx_, cy_ = b.parts[0][4:17, 0], b.parts[0][4:17, 1]
    beard_top = mouth_y - lip_u - 0.05
    inner_path = np.array([[mouth_w * 1.25, mouth_y + 0.02], [mouth_w * 0.9, beard_top],
                           [-mouth_w * 0.9, beard_top], [-mouth_w * 1.25, mouth_y + 0.02]])
    bxs = np.concatenate([cx_, inner_path[:, 0]])
    bys = np.concatenate([cy_, inner_path[:, 1]])
    b.add("beard", np.stack([bxs, bys, _depth(bxs, bys, w, top, low) + 0.05], 1))
    mus_x = np.array([-1.1, -0.5, 0.0, 0.5, 1.1, 0.5, 0.0, -0.5]) * mouth_w
    mus_y = mouth_y - lip_u + np.array([0.03, -0.06, -0.075, -0.06, 0.03, 0.0, -0.01, 0.0])
    b.add("moustache", np.stack([mus_x, mus_y, _depth(mus_x, mus_y, w, top, low) + 0.07], 1))
    gt_x = np.array([-0.55, 0.55, 0.45, 0.0, -0.45]) * mouth_w
    gt_y = np.array([mouth_y + lip_l + 0.03] * 2 + [low * 0.93, low, low * 0.93])
    b.add("goatee", np.stack([gt_x, gt_y, _depth(gt_x, gt_y, w, top, low) + 0.05], 1))
    mole_x, mole_y = rng.uniform(-0.65, 0.65) * w, rng.uniform(-0.3, 0.75)
    b.add("mole", [[mole_x, mole_y, float(_depth(mole_x, mole_y, w, top, low))], [0.022, 0, 0]])
    b.add("forehead", [[-0.5, eye_y - brow_gap - 0.38, 0.5], [0.5, eye_y - brow_gap - 0.38, 0.5]])
    b.add("cheeks", [[-0.55 * w, nose_y + 0.05, 0.4], [0.55 * w, nose_y + 0.05, 0.4]])

    # colours: categorical picks pulled towards a common mean when the spread is small
    def colour(base, mean):
        return np.clip(mean + spread * (base - mean), 0, 255)

    skin_base = np.interp(skin_u * 6, np.arange(7), np.arange(7))
    i0 = int(min(skin_base, 5))
    f = skin_base - i0
    skin = (1 - f) * _SKIN[i0] + f * _SKIN[i0 + 1] + rng.normal(0, 6, 3) * spread
    skin = colour(skin, _SKIN[2])
    hair = _HAIR[_pick(rng, _HAIR_P)] + rng.normal(0, 10, 3) * spread
    hair = colour(hair, _HAIR[1])
    iris = colour(_IRIS[_pick(rng, _IRIS_P)] + rng.normal(0, 8, 3), _IRIS[1])
    lip = colour(skin * np.array([0.86, 0.62, 0.62]) + rng.normal(0, 8, 3), _SKIN[2] * [0.86, 0.62, 0.62])
    brow = np.clip(hair * 0.7 if hair.mean() < 150 else hair * 0.55 + 20, 0, 255)
    hair_style = _pick(rng, np.array([0.12, 0.4, 0.3, 0.18]))
    glasses = _pick(rng, np.array([0.75, 0.13, 0.12]))
    glasses_colour = np.clip(rng.choice([20.0, 60.0, 120.0, 180.0]) + rng.normal(0, 15, 3), 0, 255)
    beard = _pick(rng, np.array([0.7, 0.12, 0.1, 0.08]))
    mole = bool(rng.random() < 0.25)
    return Identity(
        points=np.concatenate(b.parts), blocks=b.slices, skin=skin, hair=hair, brow=brow, iris=iris,
        lip=lip, hair_style=hair_style, glasses=glasses, glasses_colour=glasses_colour, beard=beard,
        mole=mole, eye_open=float(eye_h), mouth_width=float(mouth_w), lip_upper=lip_u,
    )
