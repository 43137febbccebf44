"""The 88-point landmark layout of the synthetic faces (and of faceforge's landmark models), its
left-right flip, and the 5 alignment points derived from it."""

from __future__ import annotations

import numpy as np

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


FIVE_WEIGHTS = np.zeros((5, NUM_LANDMARKS))  # five points as a linear map of the 88
FIVE_WEIGHTS[0, 21:29] = 1 / 8
FIVE_WEIGHTS[1, 29:37] = 1 / 8
FIVE_WEIGHTS[2, _NOSE_TIP] = FIVE_WEIGHTS[3, _MOUTH_LEFT] = FIVE_WEIGHTS[4, _MOUTH_RIGHT] = 1.0


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
