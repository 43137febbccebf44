"""Rendering: image ``k`` of identity ``j`` with its nuisance (pose, expression, light, blur,
noise, JPEG, occluders, background), 88 exact landmarks and, in ``wild`` mode, a box."""

from __future__ import annotations

import math

import numpy as np

from faceforge.align.transform import estimate_similarity, template_points
from faceforge.data.synthetic.identities import (
    _IMG_TAG,
    ALIGNED_SIZE,
    MODES,
    WILD_SIZE,
    Identity,
    make_identity,
)
from faceforge.data.synthetic.layout import FIVE_WEIGHTS, NUM_LANDMARKS
from faceforge.errors import UserError

# how far each mouth point follows an opening jaw; the chin follows with the lower contour
_MOUTH_DROP = np.zeros(22)
_MOUTH_DROP[[7, 8, 9, 10, 11, 18, 19, 20, 21]] = 1.0
_MOUTH_DROP[[0, 6, 12, 17]] = 0.45
_CHIN_DROP = 0.5 * np.clip(np.sin(np.linspace(-0.2, math.pi + 0.2, 21)), 0, None) ** 2
_LOWER_LID = [4, 5, 6, 7, 0]

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
            five = FIVE_WEIGHTS @ p2[:NUM_LANDMARKS]
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
        return {"landmarks": lm, "five": (FIVE_WEIGHTS @ lm).astype(np.float32), "box": box}

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
