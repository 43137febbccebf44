"""88 points for mask synthesis (``faceforge.data.mask_mesh``), on raw photos and on aligned crops.

``data`` sits below ``landmarks``, so ``mask_folder`` takes the points as a callback; this module
builds it: a photo goes detector -> landmark model (every face); an aligned crop goes detector ->
landmark model for its largest face, or, when the detector finds none, straight to the landmark
model with the box a detector would have given (:data:`CROP_BOX_ARCFACE`).

Why detect on a crop at all: on 124 celeba299 crops the fixed box put the 88 points 7.5 % (mean, of
the eye-centre distance) from the points found on the photo and mapped into the crop, 15.6 % on the
12 turned more than 0.25 (``head_turn``); the detector's box on the crop: 7.3 % and 9.8 % (it
found a face in all 124). A turned head sits off-centre in its crop, which a fixed box ignores.

:data:`CROP_BOX_ARCFACE` is the median RetinaFace box of 104 celeba299 photos (every 60th file,
one face each) mapped through each photo's own alignment into its 112x112 ArcFace crop (per-side
spread 4-11 px, mostly yaw). Other templates and sizes map it through the similarity between the
templates' 5 points.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.landmarks.predict import BUILTIN, FaceLandmarker, LandmarkPredictor

CROP_BOX_ARCFACE = (12.3, 4.7, 101.0, 122.5)
INPUTS = ("auto", "crops", "photos")


def crop_box(template: str, shape: tuple[int, ...]) -> np.ndarray:
    """The detector-like face box [x1, y1, x2, y2] of an aligned ``template`` crop of ``shape``."""
    from faceforge.align.transform import estimate_similarity, template_points, transform_points

    arcface = template_points("arcface", (112, 112))
    m = estimate_similarity(arcface, template_points(template, tuple(shape[:2])))
    x1, y1, x2, y2 = CROP_BOX_ARCFACE
    c = transform_points(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]), m)
    return np.array([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()])


def mask_points(model: str | Path | None = BUILTIN, inputs: str = "auto", template: str = "arcface",
                detector: str = "retinaface", **detector_options) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``fn(img_rgb) -> [points [88, 2], ...]`` for ``mask_folder``'s ``points`` hook.

    ``inputs``: ``crops`` (aligned to ``template``: one face, the largest the detector finds, else
    the fixed crop box), ``photos`` (detector -> every face) or ``auto`` (crops when the image has a
    crop's size and shape, per ``faceforge.data.masks.crop_problem``, else photos).
    """
    from faceforge.data.masks import crop_problem
    from faceforge.errors import UserError

    if inputs not in INPUTS:
        raise UserError(f"--input: '{inputs}' is not one of {', '.join(INPUTS)}")
    predictor = LandmarkPredictor.load(model)
    landmarker = FaceLandmarker(predictor, detector, **detector_options)
    boxes: dict[tuple[int, ...], np.ndarray] = {}

    def points(img: np.ndarray) -> list[np.ndarray]:
        if inputs == "crops" or (inputs == "auto" and crop_problem(img.shape, template) is None):
            faces = landmarker.detector.detect(img)
            if faces:
                largest = max(faces, key=lambda f: f.width * f.height)
                return [landmarker.points_for(img, [largest.box])[0]]
            box = boxes.setdefault(img.shape[:2], crop_box(template, img.shape))
            return [predictor.predict(img, [box])[0]]
        return [p for _, p in landmarker(img)]

    return points
