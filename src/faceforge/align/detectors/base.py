"""The detector interface: ``Detector.detect(img_rgb_uint8) -> list[Face]``.

Every detector is an adapter around weights shipped inside a pip package (nothing is downloaded):
faceforge runs the ONNX graph (on ONNX Runtime or OpenVINO: ``faceforge.runtime``) and does its own
pre- and post-processing.
Landmarks are the 5 points of the ArcFace template, in image coordinates and image-left first:
left eye, right eye, nose tip, left mouth corner, right mouth corner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import UserError
from faceforge.registry import DETECTORS

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# engine auto keeps an engine only when every output is within this fraction of the largest reference
# value on the probe input (OpenVINO fp32 is within 1e-6); tests/test_runtime_equivalence.py holds
# boxes and points within a pixel at 640 on real photos
ENGINE_TOLERANCE = 1e-3
# what engine auto may pick for the detectors and the landmark model: fp32 only, because bf16 moves
# boxes and points by more than a pixel at 640 on real photos (RetinaFace up to 2.8 px, MTCNN 14 px,
# the landmark model 1.3 px; docs/benchmarks.md "Engines"); openvino:bf16 is still there to force
AUTO_PRECISIONS = ("fp32",)


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
    """Finds faces in RGB uint8 images. Subclasses implement :meth:`_detect` on an (H, W, 3) array
    (and may implement :meth:`_detect_same_size` to run a batch of equal-size images at once).

    ``det_size`` is the detection size: an image whose long side exceeds it is shrunk to it first
    (with ``upscale``, smaller images are enlarged to it too); boxes and landmarks are mapped back to
    the original image. None detects at full size.
    """

    name = ""
    det_size: int | None = None
    upscale: bool = False

    # no detector finds a face narrower than this; thinner images (a 1x20000 strip) hold none
    min_side = 8

    def detect(self, img: np.ndarray) -> list[Face]:
        return self.detect_batch([img])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces of each image; images of equal size after resizing go through the net together."""
        shapes, inputs, scales = [], [], []
        for img in images:
            img = as_rgb(img)
            shapes.append(img.shape)
            small, scale = resize_for_detection(img, self.det_size, self.upscale)
            inputs.append(small)
            scales.append(scale)
        groups: dict[tuple, list[int]] = {}
        for k, x in enumerate(inputs):
            if min(shapes[k][:2]) < self.min_side or min(x.shape[:2]) < 1:
                continue  # a strip too thin to hold a face (1x20000): no faces, never a zero-size resize
            groups.setdefault(self.batch_key(x.shape), []).append(k)
        out: list[list[Face]] = [[] for _ in images]
        for idx in groups.values():
            found = self._detect_same_size([inputs[k] for k in idx])
            for k, faces in zip(idx, found):
                faces = map_faces(faces, scales[k], shapes[k])
                out[k] = sorted(faces, key=lambda f: -f.score)
        return out

    def batch_key(self, shape: tuple[int, ...]) -> tuple:
        """Images with equal keys go to :meth:`_detect_same_size` together (default: equal shapes)."""
        return tuple(shape)

    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [self._detect(img) for img in images]

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


def check_det_size(det_size) -> int | None:
    """``det_size`` as pixels >= 32 on the long side, or None for full size (also ``0`` or ``"full"``)."""
    if det_size is None or det_size == 0 or str(det_size).lower() in ("full", "none"):
        return None
    if isinstance(det_size, bool) or not str(det_size).isdigit() or int(det_size) < 32:
        raise UserError(f"detector.det_size: expected pixels >= 32 on the long side or 'full', "
                        f"got {det_size!r}")
    return int(det_size)


def detection_scale(height: int, width: int, det_size: int | None, upscale: bool = False) -> float:
    """The factor bringing the long side to ``det_size`` (1.0 when None, or smaller and not ``upscale``)."""
    long_side = max(height, width)
    if not det_size or (long_side <= det_size and not upscale):
        return 1.0
    return det_size / long_side


def resize_for_detection(img: np.ndarray, det_size: int | None,
                         upscale: bool = False) -> tuple[np.ndarray, tuple[float, float]]:
    """The image at the detection size and its (x, y) scale: original coordinates = detected / scale.

    The scale is per axis, from the rounded pixel size, so mapping back has no rounding drift.
    """
    h, w = img.shape[:2]
    scale = detection_scale(h, w, det_size, upscale)
    if scale == 1.0:
        return img, (1.0, 1.0)
    import cv2

    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale > 1:
        small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    else:
        # bilinear to twice the size, then 2x2 averaging (OpenCV's fast integer-factor INTER_AREA):
        # anti-aliased like INTER_AREA at a third of its cost on a phone photo (2.3 vs 7.7 ms)
        twice = cv2.resize(img, (2 * nw, 2 * nh), interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(twice, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, (nw / w, nh / h)


def map_faces(faces: list[Face], scale: tuple[float, float], shape: tuple[int, ...]) -> list[Face]:
    """Faces found on an image resized by ``scale`` (x, y), in the coordinates of the ``shape``
    original: x's divided by the x scale, y's by the y scale, boxes clipped to the image."""
    h, w = shape[:2]
    sx, sy = scale
    out = []
    for f in faces:
        box = np.asarray(f.box, dtype=np.float64) / (sx, sy, sx, sy)
        box[0::2] = np.clip(box[0::2], 0, w)
        box[1::2] = np.clip(box[1::2], 0, h)
        pts = np.asarray(f.landmarks, dtype=np.float64) / (sx, sy)
        out.append(Face(box.astype(np.float32), float(f.score), pts.astype(np.float32)))
    return out


def get_detector(name: str = "retinaface", **options) -> Detector:
    """Build a registered detector (``retinaface`` or ``mtcnn``); unknown options are a UserError."""
    return DETECTORS.build(name, where="detector", **options)


def shipped_file(distribution: str, relpath: str, detector: str) -> Path:
    """A detector's weight file, shipped inside faceforge (``assets/detectors/RELPATH``, copied
    unchanged from the pip ``distribution`` named in ``assets/detectors/README.md``, with its
    licence: those packages also pulled in a second, non-headless OpenCV)."""
    path = Path(__file__).resolve().parents[2] / "assets" / "detectors" / relpath
    if not path.is_file():
        raise UserError(f"detector '{detector}': {relpath} (from {distribution}) is missing from this "
                        "faceforge install; reinstall it: pip install --force-reinstall faceforge")
    return path


def probe_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A fixed input for timing and checking engines: smooth noise in the normalised range."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def onnx_session(model: str | bytes | Path, threads: int = 1, engine: str | None = None,
                 probes: list[dict] | None = None, check=None, name: str = ""):
    """A CPU session for ``model`` on ``engine`` (``auto``: the fastest correct one on this machine,
    measured on ``probes`` against ONNX Runtime fp32 with ``check``; see ``faceforge.runtime``);
    ``threads`` intra-op threads (1 per worker when aligning folders)."""
    from faceforge.runtime.choice import open_session

    try:
        import onnxruntime  # noqa: F401  (the reference engine every choice is checked against)
    except ImportError:
        raise UserError("face detection needs onnxruntime: pip install onnxruntime") from None
    return open_session(model, engine, threads, probes, check, name, auto_precisions=AUTO_PRECISIONS)
