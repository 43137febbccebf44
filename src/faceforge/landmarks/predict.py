"""88 points on whole images: a face box -> square crop -> regressor -> points back in the image.

``LandmarkPredictor`` runs either the torch model or its ONNX export (same crop code);
``FaceLandmarker`` pairs it with a registered face detector (the detector gives boxes, the
landmark model the points).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.landmarks import crop as C
from faceforge.landmarks.samples import normalise_image


class LandmarkPredictor:
    """``predict(img_rgb, boxes[K, 4]) -> points [K, 88, 2]`` in image pixels."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], input_size: int, crop_scale: float,
                 mean: float, std: float):
        self.run, self.input_size, self.crop_scale, self.mean, self.std = run, input_size, crop_scale, mean, std

    @classmethod
    def from_net(cls, net, threads: int | None = None) -> LandmarkPredictor:
        import torch

        net = net.eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(batch)).numpy()

        return cls(run, net.input_size, net.crop_scale, net.mean, net.std)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> LandmarkPredictor:
        from faceforge.landmarks.model import load_landmark_model

        return cls.from_net(load_landmark_model(path))

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int = 1) -> LandmarkPredictor:
        """An exported model (``faceforge.landmarks.export``); crop settings come from its metadata."""
        import json

        from faceforge.align.detectors.base import onnx_session

        sess = onnx_session(Path(path), threads)
        meta = json.loads(sess.get_modelmeta().custom_metadata_map.get("faceforge_landmarks", "{}"))
        name = sess.get_inputs()[0].name

        def run(batch: np.ndarray) -> np.ndarray:
            return sess.run(None, {name: batch})[0]

        return cls(run, int(meta.get("input_size", 160)), float(meta.get("crop_scale", 1.25)),
                   float(meta.get("mean", 0.5)), float(meta.get("std", 0.5)))

    def crops(self, img: np.ndarray, boxes) -> tuple[np.ndarray, list[np.ndarray]]:
        s = self.input_size
        mats = [C.crop_matrix(*C.square(b, self.crop_scale), s) for b in boxes]
        batch = np.stack([normalise_image(C.warp(img, m, s), self.mean, self.std) for m in mats])
        return batch, mats

    def predict(self, img: np.ndarray, boxes) -> np.ndarray:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 88, 2))
        batch, mats = self.crops(img, boxes)
        u = self.run(batch)
        pts = C.from_normalised(u, self.input_size)
        return np.stack([C.apply(C.invert(m), p) for m, p in zip(mats, pts)])


class FaceLandmarker:
    """Detector + landmark model: ``__call__(img_rgb) -> list of (Face, points [88, 2])``."""

    def __init__(self, predictor: LandmarkPredictor, detector: str = "retinaface", **detector_options):
        from faceforge.align.detectors import get_detector

        self.predictor = predictor
        self.detector = get_detector(detector, **detector_options)

    def __call__(self, img: np.ndarray):
        faces = self.detector.detect(img)
        pts = self.predictor.predict(img, [f.box for f in faces])
        return list(zip(faces, pts))
