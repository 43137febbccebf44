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

from faceforge.data.synthetic.identities import ALIGNED_SIZE, MODES, WILD_SIZE, Identity, make_identity
from faceforge.data.synthetic.layout import (
    FIVE_NAMES,
    FLIP_PERMUTATION_88,
    LANDMARK_GROUPS,
    NUM_LANDMARKS,
    five_from_88,
)
from faceforge.data.synthetic.render import SyntheticFaces
from faceforge.data.synthetic.writers import (
    identity_name,
    image_name,
    landmarks_header,
    make_pairs,
    write_dataset,
    write_pairs,
)

__all__ = [
    "ALIGNED_SIZE", "FIVE_NAMES", "FLIP_PERMUTATION_88", "LANDMARK_GROUPS", "MODES", "NUM_LANDMARKS",
    "WILD_SIZE", "Identity", "SyntheticFaces", "five_from_88", "identity_name", "image_name",
    "landmarks_header", "make_identity", "make_pairs", "write_dataset", "write_pairs",
]
