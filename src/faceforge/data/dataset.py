"""The dataset contract every training source implements, and source-string parsing.

A source string is ``prefix:path`` (``folder:/data/casia``, ``rec:/data/ms1m``,
``synthetic:200x20``, ``packed:/data/ms1m.ffpk``). Each reader module in
``faceforge.data.readers`` registers its prefix in :data:`SOURCES`.
"""

from __future__ import annotations

import numpy as np

from faceforge.errors import UserError, closest
from faceforge.io.images import CorruptImage  # noqa: F401  (readers raise it; part of the contract)
from faceforge.registry import Registry

SOURCES = Registry("data source", "faceforge.data.readers")


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
