"""Synthetic face masks: the 2-D paste on aligned crops, and ``mask_folder`` for whole trees.

The default of ``faceforge data mask`` is the landmark-driven mask (``faceforge.data.mask_mesh``:
outline from 88 points, piecewise-affine texture warp), which follows turned heads and jaws; the
paste below is kept as ``--method paste`` (no landmark model, aligned crops only).

The paste is placed from the 5-point template of the aligned crop (no detector needed): its top
edge crosses the nose bridge between the eye line and the nose tip, its sides reach the cheeks
(about one eye distance either side of the nose), its bottom curves below the chin. Shape, colour
and placement are jittered by the caller's ``rng``; ``mask_folder`` seeds it from (seed, file) so a
masked training set or masked probe set is reproducible.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.errors import UserError

STYLES = ("surgical", "cloth")
# base colours (RGB) of the drawn masks: surgical blue/white/black/green, cloth greys/pinks/navy
PALETTE = (
    (120, 170, 215), (235, 238, 240), (35, 35, 40), (110, 175, 150),
    (150, 150, 155), (215, 170, 185), (45, 55, 95), (200, 190, 160),
)


def mask_geometry(points5: np.ndarray, rng: np.random.Generator, style: str) -> dict:
    """Jittered mask parameters (pixels in the aligned crop) from the template's 5 points."""
    le, re, nose, ml, mr = np.asarray(points5, dtype=np.float64)
    eye_y = (le[1] + re[1]) / 2
    mouth_y = (ml[1] + mr[1]) / 2
    d = float(np.linalg.norm(re - le))  # eye distance
    v = float(mouth_y - eye_y)  # eye-to-mouth height
    return {
        "cx": nose[0] + rng.uniform(-0.04, 0.04) * d,
        "top": eye_y + rng.uniform(0.35, 0.6) * (nose[1] - eye_y),  # nose bridge
        "half_w": rng.uniform(1.0, 1.2) * d,  # cheek to cheek
        "side_bottom": mouth_y + rng.uniform(0.0, 0.25) * v,
        "chin": mouth_y + rng.uniform(0.55, 0.8) * v,  # below the chin
        "drop": rng.uniform(0.02, 0.08) * v if style == "surgical" else rng.uniform(0.12, 0.3) * v,
        "angle": np.deg2rad(rng.uniform(-4.0, 4.0)),
        "centre_y": float(nose[1]),
    }


def _mask_coords(shape: tuple[int, int], g: dict, style: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: inside (bool), u across the mask in [0, 1], v from top edge to bottom edge in [0, 1]."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    # rotate the pixel grid about the nose so the mask tilts by g["angle"]
    c, s = np.cos(g["angle"]), np.sin(g["angle"])
    dx, dy = xs - g["cx"], ys - g["centre_y"]
    x = c * dx + s * dy
    y = -s * dx + c * dy + g["centre_y"]
    t = x / g["half_w"]  # -1 .. 1 across the mask
    inside_x = np.abs(t) <= 1.0
    tc = np.clip(np.abs(t), 0.0, 1.0)
    # top edge: peaks at the nose bridge; a cloth mask is pointed, a surgical one nearly flat
    top = g["top"] + g["drop"] * (tc if style == "cloth" else tc**2)
    # bottom edge: an elliptic arc from the lower corners down to below the chin
    bottom = g["side_bottom"] + (g["chin"] - g["side_bottom"]) * np.sqrt(np.clip(1.0 - tc**2, 0.0, 1.0))
    inside = inside_x & (y >= top) & (y <= bottom)
    u = (t + 1.0) / 2.0
    vv = np.clip((y - top) / np.maximum(bottom - top, 1e-6), 0.0, 1.0)
    return inside, u, vv


def _fill_drawn(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, style: str) -> np.ndarray:
    base = np.asarray(PALETTE[rng.integers(len(PALETTE))], dtype=np.float64)
    base = np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, 12, 3), 0, 255)
    fill = np.broadcast_to(base, u.shape + (3,)).copy()
    if style == "surgical":
        # pleats: darker bands that follow the top edge
        pleats = int(rng.integers(2, 4))
        phase = rng.uniform(0.15, 0.3)
        for k in range(pleats):
            centre = phase + k * (0.6 / pleats)
            band = np.exp(-(((v - centre) / 0.025) ** 2))
            fill *= (1.0 - 0.25 * band)[..., None]
    else:
        # a cloth mask's centre seam
        fill *= (1.0 - 0.2 * np.exp(-(((u - 0.5) / 0.012) ** 2)))[..., None]
    return fill


def apply_mask(
    aligned_img: np.ndarray,
    rng: np.random.Generator,
    template: str = "arcface",
    texture: np.ndarray | list[np.ndarray] | None = None,
) -> np.ndarray:
    """The aligned RGB uint8 face with a synthetic mask drawn over nose, mouth and chin.

    ``template`` names the crop's alignment template (its 5 points are scaled to the image size).
    ``texture``: an RGB fabric image (or a list to pick from) mapped onto the mask; None draws a
    coloured mask with pleats or a seam. The face's own shading is kept on the mask.
    """
    import cv2

    from faceforge.align.transform import template_points
    from faceforge.data.mask_mesh import fill_texture

    img = np.asarray(aligned_img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise UserError(f"apply_mask: expected an aligned RGB uint8 HxWx3 image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    style = STYLES[int(rng.integers(len(STYLES)))]
    g = mask_geometry(template_points(template, (h, w)), rng, style)
    inside, u, v = _mask_coords((h, w), g, style)
    if isinstance(texture, (list, tuple)):
        texture = texture[int(rng.integers(len(texture)))] if texture else None
    fill = _fill_drawn(rng, u, v, style) if texture is None else fill_texture(texture, u, v)

    # keep the photo's lighting: relative luminance of the covered face, softened
    gray = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64), (0, 0), max(h / 28, 1))
    ref = gray[inside].mean() if inside.any() else gray.mean()
    shade = np.clip((gray / max(ref, 1.0)) ** 0.5, 0.65, 1.3)
    fill = fill * shade[..., None] + rng.normal(0, 3.0, fill.shape)

    alpha = cv2.GaussianBlur(inside.astype(np.float32), (3, 3), 0)[..., None]
    out = img.astype(np.float64) * (1.0 - alpha) + fill * alpha
    out = np.clip(out, 0, 255).astype(np.uint8)
    _draw_loops(out, g, fill[inside].mean(0) if inside.any() else (200, 200, 200))
    return out


def _draw_loops(out: np.ndarray, g: dict, colour) -> None:
    """Ear loops from the mask's upper and lower corners towards the sides of the crop."""
    import cv2

    h, w = out.shape[:2]
    c, s = np.cos(g["angle"]), np.sin(g["angle"])

    def to_img(x, y):
        dy = y - g["centre_y"]
        return (int(round(g["cx"] + c * x - s * dy)), int(round(g["centre_y"] + s * x + c * dy)))

    colour = tuple(int(v) for v in np.clip(np.asarray(colour) * 0.9, 0, 255))
    thick = max(1, round(w / 112))
    for side in (-1.0, 1.0):
        x = side * g["half_w"]
        edge = 0 if side < 0 else w - 1
        upper = to_img(x, g["top"] + g["drop"] + 2)
        lower = to_img(x, g["side_bottom"] - 2)
        cv2.line(out, upper, (edge, int(g["top"] - 0.3 * (g["side_bottom"] - g["top"]))), colour, thick,
                 cv2.LINE_AA)
        cv2.line(out, lower, (edge, int(g["side_bottom"])), colour, thick, cv2.LINE_AA)


def file_rng(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by (seed, file name): the same file always gets the same mask."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def load_textures(folder: str | os.PathLike) -> list[np.ndarray]:
    """RGB textures from ``folder``: ``mask_*.jpg`` files if any, else every image in it."""
    from faceforge.io.folders import IMAGE_SUFFIXES
    from faceforge.io.images import CorruptImage, read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--textures: folder not found: {folder}")
    files = sorted(folder.glob("mask_*.jpg")) or sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    textures = []
    for f in files:
        try:
            textures.append(read_image(f))
        except CorruptImage:
            continue
    if not textures:
        raise UserError(f"--textures: no readable image in {folder}")
    return textures


MAX_CROP_SIDE = 1024  # aligned crops are 112-512 px; a larger image is a photo, not a crop


def crop_problem(shape: tuple[int, ...], template: str) -> str | None:
    """Why an image of ``shape`` is not an aligned face crop for ``template`` (None if it is one):
    larger than :data:`MAX_CROP_SIDE` or an aspect ratio more than 25% off the template's."""
    from faceforge.align.transform import TEMPLATES

    h, w = int(shape[0]), int(shape[1])
    h0, w0 = TEMPLATES[template][1] if template in TEMPLATES else (112, 112)
    if max(h, w) > MAX_CROP_SIDE:
        return f"{w}x{h} is larger than a face crop (at most {MAX_CROP_SIDE} px a side)"
    if not 0.75 <= (w / h) / (w0 / h0) <= 1.25:
        return f"{w}x{h} does not have the {w0}x{h0} shape of a '{template}' crop"
    return None


def mask_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    seed: int = 0,
    template: str = "arcface",
    textures: str | os.PathLike | None = None,
    progress: bool = False,
    points: Callable[[np.ndarray], list] | None = None,
    shapes: tuple[str, ...] | None = None,
    fraction: float = 1.0,
) -> dict:
    """Write a masked copy of every image of ``src/<identity>/`` to ``dst``; returns counts.

    ``points`` (``fn(img) -> [88 points, ...]``, e.g. ``faceforge.landmarks.mask_points``): masks
    that follow each face's landmarks (``faceforge.data.mask_mesh``), on aligned crops or raw
    photos; an image where it finds no face is counted in ``no_face`` and not written. Without it,
    the 2-D paste by the template's 5 points (:func:`apply_mask`; aligned crops only).
    ``fraction`` < 1 masks only that share of the images (drawn per file) and copies the rest
    unmasked, for a mixed training set.

    Deterministic per (seed, ``<identity>/<file>``); images whose output exists are skipped;
    unreadable images and, for the 2-D paste, images that are not face crops (:func:`crop_problem`:
    a photo would cost gigabytes of float64 work) are skipped and counted.
    """
    import cv2

    from faceforge.atomic import atomic_write_bytes
    from faceforge.data.mask_mesh import SHAPES, apply_landmark_masks
    from faceforge.io.folders import check_output_tree, list_identity_folder, output_name
    from faceforge.io.images import CorruptImage, read_image
    from faceforge.io.progress import Progress

    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"--fraction: expected a share between 0 and 1, got {fraction}")
    shapes = tuple(shapes or SHAPES)
    bad = [s for s in shapes if s not in SHAPES]
    if bad:
        raise UserError(f"--shapes: unknown shape '{bad[0]}' (shapes: {', '.join(SHAPES)})")
    src_path, dst_path = check_output_tree(Path(src), Path(dst), "mask")
    files, _, names = list_identity_folder(src_path, "mask")
    tex = load_textures(textures) if textures else None
    counts = {"images": len(files), "identities": len(names), "masked": 0, "unmasked": 0,
              "skipped_existing": 0, "corrupt": 0, "not_crops": 0, "no_face": 0}
    bar = Progress(len(files), progress, label="mask")
    first = ""  # the first skipped file and why: named when nothing could be masked
    for f in files:
        rel = f"{f.parent.name}/{f.name}"
        out = dst_path / f.parent.name / output_name(f.name)
        bar.step()
        if out.exists():
            counts["skipped_existing"] += 1
            continue
        try:
            img = read_image(f)
        except CorruptImage as e:
            counts["corrupt"] += 1
            first = first or str(e)
            continue
        rng = file_rng(seed, rel)
        if fraction < 1.0 and rng.uniform() >= fraction:
            masked = img
            counts["unmasked"] += 1
        elif points is not None:
            faces = points(img)
            if not faces:
                counts["no_face"] += 1
                first = first or f"{f}: no face found"
                continue
            masked, _ = apply_landmark_masks(img, faces, rng, tex, shapes)
            counts["masked"] += 1
        elif problem := crop_problem(img.shape, template):
            counts["not_crops"] += 1
            first = first or f"{f}: {problem}"
            continue
        else:
            masked = apply_mask(img, rng, template=template, texture=tex)
            counts["masked"] += 1
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if out.suffix.lower() in (".jpg", ".jpeg") else []
        ok, buf = cv2.imencode(out.suffix.lower(), cv2.cvtColor(masked, cv2.COLOR_RGB2BGR), params)
        atomic_write_bytes(out, buf.tobytes())
    if counts["masked"] + counts["unmasked"] + counts["skipped_existing"] == 0:  # nothing usable: an error
        if points is not None:
            raise UserError(f"mask source: no face found in any of the {len(files)} images under {src} "
                            f"({counts['corrupt']} unreadable, {counts['no_face']} without a face; "
                            f"first: {first})")
        raise UserError(f"mask source: none of the {len(files)} images under {src} is a readable aligned "
                        f"face crop ({counts['corrupt']} unreadable, {counts['not_crops']} not crops; first: "
                        f"{first}; align photos first with 'faceforge align', or mask by landmarks)")
    return counts
