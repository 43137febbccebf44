"""Synthetic face identities rendered with OpenCV primitives, with exact landmarks.

An *identity* is a fixed set of parameters (head shape, skin tone, eye/brow/nose/mouth geometry and
colour, hair, optional glasses, beard, mole) drawn from ``(seed, j)``; an *image* adds nuisance drawn
from ``(seed, j, k)``: pose (roll; yaw and pitch as foreshortening of a 3-D point set), expression,
illumination, blur, noise, JPEG, occluders, background. Image ``k`` of identity ``j`` is therefore the
same whatever the number of identities, images, workers or the order they are asked for.

Modes:
  ``aligned``  112x112 crops aligned to the ArcFace 5-point template (with simulated detector jitter),
               the input recognition models train on;
  ``wild``     a face at random pose and size in a cluttered 256x256 canvas, with its box, for
               detector and landmark work.

Every image comes with 88 landmarks (see :data:`LANDMARK_GROUPS`) and the 5 alignment points derived
from them (:func:`five_from_88`). On disk (:func:`write_dataset`) the layout is LFW's:
``root/<name>/<name>_<k:04d>.jpg`` with ``k`` 1-based, identity names ``id0000042``, plus
``root/landmarks.csv``; :func:`write_pairs` writes an LFW ``pairs.txt`` for those files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.align.transform import estimate_similarity, template_points
from faceforge.errors import UserError

# ---------------------------------------------------------------------------------------------------
# Landmark layout. "left" means image left (the subject's right), as in the 68-point iBUG scheme.
#   contour    21  image-left temple -> chin (index 10) -> image-right temple
#   left_eye    8  0 outer corner, 1-3 upper lid, 4 inner corner, 5-7 lower lid back to the outer
#   right_eye   8  the mirror image of left_eye, index for index (0 is the outer corner, image right)
#   left_brow   8  0-3 upper edge outer -> inner, 4-7 lower edge inner -> outer
#   right_brow  8  the mirror image of left_brow, index for index
#   mouth      22  outer lip: 0 left corner, 1-5 upper lip, 6 right corner, 7-11 lower lip right->left;
#                  inner lip: 12 left corner, 13-16 upper, 17 right corner, 18-21 lower right->left
#   nose       13  0-3 bridge top -> down, 4 tip, 5-12 lower edge left ala -> right ala
# ---------------------------------------------------------------------------------------------------
LANDMARK_GROUPS: dict[str, slice] = {
    "contour": slice(0, 21),
    "left_eye": slice(21, 29),
    "right_eye": slice(29, 37),
    "left_brow": slice(37, 45),
    "right_brow": slice(45, 53),
    "mouth": slice(53, 75),
    "nose": slice(75, 88),
}
NUM_LANDMARKS = 88
FIVE_NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
_NOSE_TIP = 75 + 4
_MOUTH_LEFT = 53 + 0
_MOUTH_RIGHT = 53 + 6


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_LANDMARKS)
    perm[0:21] = np.arange(20, -1, -1)
    perm[21:29], perm[29:37] = np.arange(29, 37), np.arange(21, 29)
    perm[37:45], perm[45:53] = np.arange(45, 53), np.arange(37, 45)
    outer = [6, 5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7]
    inner = [17, 16, 15, 14, 13, 12, 21, 20, 19, 18]
    perm[53:75] = 53 + np.array(outer + inner)
    perm[75:88] = 75 + np.array([0, 1, 2, 3, 4, 12, 11, 10, 9, 8, 7, 6, 5])
    return perm


# After a horizontal flip ``x -> W - x``, ``flipped[FLIP_PERMUTATION_88]`` is again in this layout.
FLIP_PERMUTATION_88: np.ndarray = _flip_permutation()


_FIVE_WEIGHTS = np.zeros((5, NUM_LANDMARKS))  # five points as a linear map of the 88
_FIVE_WEIGHTS[0, 21:29] = 1 / 8
_FIVE_WEIGHTS[1, 29:37] = 1 / 8
_FIVE_WEIGHTS[2, _NOSE_TIP] = _FIVE_WEIGHTS[3, _MOUTH_LEFT] = _FIVE_WEIGHTS[4, _MOUTH_RIGHT] = 1.0
# how far each mouth point follows an opening jaw; the chin follows with the lower contour
_MOUTH_DROP = np.zeros(22)
_MOUTH_DROP[[7, 8, 9, 10, 11, 18, 19, 20, 21]] = 1.0
_MOUTH_DROP[[0, 6, 12, 17]] = 0.45
_CHIN_DROP = 0.5 * np.clip(np.sin(np.linspace(-0.2, math.pi + 0.2, 21)), 0, None) ** 2
_LOWER_LID = [4, 5, 6, 7, 0]


def five_from_88(landmarks: np.ndarray) -> np.ndarray:
    """The 5 alignment points (eye centres, nose tip, mouth corners) of 88 landmarks [..., 88, 2]."""
    lm = np.asarray(landmarks)
    if lm.shape[-2:] != (NUM_LANDMARKS, 2):
        raise UserError(f"landmarks: expected shape [..., 88, 2], got {lm.shape}")
    return np.stack(
        [
            lm[..., LANDMARK_GROUPS["left_eye"], :].mean(-2),
            lm[..., LANDMARK_GROUPS["right_eye"], :].mean(-2),
            lm[..., _NOSE_TIP, :],
            lm[..., _MOUTH_LEFT, :],
            lm[..., _MOUTH_RIGHT, :],
        ],
        axis=-2,
    )


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


_NOISE_BANK: np.ndarray | None = None
_NOISE_SD = 32.0


def _noise_bank() -> np.ndarray:
    # one fixed field of Gaussian noise stored as uint8 around 128; images take random windows of it
    # (drawing 37k normals per 112x112 image would cost a third of the time budget)
    global _NOISE_BANK
    if _NOISE_BANK is None:
        g = np.random.default_rng(12345).standard_normal((640, 640, 3)) * _NOISE_SD + 128
        _NOISE_BANK = np.clip(np.round(g), 0, 255).astype(np.uint8)
    return _NOISE_BANK


def _light_field(n: int, gain: float, strength: float, angle: float, cast: np.ndarray) -> np.ndarray:
    """A linear illumination ramp times a colour cast, (n, n, 3) float32, by upsampling a 4x4 grid
    (bilinear interpolation of a linear function is exact; the outer eighth is clamped)."""
    import cv2

    c = ((np.arange(4) + 0.5) * (n / 4) - n / 2) / n  # where the 4 grid cells' centres land
    ramp = math.cos(angle) * c[None, :] + math.sin(angle) * c[:, None]
    small = (gain * (1 + strength * ramp))[..., None] * cast
    return cv2.resize(small.astype(np.float32), (n, n), interpolation=cv2.INTER_LINEAR)


def _rot(yaw: float, pitch: float) -> np.ndarray:
    """The first two rows of R_x(pitch) @ R_y(yaw): orthographic projection after head rotation."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    return np.array([[cy, 0.0, sy], [sp * sy, cp, -sp * cy]])


SH = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << SH


def _fx(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * _ONE).astype(np.int32)


def _col(c) -> tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


def _prepare_drawing(ident: Identity) -> None:
    """Colours and outline indices that every image of an identity reuses."""
    skin, hair = ident.skin, ident.hair
    shade = skin * 0.82
    ident.palette = {
        "skin": _col(skin), "shade": _col(shade), "neck": _col(shade * 0.92),
        "back_hair": _col(hair * 0.85),
        "hair": _col(hair), "stubble": _col(hair * 0.5 + skin * 0.5), "beard": _col(hair * 0.9),
        "mole": _col(skin * 0.45), "lid": _col(hair * 0.3 + 10), "low_lid": _col(shade * 0.85),
        "iris": _col(ident.iris), "brow": _col(ident.brow), "nose": _col(shade * 0.9),
        "nose_base": _col(shade * 0.75), "nostril": _col(shade * 0.45), "lip": _col(ident.lip),
        "lip_line": _col(ident.lip * 0.55), "glasses": _col(ident.glasses_colour),
        "occluder": _col(skin * 0.9),
    }
    b = ident.blocks

    def idx(*parts):
        return np.concatenate([np.arange(p.start, p.stop)[::-1] if rev else np.arange(p.start, p.stop)
                               for p, rev in parts])

    edge = b["fringe"] if ident.hair_style == 3 else b["hairline"]
    ident.polygons = {
        "head": idx((slice(0, 21), False), (b["head_top"], False)),
        "back_hair": idx((b["hair_outer"], True), (b["hair_long"], True)),
        "cap": idx((b["hair_outer"], False), (edge, False)),
    }


class SyntheticFaces:
    """Renderer of ``(identity j, image k)`` pairs.

    ``difficulty`` (default 1.0, >= 0) scales every nuisance (pose, expression, light, blur, noise,
    JPEG, occluders, alignment jitter) and shrinks the spread between identities
    (``spread = clip(1.25 - 0.25 * difficulty, 0.3, 1.25)``).
    """

    def __init__(self, seed: int = 0, mode: str = "aligned", difficulty: float = 1.0,
                 size: int | None = None):
        if mode not in MODES:
            raise UserError(f"synthetic mode: expected one of {', '.join(MODES)}, got '{mode}'")
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise UserError(f"synthetic seed: expected a non-negative integer, got {seed!r}")
        if not (math.isfinite(difficulty) and 0 <= difficulty <= 10):
            raise UserError(f"synthetic difficulty: expected a number in [0, 10], got {difficulty!r}")
        size = size or (ALIGNED_SIZE if mode == "aligned" else WILD_SIZE)
        if not 16 <= size <= 1024:
            raise UserError(f"synthetic size: expected 16..1024 pixels, got {size}")
        self.seed, self.mode, self.difficulty, self.size = int(seed), mode, float(difficulty), int(size)
        self.spread = float(np.clip(1.25 - 0.25 * difficulty, 0.3, 1.25))
        self.template = template_points("arcface", self.size) if mode == "aligned" else None
        self._ids: dict[int, Identity] = {}

    def identity(self, j: int) -> Identity:
        ident = self._ids.get(j)
        if ident is None:
            if len(self._ids) > 4096:
                self._ids.clear()
            ident = self._ids[j] = make_identity(self.seed, j, self.spread)
            _prepare_drawing(ident)
        return ident

    # ----- geometry ---------------------------------------------------------------------------
    def _geometry(self, j: int, k: int, rng: np.random.Generator):
        """Image-space points of every block, the 2-D scale (px per face unit) and the expression."""
        ident = self.identity(j)
        d = self.difficulty
        g = rng.random(16)
        jit = rng.standard_normal(10)
        pts = ident.points.copy()
        smile = min(max((g[0] - 0.35) * 1.5 * min(d, 1.5), 0.0), 1.0)
        mouth_open = min(max((g[1] - 0.55) * 2.2 * min(d, 1.5), 0.0), 1.0)
        brow_up = (g[2] - 0.4) * 0.08 * d
        # expression: a smile lifts and widens the corners, opening drops the lower lip and the jaw
        mouth = pts[53:75]
        if smile > 0:
            mouth[:, 1] -= smile * 0.075 * (mouth[:, 0] / ident.mouth_width) ** 2
            mouth[:, 0] *= 1 + 0.12 * smile
        if mouth_open > 0:
            drop = mouth_open * 0.14
            mouth[:, 1] += drop * _MOUTH_DROP
            pts[0:21, 1] += drop * _CHIN_DROP
        pts[37:53, 1] -= brow_up
        yaw = math.radians((g[3] * 2 - 1) * 32 * d)
        pitch = math.radians((g[4] * 2 - 1) * 18 * d)
        p2 = pts @ _rot(yaw, pitch).T  # orthographic projection of the rotated head
        if self.mode == "aligned":
            five = _FIVE_WEIGHTS @ p2[:NUM_LANDMARKS]
            # a detector's five points are off by a pixel or two: align with perturbed points
            # (jitter in output pixels, taken back to face units through the inter-ocular distance)
            px_per_unit = (self.template[1, 0] - self.template[0, 0]) / max(five[1, 0] - five[0, 0], 1e-6)
            noisy = five + jit.reshape(5, 2) * (1.2 * d * self.size / 112 / px_per_unit)
            m = estimate_similarity(noisy, self.template)
            a, t = m[:, :2], m[:, 2]
        else:
            roll = math.radians(float(np.clip(jit[0], -2.5, 2.5)) * 12 * d)
            face_px = self.size * (0.07 + 0.2 * g[5] ** 1.5)  # half face width in pixels
            c, s = math.cos(roll) * face_px, math.sin(roll) * face_px
            a = np.array([[c, -s], [s, c]])
            lo, hi = face_px * 1.5, self.size - face_px * 1.5
            t = np.array([lo + (hi - lo) * g[6], lo + (hi - lo) * g[7]])
        img_pts = p2 @ a.T + t
        scale = math.sqrt(abs(a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]))
        return ident, img_pts, scale, (smile, mouth_open, yaw, g[8:16])

    def geometry(self, j: int, k: int) -> dict[str, np.ndarray]:
        """Landmarks [88, 2], five points [5, 2] and face box [x1, y1, x2, y2] of image k of id j."""
        rng = np.random.default_rng([self.seed, _IMG_TAG, j, k])
        ident, pts, _, _ = self._geometry(j, k, rng)
        return self._truth(ident, pts)

    def _truth(self, ident: Identity, pts: np.ndarray) -> dict[str, np.ndarray]:
        lm = pts[:NUM_LANDMARKS].astype(np.float32)
        top = min(float(lm[:, 1].min()), float(pts[ident.blocks["forehead"], 1].min()))
        x = lm[:, 0]
        box = np.array([x.min(), top, x.max(), lm[:, 1].max()], np.float32)
        if self.mode == "wild":  # a detector's box stays inside the canvas
            np.clip(box, 0, self.size, out=box)
        return {"landmarks": lm, "five": (_FIVE_WEIGHTS @ lm).astype(np.float32), "box": box}

    # ----- pixels -------------------------------------------------------------------------------
    def render(self, j: int, k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Image k of identity j as RGB uint8 (size x size x 3) and its ground truth."""
        import cv2

        rng = np.random.default_rng([self.seed, _IMG_TAG, j, k])
        ident, pts, scale, (smile, mouth_open, yaw, light) = self._geometry(j, k, rng)
        d = self.difficulty
        a = rng.random(24)
        n = self.size
        B = ident.blocks
        P = _fx(pts)  # every point in cv2's fixed point, once
        lw = max(1, int(round(scale * 0.025)))
        aa = cv2.LINE_AA
        fill, poly, ellipse = cv2.fillPoly, cv2.polylines, cv2.ellipse

        # background: a colour and a few shapes (many more in the wild canvas)
        bg = a[0:3] * 215 + 20
        img = np.empty((n, n, 3), np.uint8)
        cv2.rectangle(img, (0, 0), (n, n), _col(bg), -1)
        shapes = rng.random((2 + int(a[3] * 3) + (8 if self.mode == "wild" else 0), 8))
        for sh in shapes:
            colour = _col(sh[5:8] * 235 + 10)
            p0 = (int(sh[1] * n * _ONE), int(sh[2] * n * _ONE))
            r = int((0.05 + sh[3] * 0.3) * n * _ONE)
            if sh[0] < 0.4:
                cv2.circle(img, p0, r, colour, -1, aa, SH)
            elif sh[0] < 0.8:
                cv2.rectangle(img, p0, (p0[0] + r, p0[1] + int(sh[4] * r * 2)), colour, -1, aa, SH)
            else:
                cv2.line(img, p0, (p0[0] + r, p0[1] - r), colour, max(1, int(sh[4] * n * 0.04)), aa, SH)

        c = ident.palette
        polys = ident.polygons
        # shoulders and neck, long hair behind the head, ears, then the head itself
        fill(img, [P[B["shoulders"]]], _col(a[5:8] * 235 + 10), aa, SH)
        fill(img, [P[B["neck"]]], c["neck"], aa, SH)
        if ident.hair_style == 2:
            fill(img, [P[polys["back_hair"]]], c["back_hair"], aa, SH)
        ear_r = max(1, int(ident.points[B["ears"]][2, 1] * scale * _ONE))
        ears = P[B["ears"]]
        for e in (ears[0], ears[1]):
            ellipse(img, (int(e[0]), int(e[1])), (int(ear_r * 0.6), ear_r), 0, 0, 360, c["shade"], -1, aa, SH)
        fill(img, [P[polys["head"]]], c["skin"], aa, SH)
        # the cheek turned away from the camera is a little darker
        cheek = P[B["cheeks"]][1 if yaw > 0 else 0]
        cr = int(scale * 0.32 * _ONE)
        ellipse(img, (int(cheek[0]), int(cheek[1])), (cr, int(cr * 1.4)), 0, 0, 360,
                _col(ident.skin * (0.96 - 0.1 * abs(math.sin(yaw)))), -1, aa, SH)
        if ident.mole:
            mr = max(1, int(ident.points[B["mole"]][1, 0] * scale * _ONE))
            mole = P[B["mole"]][0]
            cv2.circle(img, (int(mole[0]), int(mole[1])), mr, c["mole"], -1, aa, SH)

        # hair on top: a cap down to the hairline or a fringe; a shadow of stubble when bald
        if ident.hair_style == 0:
            poly(img, [P[B["head_top"]]], False, c["stubble"], lw, aa, SH)
        else:
            fill(img, [P[polys["cap"]]], c["hair"], aa, SH)

        # beard before the mouth so the lips stay on top
        beard_col = c["beard"]
        if ident.beard == 1:
            fill(img, [P[B["beard"]]], beard_col, aa, SH)
        if ident.beard in (1, 2):
            fill(img, [P[B["moustache"]]], beard_col, aa, SH)
        if ident.beard == 3:
            fill(img, [P[B["goatee"]]], beard_col, aa, SH)

        # eyes: white, iris, pupil, lids; an occasional blink
        eye_open = 0.75 + 0.35 * a[8] if a[9] > 0.04 * d else 0.15
        iris_r = ident.eye_open * 1.15 * scale * _ONE
        ir = (int(iris_r * 0.95), max(1, int(iris_r * min(1.0, eye_open * 0.95))))
        gaze = (a[10] - 0.5) * iris_r * 0.6
        lid, low_lid = c["lid"], c["low_lid"]
        eyes = pts[21:37].reshape(2, 8, 2)
        centres = eyes.mean(1, keepdims=True)
        e_draw = _fx(centres + (eyes - centres) * [1.0, eye_open])
        for e, cen in zip(e_draw, centres[:, 0] * _ONE):
            fill(img, [e], (236.0, 232.0, 226.0), aa, SH)
            ic = (int(cen[0] + gaze), int(cen[1]))
            ellipse(img, ic, ir, 0, 0, 360, c["iris"], -1, aa, SH)
            cv2.circle(img, ic, max(1, int(iris_r * 0.45)), (15.0, 12.0, 12.0), -1, aa, SH)
            poly(img, [e[0:5]], False, lid, lw, aa, SH)
            poly(img, [e[_LOWER_LID]], False, low_lid, 1, aa, SH)
        fill(img, [P[37:45], P[45:53]], c["brow"], aa, SH)

        # nose: a shadow down one side of the bridge, the lower edge and the nostrils
        nose = P[75:88]
        side = nose[[1, 3, 4, 5, 6]] if light[0] > 0.5 else nose[[1, 3, 4, 12, 11]]
        poly(img, [side], False, c["nose"], lw, aa, SH)
        poly(img, [nose[5:13]], False, c["nose_base"], lw, aa, SH)
        nr = max(1, int(scale * 0.03 * _ONE))
        for i in (7, 10):
            ellipse(img, (int(nose[i, 0]), int(nose[i, 1])), (int(nr * 1.4), nr), 0, 0, 360,
                    c["nostril"], -1, aa, SH)

        # mouth: lips, then the opening and teeth
        mouth = P[53:75]
        fill(img, [mouth[:12]], c["lip"], aa, SH)
        inner = mouth[12:22]
        if mouth_open > 0.05:
            fill(img, [inner], (60.0, 20.0, 25.0), aa, SH)
            if mouth_open > 0.3:
                fill(img, [inner[:6]], (225.0, 220.0, 210.0), aa, SH)
        poly(img, [inner[:6]], False, c["lip_line"], lw, aa, SH)

        if ident.glasses:
            gl, gr, arms = P[B["glasses_left"]], P[B["glasses_right"]], P[B["glasses_arms"]]
            gcol = c["glasses"]
            poly(img, [gl, gr], True, gcol, lw, aa, SH)
            poly(img, [np.stack([gl[0], gr[6]]), arms[:2], arms[2:]], False, gcol, lw, aa, SH)

        # an occluder over part of the face (hand, sticker, scarf)
        truth = self._truth(ident, pts)
        if a[11] < 0.12 * d:
            box = truth["box"]
            fw, fh = box[2] - box[0], box[3] - box[1]
            ox, oy = box[0] + a[12] * fw, box[1] + a[13] * fh
            ow, oh = (0.2 + 0.3 * a[14]) * fw, (0.15 + 0.3 * a[15]) * fh
            ocol = _col(rng.random(3) * 255) if a[16] < 0.6 else c["occluder"]
            if a[17] < 0.5:
                corner = (int((ox + ow) * _ONE), int((oy + oh) * _ONE))
                cv2.rectangle(img, (int(ox * _ONE), int(oy * _ONE)), corner, ocol, -1, aa, SH)
            else:
                ellipse(img, (int(ox * _ONE), int(oy * _ONE)), (int(ow * _ONE / 2), int(oh * _ONE / 2)),
                        float(a[18] * 180), 0, 360, ocol, -1, aa, SH)

        # illumination (directional ramp, gain, colour cast), sensor noise, blur, JPEG
        field = _light_field(
            n,
            gain=min(max(1 + (light[3] - 0.5) * 0.5 * d, 0.35), 1.8),
            strength=1.1 * d * light[2],
            angle=light[1] * 2 * math.pi,
            cast=1 + (light[4:7] - 0.5) * 0.16 * d,
        )
        img = cv2.multiply(img, field, dtype=cv2.CV_8U)
        sigma = 7.0 * d * a[19]
        if sigma > 0.5:
            bank = _noise_bank()
            oy, ox = int(a[20] * (bank.shape[0] - n)), int(a[21] * (bank.shape[1] - n))
            beta = sigma / _NOISE_SD
            img = cv2.addWeighted(img, 1.0, bank[oy : oy + n, ox : ox + n], beta, -128.0 * beta)
        blur = 1.3 * d * a[22] * n / 112
        if blur > 0.35:
            ksize = 2 * int(math.ceil(2 * blur)) + 1  # +-2 sigma is enough for a soft blur
            img = cv2.GaussianBlur(img, (ksize, ksize), blur)
        if a[23] < 0.35 * min(d, 2.0):
            q = int(30 + 65 * light[7])
            buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1]
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        return img, truth


# ---------------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------------


def identity_name(j: int) -> str:
    return f"id{j:07d}"


def image_name(j: int, k: int) -> str:
    """Relative path of image ``k`` (0-based) of identity ``j``: LFW style, 1-based on disk."""
    name = identity_name(j)
    return f"{name}/{name}_{k + 1:04d}.jpg"


def landmarks_header() -> list[str]:
    cols = ["path", "identity"]
    cols += [f"lm{i}_{c}" for i in range(NUM_LANDMARKS) for c in "xy"]
    cols += [f"{n}_{c}" for n in FIVE_NAMES for c in "xy"]
    return cols + ["box_x1", "box_y1", "box_x2", "box_y2"]


def _check_counts(n_ids: int, k: int, offset: int) -> None:
    if n_ids < 1:
        raise UserError(f"identities: expected at least 1, got {n_ids}")
    if k < 1:
        raise UserError(f"images: expected at least 1 per identity, got {k}")
    if offset < 0:
        raise UserError(f"offset: expected a non-negative identity index, got {offset}")


def _render_identities(args) -> list[str]:
    import cv2

    cv2.setNumThreads(1)
    root, ids, k, seed, mode, difficulty, size = args
    faces = SyntheticFaces(seed=seed, mode=mode, difficulty=difficulty, size=size)
    rows = []
    for j in ids:
        folder = Path(root) / identity_name(j)
        folder.mkdir(parents=True, exist_ok=True)
        for kk in range(k):
            img, truth = faces.render(j, kk)
            rel = image_name(j, kk)
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            path = Path(root) / rel
            # rename into place so a reader never sees half an image; no fsync per image (too slow
            # for 10^5 files) -- landmarks.csv, written last and atomically, marks a finished set
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, path)
            nums = np.concatenate([truth["landmarks"].ravel(), truth["five"].ravel(), truth["box"]])
            rows.append(",".join([rel, identity_name(j)] + [f"{v:.3f}" for v in nums]))
    return rows


def write_dataset(root, n_ids: int, k: int, mode: str = "aligned", offset: int = 0, seed: int = 0,
                  workers: int = 1, difficulty: float = 1.0, size: int | None = None,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Render identities ``offset .. offset+n_ids-1`` with ``k`` images each under ``root``.

    Writes ``root/<name>/<name>_<k:04d>.jpg`` and ``root/landmarks.csv`` (path, identity, 176
    landmark numbers x0,y0,..., 10 five-point numbers, box x1,y1,x2,y2; pixel coordinates of the
    written image). ``progress(n)`` is called with the number of images just finished.
    """
    from faceforge.atomic import atomic_write_text

    _check_counts(n_ids, k, offset)
    SyntheticFaces(seed=seed, mode=mode, difficulty=difficulty, size=size)  # validates the options
    if workers < 1:
        raise UserError(f"workers: expected at least 1, got {workers}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"output: {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    ids = list(range(offset, offset + n_ids))
    chunk = max(1, min(16, n_ids // (workers * 4) or 1))
    jobs = [(str(root), ids[i : i + chunk], k, seed, mode, difficulty, size) for i in range(0, n_ids, chunk)]
    results: dict[int, list[str]] = {}
    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = _render_identities(job)
            if progress:
                progress(len(job[1]) * k)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            it = pool.imap_unordered(_indexed, list(enumerate(jobs)))
            for i, rows in it:
                results[i] = rows
                if progress:
                    progress(len(jobs[i][1]) * k)
    lines = [",".join(landmarks_header())]
    for i in range(len(jobs)):
        lines.extend(results[i])
    atomic_write_text(root / "landmarks.csv", "\n".join(lines) + "\n")
    return root


def _indexed(item):
    i, job = item
    return i, _render_identities(job)


def make_pairs(n_ids: int, k: int, folds: int = 10, per_fold: int | None = None, offset: int = 0,
               seed: int = 0) -> str:
    """The text of an LFW-layout pairs file (see :func:`write_pairs`); checks the request first."""
    _check_counts(n_ids, k, offset)
    if folds < 1:
        raise UserError(f"pairs: expected at least 1 fold, got {folds}")
    if k < 2:
        raise UserError("pairs: same-identity pairs need at least 2 images per identity")
    if n_ids < 2 * folds:
        raise UserError(
            f"pairs: {folds} folds of disjoint identities need at least {2 * folds} identities, got {n_ids}"
        )
    rng = np.random.default_rng([seed, 0x9A, offset, n_ids, k, folds])
    groups = np.array_split(offset + rng.permutation(n_ids), folds)
    same_cap = min(len(g) * k * (k - 1) // 2 for g in groups)
    diff_cap = min(len(g) * (len(g) - 1) // 2 * k * k for g in groups)
    cap = min(same_cap, diff_cap)
    if per_fold is None:
        per_fold = min(300, cap)
    if not 1 <= per_fold <= cap:
        raise UserError(f"pairs: {per_fold} pairs per fold requested; these identities allow 1..{cap}")
    lines = [f"{folds}\t{per_fold}"]
    for g in groups:
        # enumerate every candidate, then sample without replacement: exact counts, no retry loops
        same = [(int(j), a, b) for j in np.sort(g) for a in range(k) for b in range(a + 1, k)]
        pick = np.sort(rng.choice(len(same), per_fold, replace=False))
        lines += [f"{identity_name(same[i][0])}\t{same[i][1] + 1}\t{same[i][2] + 1}" for i in pick]
        ids = np.sort(g)
        n_pairs = len(ids) * (len(ids) - 1) // 2
        chosen = np.sort(rng.choice(n_pairs * k * k, per_fold, replace=False))
        iu, ju = np.triu_indices(len(ids), 1)
        for c in chosen:
            pair, rest = divmod(int(c), k * k)
            a, b = divmod(rest, k)
            j1, j2 = int(ids[iu[pair]]), int(ids[ju[pair]])
            lines.append(f"{identity_name(j1)}\t{a + 1}\t{identity_name(j2)}\t{b + 1}")
    return "\n".join(lines) + "\n"


def write_pairs(root, n_ids: int, k: int, folds: int = 10, per_fold: int | None = None, offset: int = 0,
                seed: int = 0, filename: str = "pairs.txt") -> Path:
    """Write an LFW-layout verification pairs file for identities ``offset .. offset+n_ids-1``.

    Line 1 is ``<folds><TAB><n>``; each fold then lists ``n`` same pairs ``name<TAB>i<TAB>j`` followed
    by ``n`` different pairs ``name1<TAB>i<TAB>name2<TAB>j``, with 1-based image numbers: ``name i`` is
    the file ``<root>/<name>/<name>_<i:04d>.jpg`` as written by :func:`write_dataset`. Folds hold
    disjoint identities, as LFW's do. ``n`` defaults to min(300, what the identities allow).
    """
    from faceforge.atomic import atomic_write_text

    text = make_pairs(n_ids, k, folds, per_fold, offset, seed)
    path = Path(root) / filename
    atomic_write_text(path, text)
    return path
