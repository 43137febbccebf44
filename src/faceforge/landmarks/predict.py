"""88 points on whole images: a face box -> square crop -> regressor -> points back in the image.

``LandmarkPredictor`` runs either the torch model or its ONNX export (same crop code);
``FaceLandmarker`` pairs it with a registered face detector (the detector gives boxes, the
landmark model the points). ``LandmarkPredictor.load("builtin")`` (also ``None``) is the model that
ships inside the package (``faceforge/assets/``, trained on real faces with dlib's 68 points as the
teacher; its card lies beside it), so drawing and alignment need no training and no dlib.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.landmarks import crop as C
from faceforge.landmarks.samples import normalise_image

# Detector boxes vs the labelled boxes the model trains on (landmark extent up to mid-forehead),
# measured on 40 synthetic wild faces (docs/landmarks.md): RetinaFace's box centre sits 0.07 box
# sides higher and its side is 1.06x longer (MTCNN: 0.075 and 1.04x). ``FaceLandmarker`` moves the
# detector box by this much before cropping.
DETECTOR_BOX_SHIFT = 0.07  # fraction of the detector box side, downwards
DETECTOR_BOX_SCALE = 1 / 1.05


BUILTIN = "builtin"
BUILTIN_FILE = "landmarks88_real.onnx"


def builtin_model() -> Path:
    """The shipped landmark model (ONNX) inside the installed package; its card is the ``.json`` beside it."""
    from importlib.resources import files

    from faceforge.errors import UserError

    path = Path(str(files("faceforge") / "assets" / BUILTIN_FILE))
    if not path.is_file():
        raise UserError(f"the built-in landmark model is missing ({path}); reinstall faceforge or pass "
                        "--model CKPT|ONNX")
    return path


class LandmarkPredictor:
    """``predict(img_rgb, boxes[K, 4]) -> points [K, 88, 2]`` in image pixels."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], input_size: int, crop_scale: float,
                 mean: float, std: float, box_shift: float = DETECTOR_BOX_SHIFT,
                 box_scale: float = DETECTOR_BOX_SCALE):
        self.run, self.input_size, self.crop_scale = run, input_size, crop_scale
        self.mean, self.std = mean, std
        self.box_shift, self.box_scale = box_shift, box_scale  # detector box -> crop box (adjust_box)

    @classmethod
    def from_net(cls, net, threads: int | None = None) -> LandmarkPredictor:
        import torch

        net = net.eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(batch)).numpy()

        return cls(run, net.input_size, net.crop_scale, net.mean, net.std, net.box_shift, net.box_scale)

    @classmethod
    def load(cls, spec: str | Path | None = BUILTIN, threads: int = 1,
             engine: str | None = None) -> LandmarkPredictor:
        """``builtin`` / ``None`` (the shipped model), an exported ``.onnx`` or a checkpoint."""
        if spec is None or str(spec) == BUILTIN:
            return cls.from_onnx(builtin_model(), threads, engine)
        if str(spec).endswith(".onnx"):
            return cls.from_onnx(spec, threads, engine)
        return cls.from_checkpoint(spec)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> LandmarkPredictor:
        from faceforge.landmarks.model import load_landmark_model

        return cls.from_net(load_landmark_model(path))

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int = 1, engine: str | None = None) -> LandmarkPredictor:
        """An exported model (``faceforge.landmarks.export``); crop settings come from its metadata."""
        import json

        import onnx

        from faceforge.align.detectors.base import ENGINE_TOLERANCE, onnx_session, probe_input
        from faceforge.runtime.choice import close_check

        graph = onnx.load(str(path), load_external_data=False)
        meta = json.loads({p.key: p.value for p in graph.metadata_props}.get("faceforge_landmarks", "{}"))
        size = int(meta.get("input_size", 160))
        name = graph.graph.input[0].name
        # engine auto: measured on 4 crops (a group photo's worth) against ONNX Runtime fp32
        sess = onnx_session(Path(path), threads, engine, [{name: probe_input((4, 3, size, size))}],
                            close_check(ENGINE_TOLERANCE), f"landmarks {Path(path).name}")

        def run(batch: np.ndarray) -> np.ndarray:
            return sess.run(None, {name: batch})[0]

        predictor = cls(run, size, float(meta.get("crop_scale", 1.25)),
                        float(meta.get("mean", 0.5)), float(meta.get("std", 0.5)),
                        float(meta.get("box_shift", DETECTOR_BOX_SHIFT)),
                        float(meta.get("box_scale", DETECTOR_BOX_SCALE)))
        predictor.session = sess
        return predictor

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




def adjust_box(box, shift: float = DETECTOR_BOX_SHIFT, scale: float = DETECTOR_BOX_SCALE) -> np.ndarray:
    """A detector box moved down by ``shift`` sides and scaled by ``scale`` about its centre."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + shift * side
    hw, hh = (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


class FaceLandmarker:
    """Detector + landmark model: ``__call__(img_rgb) -> list of (Face, points [88, 2])``."""

    def __init__(self, predictor: LandmarkPredictor, detector: str = "retinaface", detector_object=None,
                 **detector_options):
        from faceforge.align.detectors import get_detector

        self.predictor = predictor
        self.detector = detector_object or get_detector(detector, **detector_options)

    def points_for(self, img: np.ndarray, boxes) -> np.ndarray:
        """88 points [K, 88, 2] for detector boxes [K, 4]."""
        p = self.predictor
        return p.predict(img, [adjust_box(b, p.box_shift, p.box_scale) for b in boxes])

    def __call__(self, img: np.ndarray):
        faces = self.detector.detect(img)
        return list(zip(faces, self.points_for(img, [f.box for f in faces])))


def five_point_provider(checkpoint: str | Path):
    """``fn(img, box) -> [5, 2]``: the 5 alignment points derived from the model's 88 (``five_from_88``)."""
    from faceforge.data.synthetic import five_from_88

    predictor = LandmarkPredictor.load(checkpoint)

    def points(img: np.ndarray, box) -> np.ndarray:
        box = adjust_box(box, predictor.box_shift, predictor.box_scale)
        return five_from_88(predictor.predict(img, [box])[0]).astype(np.float32)

    return points


class FivePointRefiner:
    """A picklable factory for :func:`faceforge.align.folder.align_folder`'s ``points`` hook: each
    worker calls it once and gets :func:`five_point_provider` of ``checkpoint``. Building one loads
    the model once, so a bad checkpoint fails before any work."""

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = str(checkpoint)
        five_point_provider(self.checkpoint)

    def __call__(self):
        return five_point_provider(self.checkpoint)

    def __str__(self) -> str:
        return self.checkpoint
