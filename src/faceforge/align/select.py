"""The one multi-face rule: which faces of an image are used when a detector finds several.

``align``, ``embed``, ``verify``, ``identify``, ``gallery``, the SDK (``FaceAnalyzer``) and the
service all pick through :func:`pick_faces`, so one photo gives the same face everywhere (the SDK
used to take the largest face where ``align`` took the largest near the centre: another face in 23
of 7,701 LFW images). Rules (``--multi``):

* ``largest_center`` (default): area minus twice the squared distance of the box centre from the
  image centre (InsightFace's ``max_num`` rule): a large face near the middle wins, which is the
  subject in a portrait and in LFW-style crops centred on the subject;
* ``largest``: the largest box;
* ``skip``: no face when there are several;
* ``all``: every face.
"""

from __future__ import annotations

import numpy as np

from faceforge.errors import UserError

MULTI_POLICIES = ("largest_center", "largest", "skip", "all")
DEFAULT_MULTI = "largest_center"


def check_policy(policy: str) -> str:
    if policy not in MULTI_POLICIES:
        raise UserError(f"--multi: unknown policy '{policy}'; valid: {', '.join(MULTI_POLICIES)}")
    return policy


def pick_faces(faces: list, shape: tuple[int, ...], policy: str = DEFAULT_MULTI) -> list:
    """The faces to use under ``policy`` (``faces`` have ``.box`` x1, y1, x2, y2; ``shape`` is the
    image's (H, W, ...))."""
    check_policy(policy)
    if len(faces) <= 1 or policy == "all":
        return list(faces)
    if policy == "skip":
        return []
    h, w = shape[:2]

    def rank(face) -> float:
        x1, y1, x2, y2 = (float(v) for v in face.box)
        area = (x2 - x1) * (y2 - y1)
        if policy == "largest":
            return area
        dx, dy = (x1 + x2) / 2 - w / 2, (y1 + y2) / 2 - h / 2
        return area - 2.0 * (dx * dx + dy * dy)

    return [max(faces, key=rank)]


# --- when no face is found ----------------------------------------------------------------------

FALLBACKS = ("none", "center")  # or the name of another detector (mtcnn, retinaface)
CENTER_FRACTION = 0.7  # the template frame covers this share of the image's shorter side


def check_fallback(fallback: str) -> str:
    from faceforge.registry import DETECTORS

    if fallback not in FALLBACKS:
        DETECTORS.entry(fallback)  # an unknown name lists the detectors
    return fallback


def centre_points(shape: tuple[int, ...], template: str = "arcface",
                  fraction: float = CENTER_FRACTION) -> np.ndarray:
    """Five points that place ``template`` on the centre of an image (float64 [5, 2]).

    For already-cropped datasets whose faces sit in the middle (LFW's 250x250 photos, ORL): where
    the detector finds nothing, warping with these points gives a centred crop at the template's
    scale (the frame spans ``fraction`` of the shorter side) instead of dropping the image.
    """
    from faceforge.align.transform import TEMPLATES, template_points

    th, tw = TEMPLATES[template][1]
    h, w = shape[:2]
    scale = fraction * min(h, w) / max(th, tw)
    pts = template_points(template)
    return (pts - np.array([tw / 2, th / 2])) * scale + np.array([w / 2, h / 2])
