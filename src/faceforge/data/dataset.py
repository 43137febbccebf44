"""The dataset contract every training source implements, and source-string parsing.

A source string is ``prefix:path`` (``folder:/data/casia``, ``rec:/data/ms1m``,
``synthetic:200x20``, ``packed:/data/ms1m.ffpk``). Each reader module in
``faceforge.data.readers`` registers its prefix in :data:`SOURCES`.
"""

from __future__ import annotations

import numpy as np

from faceforge.errors import UserError, closest
from faceforge.registry import Registry

SOURCES = Registry("data source", "faceforge.data.readers")


class CorruptImage(Exception):
    """An image that cannot be decoded; loaders skip it and count it."""


class FaceDataset:
    """Images of identities. Subclasses set ``labels`` and implement :meth:`read`.

    ``labels``: int64 array, one class index in ``[0, num_classes)`` per image.
    ``read(i)``: the i-th image as an RGB ``uint8`` array of shape (H, W, 3).
    ``names``: optional identity names, indexed by class.
    """

    labels: np.ndarray
    names: list[str] | None = None
    description: str = ""

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.read(index), int(self.labels[index])


def decode_image(data: bytes, where: str = "") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (gray and RGBA converted); CorruptImage if not."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise CorruptImage(f"cannot decode image {where}".strip())
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8; CorruptImage if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CorruptImage(f"cannot read {path}: {e.strerror}") from None
    return decode_image(data, str(path))


def open_source(spec: str) -> FaceDataset:
    """Open a training source string such as ``folder:/data/casia`` or ``synthetic:200x20``."""
    if ":" not in spec:
        raise UserError(
            f"data source '{spec}' has no prefix; use one of: "
            + ", ".join(f"{p}:..." for p in SOURCES.names())
        )
    prefix, _, rest = spec.partition(":")
    if prefix not in SOURCES:
        raise UserError(
            f"unknown data source prefix '{prefix}:' in '{spec}': {closest(prefix, SOURCES.names())}"
        )
    dataset = SOURCES.entry(prefix).fn(rest)
    if len(dataset) == 0:
        raise UserError(f"data source '{spec}' holds no images")
    if dataset.num_classes < 2:
        raise UserError(f"data source '{spec}' holds a single identity; training needs at least 2")
    return dataset
