"""Masks that follow the face: an outline from 88 landmarks and a piecewise-affine texture warp.

FaceX-Zoo's FMA-3D fits a 3-D face and paints a mask in its UV space, so the mask turns with the
head and hugs the jaw. This module gets the same two properties from the 88 landmarks alone
(``faceforge.data.synthetic.layout``: contour 0-20 with the chin at 10, eyes 21-36, mouth 53-74,
nose bridge 75-79 down to the tip 79):

* **Outline.** Everything is built in the face's own frame (origin the eye centre, ``y`` towards
  the mouth centre, unit = eye-to-mouth distance, ``x`` across), so roll is free. The top edge runs
  from a point on the nose bridge to the two cheek contours; the sides follow the contour down to
  the jaw; the bottom follows the jaw under the chin, a little outside it. On a turned head the far
  side is short and the near side long because the contour is; a nose or mouth that sticks out past
  the far contour (large yaw) pushes that side out, so the mask still covers it. The top edge is
  kept below every eye point and above the nose tip.
* **Texture.** The four sides bound a Coons patch: a ``NU x NV`` grid whose middle column runs
  from the bridge to the chin, split into triangles. Each triangle maps its corner of the flat
  texture (``u`` across, ``v`` down, both 0..1) onto the photo by its own affine map (a
  piecewise-affine warp); pixels are assigned to triangles by rasterising triangle ids, then one
  remap reads the texture. Pleats, seams and folds are drawn in ``(u, v)``, so they bend with it.

Shapes: ``surgical`` (flat top, pleats, to the jaw angle), ``cloth`` (arched top, centre seam,
round bottom), ``n95`` (pointed nose, horizontal fold, convex shading, to the chin). Every random
choice comes from the caller's ``rng``, so ``file_rng(seed, name)`` makes a data set reproducible.
"""

from __future__ import annotations

import numpy as np

from faceforge.data.synthetic.layout import LANDMARK_GROUPS, NUM_LANDMARKS
from faceforge.errors import UserError

SHAPES = ("surgical", "cloth", "n95")
CONTOUR = np.arange(LANDMARK_GROUPS["contour"].start, LANDMARK_GROUPS["contour"].stop)
CHIN = 10
EYES = np.r_[LANDMARK_GROUPS["left_eye"], LANDMARK_GROUPS["right_eye"]]
MOUTH = np.arange(LANDMARK_GROUPS["mouth"].start, LANDMARK_GROUPS["mouth"].stop)
BRIDGE = np.arange(75, 80)  # bridge top (between the eyes) -> nose tip
NOSE_TIP = 79
NOSE_LOWER = np.arange(80, 88)
NU, NV = 16, 8  # mesh cells across and down

# per shape: (bridge fraction range, side drop, top bow, bottom corner level, under-chin margin),
# levels in eye-to-mouth units below the eye line
_SHAPE_PARAMS = {
    "surgical": ((0.35, 0.6), (0.04, 0.14), (0.0, 0.06), (1.25, 1.45), (0.06, 0.14)),
    "cloth": ((0.3, 0.55), (0.12, 0.25), (0.08, 0.16), (1.05, 1.25), (0.04, 0.1)),
    "n95": ((0.2, 0.4), (0.2, 0.32), (-0.08, -0.02), (1.0, 1.15), (0.0, 0.06)),
}
# drawn colours (RGB): surgical blue/white/green/black, cloth greys/pinks/navy/beige, n95 whites
_COLOURS = {
    "surgical": ((120, 170, 215), (235, 238, 240), (110, 175, 150), (35, 35, 40)),
    "cloth": ((150, 150, 155), (215, 170, 185), (45, 55, 95), (200, 190, 160), (30, 30, 32), (120, 40, 50)),
    "n95": ((240, 240, 236), (225, 228, 230), (205, 200, 190)),
}
EYE_CLEARANCE = 0.08  # the top edge stays this far (eye-to-mouth units) below the lowest eye point
TIP_COVER = 0.12  # and this far above the nose tip


def _check_points(points) -> np.ndarray:
    p = np.asarray(points, np.float64)
    if p.shape != (NUM_LANDMARKS, 2) or not np.isfinite(p).all():
        raise UserError(f"mask landmarks: expected 88 finite points [88, 2], got shape {p.shape}")
    return p


class FaceFrame:
    """The face's own frame: ``to_frame`` / ``to_image`` between image pixels and (across, down)
    coordinates with the eye centre at 0 and the mouth centre at (0, 1)."""

    def __init__(self, points: np.ndarray):
        eyes = points[EYES].mean(0)
        mouth = points[MOUTH].mean(0)
        down = mouth - eyes
        self.scale = float(np.hypot(*down))
        if self.scale < 1e-6:
            raise UserError("mask landmarks: eyes and mouth coincide")
        self.down = down / self.scale
        self.across = np.array([self.down[1], -self.down[0]])  # image-right for an upright face
        self.origin = eyes

    def to_frame(self, p: np.ndarray) -> np.ndarray:
        d = (np.asarray(p, np.float64) - self.origin) / self.scale
        return np.stack([d @ self.across, d @ self.down], -1)

    def to_image(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.float64)
        return self.origin + self.scale * (q[..., :1] * self.across + q[..., 1:2] * self.down)


def head_turn(points) -> float:
    """How far the head is turned: the nose tip's place between the two ends of the contour, across
    the face (0 frontal, about +-0.4 at a three-quarter view; the sign says which way)."""
    q = FaceFrame(_check_points(points)).to_frame(points)
    left, right = q[CONTOUR[0], 0], q[CONTOUR[-1], 0]
    return float((q[NOSE_TIP, 0] - left) / max(right - left, 1e-6) - 0.5)


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along the polyline ``curve``."""
    seg = np.hypot(*np.diff(curve, axis=0).T)
    s = np.r_[0.0, np.cumsum(seg)]
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, curve[:, 0]), np.interp(t, s, curve[:, 1])], -1)


def _contour_at(contour: np.ndarray, level: float) -> float:
    """Fractional index along a half contour (temple -> chin, frame coordinates) where it reaches
    ``level`` going down; the end nearest to it when it never does."""
    y = np.maximum.accumulate(contour[:, 1])  # monotone for interp
    return float(np.interp(level, y + np.arange(len(y)) * 1e-9, np.arange(len(y))))


def _sub_curve(contour: np.ndarray, a: float, b: float) -> np.ndarray:
    """The polyline of ``contour`` between fractional indices ``a`` < ``b``."""
    idx = np.arange(len(contour))
    pa = np.array([np.interp(a, idx, contour[:, k]) for k in (0, 1)])
    pb = np.array([np.interp(b, idx, contour[:, k]) for k in (0, 1)])
    inner = contour[(idx > a) & (idx < b)]
    return np.vstack([pa, inner, pb])


def _push_out(side: np.ndarray, must: np.ndarray, sign: float, margin: float) -> np.ndarray:
    """Move a side curve outwards (``sign`` -1 = left, +1 = right) past every ``must`` point at its
    height, so a nose or mouth that sticks out past the far contour is still covered."""
    out = side.copy()
    for i, (x, y) in enumerate(side):
        near = must[np.abs(must[:, 1] - y) < 0.35]
        if len(near):
            extreme = near[:, 0].max() if sign > 0 else near[:, 0].min()
            out[i, 0] = max(x, extreme + margin) if sign > 0 else min(x, extreme - margin)
    return out


def mask_geometry(points, rng: np.random.Generator, shape: str | None = None) -> dict:
    """The mask on one face: ``outline`` [N, 2] (image pixels, closed polygon), ``mesh`` [NV+1, NU+1, 2]
    (image pixels; row 0 the top edge, column 0 the image-left side), ``shape``, ``frame`` and the
    corners. ``shape`` None draws one of :data:`SHAPES`."""
    p = _check_points(points)
    if shape is None:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
    if shape not in SHAPES:
        raise UserError(f"mask shape: '{shape}' is not one of {', '.join(SHAPES)}")
    (f_lo, f_hi), (d_lo, d_hi), (b_lo, b_hi), (c_lo, c_hi), (m_lo, m_hi) = _SHAPE_PARAMS[shape]
    frame = FaceFrame(p)
    q = frame.to_frame(p)
    contour = q[CONTOUR]
    left, right = contour[: CHIN + 1], contour[CHIN:][::-1]  # each temple -> chin

    # top of the mask on the bridge, between the eyes' lowest point and the nose tip
    f = rng.uniform(f_lo, f_hi) * (len(BRIDGE) - 1)
    bridge = np.array([np.interp(f, np.arange(len(BRIDGE)), q[BRIDGE, k]) for k in (0, 1)])
    eye_low, tip = q[EYES, 1].max(), q[NOSE_TIP, 1]
    lo, hi = eye_low + EYE_CLEARANCE, tip - TIP_COVER
    bridge[1] = np.clip(bridge[1], lo, hi) if lo <= hi else (eye_low + tip) / 2

    drop, bow = rng.uniform(d_lo, d_hi), rng.uniform(b_lo, b_hi)
    corner_level = rng.uniform(c_lo, c_hi)
    margin = rng.uniform(m_lo, m_hi)
    chin_y = q[CONTOUR[CHIN], 1]
    corner_level = min(corner_level, chin_y - 0.1)
    must = np.vstack([q[NOSE_LOWER], q[[NOSE_TIP]], q[MOUTH]])
    sides = []
    for half, sign in ((left, -1.0), (right, 1.0)):
        a = _contour_at(half, bridge[1] + drop)
        b = max(_contour_at(half, corner_level), a + 0.5)
        side = _resample(_sub_curve(half, a, min(b, CHIN - 0.25)), NV + 1)
        side[:, 0] += sign * 0.02  # just outside the face outline
        sides.append(_push_out(side, must, sign, 0.06))
    left_side, right_side = sides

    # top: corner -> bridge -> corner, bowed up (cloth), flat (surgical) or pointed (n95)
    def top_half(corner, tip_pt, n):
        s = np.linspace(0.0, 1.0, n)[:, None]
        line = corner + s * (tip_pt - corner)
        length = np.hypot(*(tip_pt - corner))
        return line - np.array([0.0, 1.0]) * bow * length * np.sin(np.pi * s) ** 0.8

    half_n = NU // 2 + 1
    top = np.vstack([top_half(left_side[0], bridge, half_n),
                     top_half(right_side[0], bridge, half_n)[::-1][1:]])
    # keep every eye point above the top edge (a bowed or steep edge could reach a lower lid)
    for x, y in q[EYES]:
        edge = np.interp(x, top[:, 0], top[:, 1]) if top[0, 0] < x < top[-1, 0] else np.inf
        if y + EYE_CLEARANCE > edge:
            top[:, 1] += y + EYE_CLEARANCE - edge
    # bottom: the jaw from corner to corner through the chin, pushed out by ``margin`` from the face
    a_l, a_r = _contour_at(left, corner_level), _contour_at(right, corner_level)
    jaw = np.vstack([_sub_curve(left, min(a_l, CHIN - 0.25), CHIN),
                     _sub_curve(right, min(a_r, CHIN - 0.25), CHIN)[::-1][1:]])
    centre = np.array([q[NOSE_TIP, 0], 0.6])
    away = jaw - centre
    jaw = jaw + margin * away / np.maximum(np.hypot(*away.T), 1e-6)[:, None]
    bottom = np.vstack([left_side[-1], jaw, right_side[-1]])
    ci = int(np.argmax(bottom[:, 1]))  # chin: the middle column of the mesh ends here
    bottom = np.vstack([_resample(bottom[: ci + 1], half_n), _resample(bottom[ci:], half_n)[1:]])

    mesh = _coons(top, bottom, left_side, right_side)
    outline = np.vstack([mesh[0], mesh[1:, -1], mesh[-1, ::-1][1:], mesh[::-1, 0][1:-1]])
    return {"shape": shape, "frame": frame, "mesh": frame.to_image(mesh), "outline": frame.to_image(outline),
            "mesh_frame": mesh}


def _coons(top, bottom, left, right) -> np.ndarray:
    """Bilinearly blended Coons patch [NV+1, NU+1, 2] of four boundary curves (top/bottom NU+1
    points left -> right, left/right NV+1 points top -> bottom)."""
    u = np.linspace(0.0, 1.0, NU + 1)[None, :, None]
    v = np.linspace(0.0, 1.0, NV + 1)[:, None, None]
    top, bottom = top[None], bottom[None]
    left, right = left[:, None], right[:, None]
    ruled = (1 - v) * top + v * bottom + (1 - u) * left + u * right
    corners = ((1 - u) * (1 - v) * top[:, :1] + u * (1 - v) * top[:, -1:]
               + (1 - u) * v * bottom[:, :1] + u * v * bottom[:, -1:])
    return ruled - corners


def triangles() -> tuple[np.ndarray, np.ndarray]:
    """The mesh's triangles as vertex indices [T, 3] into the flattened grid, and their texture
    coordinates [T, 3, 2] (u, v in 0..1)."""
    ids = np.arange((NV + 1) * (NU + 1)).reshape(NV + 1, NU + 1)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    tri = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    uv = np.stack(np.meshgrid(np.linspace(0, 1, NU + 1), np.linspace(0, 1, NV + 1)), -1).reshape(-1, 2)
    return tri, uv[tri]


_TRI, _TRI_UV = triangles()


def warp_coordinates(mesh: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-affine texture coordinates over the pixels of ``box`` (x0, y0, x1, y1): ``uv``
    [h, w, 2] and ``inside`` [h, w] (pixels covered by some triangle of ``mesh``)."""
    import cv2

    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    verts = mesh.reshape(-1, 2) - (x0, y0)
    ids = np.full((h, w), -1, np.int32)
    shift = 4  # sub-pixel vertex precision for the rasteriser
    corners = np.round(verts[_TRI] * (1 << shift)).astype(np.int32)  # [T, 3, 2]
    for t in range(len(_TRI)):
        cv2.fillConvexPoly(ids, corners[t], t, cv2.LINE_8, shift)
    inside = ids >= 0
    # per triangle: the affine map image -> (u, v), solved from its 3 corners
    src = np.concatenate([verts[_TRI], np.ones((len(_TRI), 3, 1))], -1)  # [T, 3, 3]
    det_ok = np.abs(np.linalg.det(src)) > 1e-9
    maps = np.zeros((len(_TRI), 3, 2))
    maps[det_ok] = np.linalg.solve(src[det_ok], _TRI_UV[det_ok])
    ys, xs = np.nonzero(inside)
    m = maps[ids[ys, xs]]
    uv = np.zeros((h, w, 2))
    uv[ys, xs] = xs[:, None] * m[:, 0] + ys[:, None] * m[:, 1] + m[:, 2]
    return np.clip(uv, 0.0, 1.0), inside


def fill_texture(texture: np.ndarray, u: np.ndarray, v: np.ndarray, border: float = 0.0) -> np.ndarray:
    """``texture`` (RGB) read at (u, v) in 0..1, leaving ``border`` (a fraction) of each edge out."""
    import cv2

    tex = np.asarray(texture)[:, :, :3]
    th, tw = tex.shape[:2]
    map_x = ((border + u * (1 - 2 * border)) * (tw - 1)).astype(np.float32)
    map_y = ((border + v * (1 - 2 * border)) * (th - 1)).astype(np.float32)
    return cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float64)


def _drawn_fill(shape: str, rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A coloured mask of ``shape`` in texture coordinates: pleats, a seam or a fold, and an edge band."""
    colours = _COLOURS[shape]
    base = np.asarray(colours[int(rng.integers(len(colours)))], np.float64)
    base = np.clip(base * rng.uniform(0.9, 1.1) + rng.normal(0, 8, 3), 0, 255)
    shade = np.ones_like(u)
    if shape == "surgical":
        for k in range(3):  # three pleats that follow the top edge's curve
            centre = rng.uniform(0.22, 0.3) + 0.22 * k
            shade *= 1.0 - 0.22 * np.exp(-(((v - centre) / 0.02) ** 2))
        shade *= 1.0 - 0.12 * np.exp(-((v / 0.035) ** 2))  # the nose wire's hem
    elif shape == "cloth":
        shade *= 1.0 - 0.22 * np.exp(-(((u - 0.5) / 0.01) ** 2))  # centre seam, bridge to chin
    else:
        shade *= 1.0 - 0.2 * np.exp(-(((v - 0.45) / 0.015) ** 2))  # horizontal fold
        shade *= 0.82 + 0.18 * np.sin(np.pi * u) ** 0.5  # convex cup: darker towards the sides
    edge = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v))
    shade *= 1.0 - 0.15 * np.exp(-((edge / 0.02) ** 2))  # stitched border
    return base * shade[..., None]


def render_mask(img: np.ndarray, geometry: dict, rng: np.random.Generator,
                texture: np.ndarray | None = None) -> np.ndarray:
    """``img`` (RGB uint8) with the mask of ``geometry`` (:func:`mask_geometry`) painted on, in place
    of a copy. ``texture``: a flat RGB mask image warped onto the mesh; None draws the shape's own
    pattern in a seeded colour. The photo's shading is kept on the mask and ear loops are drawn."""
    import cv2

    out = np.array(img, copy=True)
    h, w = out.shape[:2]
    mesh = geometry["mesh"]
    x0, y0 = np.floor(mesh.reshape(-1, 2).min(0)).astype(int) - 2
    x1, y1 = np.ceil(mesh.reshape(-1, 2).max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    uv, inside = warp_coordinates(mesh, (x0, y0, x1, y1))
    if not inside.any():
        return out
    u, v = uv[..., 0], uv[..., 1]
    shape = geometry["shape"]
    fill = _drawn_fill(shape, rng, u, v) if texture is None else fill_texture(texture, u, v, border=0.02)
    if shape != "surgical":  # curved masks: soft light from the middle of the cup
        fill *= (0.88 + 0.12 * np.sin(np.pi * u) * np.sin(np.pi * np.clip(v, 0, 1)))[..., None]

    patch = out[y0:y1, x0:x1].astype(np.float64)
    sigma = max(geometry["frame"].scale / 3, 1.0)  # broad lighting only: no mouth or nostril shadows
    gray = cv2.cvtColor(out[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)
    gray = cv2.GaussianBlur(gray, (0, 0), sigma)
    ref = float(np.median(gray[inside]))
    shade = np.clip((gray / max(ref, 1.0)) ** 0.5, 0.6, 1.3)
    fill = fill * shade[..., None] + rng.normal(0, 2.5, fill.shape)
    alpha = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(geometry["frame"].scale / 80, 0.5))
    alpha = np.where(inside, np.maximum(alpha, 0.5), alpha)[..., None]
    out[y0:y1, x0:x1] = np.clip(patch * (1 - alpha) + fill * alpha, 0, 255).astype(np.uint8)
    _ear_loops(out, geometry, fill[inside].mean(0))
    return out


def _ear_loops(out: np.ndarray, geometry: dict, colour) -> None:
    """Loops from the mask's side corners back towards the ears; the far side of a turned head
    (a side much shorter than the other) hides its loops."""
    import cv2

    mesh_q, frame = geometry["mesh_frame"], geometry["frame"]
    centre_x = mesh_q[0, NU // 2, 0]
    widths = (centre_x - mesh_q[0, 0, 0], mesh_q[0, -1, 0] - centre_x)
    colour = tuple(int(c) for c in np.clip(np.asarray(colour) * 0.85, 0, 255))
    thick = max(1, int(round(frame.scale / 30)))
    for col, sign, width in ((0, -1.0, widths[0]), (-1, 1.0, widths[1]), ):
        if width < 0.45 * max(widths):
            continue
        for row, ear_level in ((0, 0.25), (-1, 0.45)):  # both loops end at the ear, behind the cheek
            start = mesh_q[row, col]
            end = np.array([start[0] + sign * 0.3 * width, ear_level])
            a, b = frame.to_image(np.stack([start, end]))
            cv2.line(out, tuple(int(round(c)) for c in a), tuple(int(round(c)) for c in b), colour, thick,
                     cv2.LINE_AA)


def apply_landmark_masks(img: np.ndarray, faces_points, rng: np.random.Generator,
                         textures: list[np.ndarray] | None = None,
                         shapes=SHAPES) -> tuple[np.ndarray, list[dict]]:
    """Masks on every face of ``img`` (RGB uint8) from its 88 points each; returns the image and the
    geometries. A surgical mask takes one of ``textures`` when given; others are drawn."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise UserError(f"mask image: expected RGB uint8 HxWx3, got {img.dtype} {img.shape}")
    out, geoms = img, []
    for pts in faces_points:
        shape = shapes[int(rng.integers(len(shapes)))]
        g = mask_geometry(pts, rng, shape)
        tex = textures[int(rng.integers(len(textures)))] if textures and shape == "surgical" else None
        out = render_mask(out, g, rng, tex)
        geoms.append(g)
    return (np.array(img, copy=True) if not geoms else out), geoms
