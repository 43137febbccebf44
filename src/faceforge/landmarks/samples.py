"""Landmark training samples: sources, cleaning, and augmented square crops.

A source string is ``synthetic:NxK,mode=wild[,offset=J,...]`` (rendered on the fly, exact points and
boxes; see :mod:`faceforge.data.readers.synthetic`) or a label file ``PATH.csv|.tsv`` (optionally
``file:PATH``; see :mod:`faceforge.landmarks.label_file`).

Cleaning drops samples whose labels cannot be learned from (NaN, a bad box, points far outside the
crop, degenerate point sets) and reports how many and why. A sample becomes a crop: the box made
square and scaled by ``crop_scale``, with random centre shift, scale, rotation and a horizontal
flip that also permutes left/right indices (``FLIP_PERMUTATION_88``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from faceforge.data.synthetic import FLIP_PERMUTATION_88, LANDMARK_GROUPS, NUM_LANDMARKS
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage, read_image
from faceforge.landmarks import crop as C


class LandmarkSource:
    """``len``; ``points(i)`` [88, 2] and ``box(i)`` [4] in image pixels; ``read(i)`` RGB uint8."""

    description = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def points(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def box(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def read(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def name(self, i: int) -> str:
        return str(i)

    def all_points(self) -> np.ndarray:
        return np.stack([self.points(i) for i in range(len(self))]) if len(self) else np.zeros((0, 88, 2))

    def all_boxes(self) -> np.ndarray:
        return np.stack([self.box(i) for i in range(len(self))]) if len(self) else np.zeros((0, 4))


class SyntheticLandmarks(LandmarkSource):
    def __init__(self, spec: str):
        from faceforge.data.readers.synthetic import SyntheticDataset, parse_spec

        kwargs = parse_spec(spec)
        self.data = SyntheticDataset(**kwargs)
        self.description = self.data.description

    def __len__(self) -> int:
        return len(self.data)

    def points(self, i):
        return self.data.landmarks(i).astype(np.float64)

    def box(self, i):
        return self.data.box(i).astype(np.float64)

    def read(self, i):
        return self.data.read(i)

    def name(self, i):
        j, k = self.data._jk(i)
        return f"{self.data.names[j - self.data.offset]}#{k}"


class FileLandmarks(LandmarkSource):
    """Rows of a label file; a row without a box uses the extent of its points."""

    def __init__(self, path: str):
        from faceforge.landmarks.label_file import read_labels

        self.labels = read_labels(path)
        self.description = f"file:{path}"
        boxes = self.labels.boxes.copy()
        missing = ~np.isfinite(boxes).all(1)
        if missing.any():
            p = self.labels.points[missing]
            with np.errstate(invalid="ignore"):
                boxes[missing] = np.concatenate([np.nanmin(p, 1), np.nanmax(p, 1)], 1)
        self.boxes = boxes

    def __len__(self):
        return len(self.labels)

    def points(self, i):
        return self.labels.points[i]

    def box(self, i):
        return self.boxes[i]

    def all_points(self):
        return self.labels.points

    def all_boxes(self):
        return self.boxes

    def read(self, i):
        return read_image(self.labels.paths[i])

    def name(self, i):
        return self.labels.paths[i]


def open_landmark_source(spec: str) -> LandmarkSource:
    """``synthetic:...`` or a label file (``file:`` prefix optional)."""
    if spec.startswith("synthetic:"):
        return SyntheticLandmarks(spec.partition(":")[2])
    path = spec[5:] if spec.startswith("file:") else spec
    if not path.lower().endswith((".csv", ".tsv", ".txt")):
        raise UserError(f"landmark source '{spec}': expected synthetic:NxK,mode=wild or a .csv/.tsv "
                        "label file")
    return FileLandmarks(path)


# --- cleaning -------------------------------------------------------------------------------------

REASONS = ("not_finite", "bad_box", "outside_crop", "degenerate")


def invalid_reasons(points: np.ndarray, boxes: np.ndarray, crop_scale: float = 1.25,
                    margin: float = 0.1) -> np.ndarray:
    """Per sample, '' when usable or the first failed check of ``REASONS``.

    ``outside_crop``: a point lies further than ``margin`` x crop side outside the square crop.
    ``degenerate``: outer eye corners closer than 5% of the crop side, a point cloud narrower than
    10% of it in x or y, or fewer than 80 distinct points (collapsed labels).
    """
    points = np.asarray(points, np.float64).reshape(-1, NUM_LANDMARKS, 2)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(points)
    out = np.full(n, "", dtype=object)
    finite = np.isfinite(points).all((1, 2))
    out[~finite] = "not_finite"
    box_ok = np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out[(out == "") & ~box_ok] = "bad_box"
    ok = out == ""
    if not ok.any():
        return out
    p, b = points[ok], boxes[ok]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = crop_scale * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    lim = side * (0.5 + margin)
    centre = np.stack([cx, cy], 1)[:, None, :]
    outside = (np.abs(p - centre) > lim[:, None, None]).any(-1)
    le, re = LANDMARK_GROUPS["left_eye"].start, LANDMARK_GROUPS["right_eye"].start
    iod = np.linalg.norm(p[:, le] - p[:, re], axis=1)
    extent = p.max(1) - p.min(1)
    distinct = np.array([len(np.unique(np.round(q, 2), axis=0)) for q in p])
    degenerate = (iod < 0.05 * side) | (extent.min(1) < 0.1 * side) | (distinct < 80)
    reasons = np.where(outside.any(1), "outside_crop", np.where(degenerate, "degenerate", ""))
    out[np.flatnonzero(ok)] = reasons
    return out


def clean(source: LandmarkSource, crop_scale: float = 1.25, margin: float = 0.1,
          examples: int = 50) -> tuple[np.ndarray, dict]:
    """Indices of the usable samples and a report (counts per reason, a few examples)."""
    reasons = invalid_reasons(source.all_points(), source.all_boxes(), crop_scale, margin)
    keep = np.flatnonzero(reasons == "")
    counts = Counter(r for r in reasons if r)
    bad = np.flatnonzero(reasons != "")
    report = {
        "source": source.description,
        "total": int(len(reasons)),
        "kept": int(len(keep)),
        "dropped": int(len(bad)),
        "dropped_percent": round(100.0 * len(bad) / max(len(reasons), 1), 3),
        "reasons": {r: int(counts.get(r, 0)) for r in REASONS},
        "crop_scale": crop_scale,
        "margin": margin,
        "examples": [{"index": int(i), "sample": source.name(int(i)), "reason": str(reasons[i])}
                     for i in bad[:examples]],
    }
    return keep, report


# --- crops ----------------------------------------------------------------------------------------


def normalise_image(crop: np.ndarray, mean: float, std: float) -> np.ndarray:
    """RGB uint8 [S, S, 3] -> float32 [3, S, S] as ``(pixel/255 - mean) / std``."""
    x = crop.astype(np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def sample_crop(img: np.ndarray, pts: np.ndarray, box: np.ndarray, size: int, crop_scale: float,
                rng: np.random.Generator | None = None, shift: float = 0.0, scale_jitter: float = 0.0,
                rotation: float = 0.0, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The crop [S, S, 3] and its 88 points in crop pixels, with augmentation drawn from ``rng``."""
    cx, cy, side = C.square(box, crop_scale)
    angle, mirrored = 0.0, False
    if rng is not None:
        u = rng.uniform(-1.0, 1.0, 4)
        cx, cy = cx + u[0] * shift * side, cy + u[1] * shift * side
        side *= 1.0 + u[2] * scale_jitter
        angle = u[3] * rotation
        mirrored = bool(flip and rng.random() < 0.5)
    m = C.crop_matrix(cx, cy, side, size, angle, mirrored)
    out = C.apply(m, pts)
    if mirrored:  # the reflection is in m; left and right features swap names
        out = out[FLIP_PERMUTATION_88]
    return C.warp(img, m, size), out


class CropDataset:
    """Torch-style dataset of (image [3, S, S] float32, points [88, 2] normalised) or None if corrupt.

    Augmentation for item ``i`` is drawn from ``(seed, epoch, i)``: set ``epoch`` before iterating.
    """

    def __init__(self, source: LandmarkSource, indices: np.ndarray, size: int, crop_scale: float,
                 mean: float, std: float, augment: dict | None = None, seed: int = 0):
        self.source, self.indices = source, np.asarray(indices)
        self.size, self.crop_scale, self.mean, self.std = size, crop_scale, mean, std
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        try:
            img = self.source.read(idx)
        except CorruptImage:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, idx]) if self.augment else None
        crop, pts = sample_crop(img, self.source.points(idx), self.source.box(idx), self.size,
                                self.crop_scale, rng, **(self.augment or {}))
        return normalise_image(crop, self.mean, self.std), C.to_normalised(pts, self.size).astype(np.float32)


def collate(items):
    """Stack the readable items; the count of skipped (corrupt) ones comes along."""
    import torch

    good = [it for it in items if it is not None]
    if not good:
        return None, None, len(items)
    x = torch.from_numpy(np.stack([g[0] for g in good]))
    y = torch.from_numpy(np.stack([g[1] for g in good]))
    return x, y, len(items) - len(good)
