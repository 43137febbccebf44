"""``faceforge.FaceAnalyzer``: detect, align, embed and compare faces with one object.

    >>> fa = FaceAnalyzer()                  # dlib:resnet, its threshold calibrated by faceforge
    >>> fa = FaceAnalyzer(model="runs/demo/model.onnx")            # or a .ckpt, .ts, "dlib:resnet"
    >>> faces = fa.embed("group.jpg")                              # list of faces with .embedding
    >>> similarity, same = fa.compare("a.jpg", "b.jpg")
    >>> fa.identify("probe.jpg", "gallery/")  # open set: "unknown" below the threshold, top-k listed

The model decides how a face is aligned and fed (its card: input size, template, colour order,
layout, normalisation, flip fusion) and which threshold means "same person" (its calibration: the
card's ``threshold`` for ONNX, ``ckpt["calibration"]`` for checkpoints; ``threshold=`` overrides).
``backend``: ``torch`` runs checkpoints and TorchScript in PyTorch, ``onnx`` runs ONNX files on ONNX
Runtime (a checkpoint is exported in memory first), ``auto`` picks by file type. ``engine`` says what
runs the ONNX graphs (detector, ONNX model, landmarks): ``auto`` (default: the fastest correct engine
and precision on this CPU, ``faceforge.runtime``), ``onnxruntime``, ``openvino``, ``openvino:bf16`` ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.align.detectors.base import Face
from faceforge.errors import UserError

BACKENDS = ("auto", "torch", "onnx")
NO_THRESHOLD_HINT = ("calibrate one: 'faceforge calibrate MODEL --folder PEOPLE/' (an identity folder) or "
                     "'--pairs SOURCE'")
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


@dataclass
class AnalyzedFace(Face):
    """A detected face (box, score, 5 landmarks) and, after :meth:`FaceAnalyzer.embed`, its embedding."""

    embedding: np.ndarray | None = None  # (D,) float32, L2-normalised
    points: np.ndarray | None = None  # (88, 2) landmarks when the analyzer has landmarks=...

    def to_dict(self) -> dict:
        d = super().to_dict()
        if self.points is not None:
            d["points"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]
        if self.embedding is not None:
            d["embedding"] = [round(float(v), 6) for v in self.embedding]
        return d


def load_image(img) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a path or an array (gray/RGBA arrays are converted)."""
    from faceforge.align.detectors.base import as_rgb
    from faceforge.io.images import CorruptImage, read_image

    if isinstance(img, (str, Path)):
        if not Path(img).is_file():
            raise UserError(f"image: file not found: {img}")
        try:
            return read_image(img)
        except CorruptImage as e:
            raise UserError(f"image: {e}") from None
    if isinstance(img, np.ndarray):
        return as_rgb(img)
    raise UserError(f"image: expected a path or an RGB uint8 array, got {type(img).__name__}")


def _is_torchscript(path: Path) -> bool:
    from faceforge.embed.torchscript_embedder import is_torchscript

    return is_torchscript(path)


class FaceAnalyzer:
    def __init__(self, model=None, detector: str = "retinaface", device: str = "cpu", backend: str = "auto",
                 card=None, threshold: float | None = None, multi: str = "largest_center",
                 landmarks=False, engine: str | None = None, **detector_options):
        """``model``: default ``dlib:resnet`` (real pretrained weights shipped in a package, with a
        threshold faceforge calibrated). ``landmarks``: True (the model shipped with faceforge) or a
        landmark checkpoint/.onnx puts 88 points on every detected face (``face.points``)."""
        if backend not in BACKENDS:
            raise UserError(f"backend '{backend}': expected one of {', '.join(BACKENDS)}")
        from faceforge.align.detectors import get_detector
        from faceforge.align.select import check_policy

        self.multi = check_policy(multi)  # which face of a photo with several (faceforge.align.select)

        from faceforge.embed.dlib_embedder import DEFAULT_MODEL

        self.device, self.engine = device, engine
        self.calibration: dict | None = None
        self.model = DEFAULT_MODEL if model is None else model
        self.embedder, self.backend = self._load(self.model, device, backend, card)
        self.card = getattr(self.embedder, "card", None)
        if self.card is None:
            raise UserError(f"model {model}: no card describes its input")
        self.detector = get_detector(detector, **{"engine": engine, **detector_options})
        self.landmarker = None
        if landmarks:
            from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

            spec = None if landmarks is True else landmarks
            self.landmarker = FaceLandmarker(LandmarkPredictor.load(spec, engine=engine),
                                             detector_object=self.detector)
        # the "same person" threshold, its FAR and where it came from (said by verify and identify)
        self.threshold, self.threshold_far, self.threshold_source = threshold, None, "given (--threshold)"
        if self.threshold is None and self.card.threshold is not None:
            self.threshold, self.threshold_far = float(self.card.threshold), self.card.far
            self.threshold_source = f"model card ({getattr(self.embedder, 'card_origin', '') or 'card'})"
        cal = self.calibration  # a checkpoint's card carries its calibration: say where it came from
        if cal and threshold is None and self.threshold in (None, float(cal["threshold"])):
            self.threshold, self.threshold_far = float(cal["threshold"]), cal.get("far")
            self.threshold_source = "checkpoint calibration ('faceforge calibrate')"
        if self.threshold is None:
            self.threshold_source = None
        cal_flip = (self.calibration or {}).get("flip")
        self.flip = cal_flip or self.card.flip  # score with the fusion the threshold was chosen under

    # -- loading ---------------------------------------------------------------------------------

    def _load(self, model, device: str, backend: str, card):
        from faceforge.embed.base import Embedder
        from faceforge.embed.torch_embedder import TorchEmbedder

        if isinstance(model, Embedder):
            return model, "embedder"
        spec = str(model)
        if spec.startswith("dlib:"):
            from faceforge.embed.loading import load_embedder

            return load_embedder(spec, device, card), "dlib"
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"model: file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            if backend == "torch":
                raise UserError(f"{path}: an ONNX file runs on backend 'onnx' (or 'auto'), not 'torch'")
            from faceforge.embed.onnx_embedder import OnnxEmbedder

            return OnnxEmbedder(path, device, card, engine=self.engine), "onnx"
        if suffix in (".ts", ".torchscript") or (suffix in CHECKPOINT_SUFFIXES and _is_torchscript(path)):
            if backend == "onnx":
                raise UserError(f"{path}: a TorchScript file runs on backend 'torch' (or 'auto'), not 'onnx'")
            from faceforge.embed.torchscript_embedder import TorchScriptEmbedder

            return TorchScriptEmbedder(path, device, card), "torch"
        from faceforge.deploy.calibration import stored_calibration
        from faceforge.deploy.export import card_for_model
        from faceforge.embed.card import find_card, merge_cards
        from faceforge.models.checkpoint import load_backbone

        self.calibration = stored_calibration(path)
        net = load_backbone(path, "cpu")
        found, origin = find_card(path, card)
        base = card_for_model(net, self.calibration)
        # a card beside the checkpoint may state only some fields: the rest come from the checkpoint
        net_card = merge_cards(base, found) if found is not None and found.declared else (found or base)
        if backend == "onnx":
            from faceforge.deploy.export import onnx_bytes
            from faceforge.embed.onnx_embedder import OnnxEmbedder

            emb = OnnxEmbedder(path.with_suffix(".onnx"), device, card=net_card,
                               model_bytes=onnx_bytes(net, net_card.input_size), engine=self.engine)
            return emb, "onnx"
        if net_card.layout != "NCHW":
            raise UserError(f"{path}: a faceforge checkpoint takes NCHW input; "
                            f"the card says {net_card.layout}")
        net.meta.update(net_card.embedder_meta().__dict__ | {"name": path.stem})
        emb = TorchEmbedder(net, device, name=path.stem, source=str(path))
        emb.card, emb.card_origin = net_card, origin or "the checkpoint's own record (model.meta)"
        return emb, "torch"

    # -- the four verbs --------------------------------------------------------------------------

    def detect(self, img) -> list[AnalyzedFace]:
        """Faces in ``img`` (path or RGB array), most confident first."""
        return self.detect_batch([img])[0]

    def detect_batch(self, images: list) -> list[list[AnalyzedFace]]:
        """:meth:`detect` for several images; equal-size images go through the detector together."""
        images = [load_image(img) for img in images]
        out = []
        for img, found in zip(images, self.detector.detect_batch(images)):
            faces = [AnalyzedFace(f.box, f.score, f.landmarks) for f in found]
            if self.landmarker is not None and faces:
                for f, p in zip(faces, self.landmarker.points_for(img, [f.box for f in faces])):
                    f.points = p
            out.append(faces)
        return out

    def align(self, img, face: Face) -> np.ndarray:
        """The crop of ``face`` the model takes: its template at its input size (H x W x 3 RGB uint8)."""
        img = load_image(img)
        if hasattr(self.embedder, "chip"):  # models with their own alignment (dlib)
            return self.embedder.chip(img, face)
        import cv2

        from faceforge.align.transform import estimate_similarity

        h, w = self.card.input_size
        m = estimate_similarity(face.landmarks, self.card.template_points())
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of aligned crops [B, H, W, 3], fused with the card's flip."""
        from faceforge.embed.base import l2_normalize

        crops = np.ascontiguousarray(crops)
        feats = self.embedder.embed(crops)
        if self.flip != "none":
            flipped = self.embedder.embed(np.ascontiguousarray(crops[:, :, ::-1]))
            feats = feats + flipped if self.flip == "sum" else np.concatenate([feats, flipped], axis=1)
        return l2_normalize(feats.astype(np.float32))

    def embed(self, img) -> list[AnalyzedFace]:
        """Every face in ``img`` with ``.embedding`` set (L2-normalised), most confident first."""
        img = load_image(img)
        faces = self.detect(img)
        if faces:
            crops = np.stack([self.align(img, f) for f in faces])
            for f, e in zip(faces, self.embed_crops(crops)):
                f.embedding = e
        return faces

    def _embedding(self, x, which: str) -> np.ndarray:
        if isinstance(x, Face):
            emb = getattr(x, "embedding", None)
            if emb is None:
                raise UserError(f"compare: face {which} has no embedding (use FaceAnalyzer.embed)")
            return np.asarray(emb, dtype=np.float32)
        if isinstance(x, np.ndarray) and x.ndim == 1:
            return x.astype(np.float32) / max(float(np.linalg.norm(x)), 1e-12)
        from faceforge.align.select import pick_faces

        img = load_image(x)
        rule = "largest_center" if self.multi == "all" else self.multi  # compare needs one face
        faces = pick_faces(self.detect(img), img.shape, rule)
        if not faces:
            shown = f" ({x})" if isinstance(x, (str, Path)) else ""
            raise UserError(f"compare: no face found in image {which}{shown}")
        return self.embed_crops(self.align(img, faces[0])[None])[0]

    def compare(self, a, b) -> tuple[float, bool]:
        """(cosine similarity, same person?) of two faces, embeddings or images (the face ``multi`` picks).

        "Same" is ``similarity >= threshold``, the threshold calibrated with the model.
        """
        ea, eb = self._embedding(a, "a"), self._embedding(b, "b")
        if ea.shape != eb.shape:
            raise UserError(f"compare: embeddings differ in size ({ea.shape[0]} vs {eb.shape[0]})")
        sim = float(np.dot(ea, eb))
        if self.threshold is None:
            raise UserError(f"compare: similarity {sim:.4f}, but the model has no threshold; "
                            f"{NO_THRESHOLD_HINT}, or pass threshold=")
        return sim, bool(sim >= self.threshold)

    def identify(self, img, gallery, k: int = 5, group: str = "max", all_faces: bool = False) -> list[dict]:
        """Open-set search of a gallery (folder or open ``Gallery``) for the face(s) of ``img``: per face
        ``answer`` (the best identity, or "unknown" below the threshold), ``known`` and the top-k
        ``matches`` with scores (:func:`faceforge.deploy.commands.identify_faces`)."""
        from faceforge.deploy.commands import identify_array

        return identify_array(load_image(img), gallery, self, k, group, all_faces)

    def __repr__(self) -> str:
        return (f"FaceAnalyzer(model={self.embedder.meta.name!r}, backend={self.backend!r}, "
                f"input={self.card.input_size}, template={self.card.template_name()!r}, "
                f"threshold={self.threshold})")
