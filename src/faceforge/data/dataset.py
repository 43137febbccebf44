"""The dataset contract every training source implements, and source-string parsing.

A source string is ``prefix:path`` (``folder:/data/casia``, ``rec:/data/ms1m``,
``synthetic:200x20``, ``packed:/data/ms1m.ffpk``). Each reader module in
``faceforge.data.readers`` registers its prefix in :data:`SOURCES`.
"""

from __future__ import annotations

from pathlib import Path

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


def bare_path_kind(spec: str) -> str:
    """The source prefix a bare path stands for, recognised by its form: a folder of identity
    folders (``folder``), a folder holding ``train.rec`` or a ``.rec`` (``rec``), a ``.ffpk``
    (``packed``), a ``.lst``/``.txt`` list (``list``)."""
    p = Path(spec)
    if p.is_dir():
        return "rec" if (p / "train.rec").is_file() else "folder"
    kinds = {".rec": "rec", ".ffpk": "packed", ".lst": "list", ".txt": "list"}
    if p.suffix in kinds:
        return kinds[p.suffix]
    prefixes = ", ".join(f"{n}:" for n in SOURCES.names())
    if not p.exists():
        raise UserError(f"data source not found: {spec} (or use a prefix: {prefixes})")
    raise UserError(f"{spec}: cannot tell the format; use a prefix: {prefixes}")


def split_source(spec: str) -> tuple[str, str]:
    """``(prefix, rest)`` of a source string; a bare path gets the prefix its form says."""
    prefix, colon, rest = spec.partition(":")
    if colon and len(prefix) > 1 and prefix in SOURCES:
        return prefix, rest
    if colon and len(prefix) > 1 and not Path(spec).exists():
        raise UserError(
            f"unknown data source prefix '{prefix}:' in '{spec}': {closest(prefix, SOURCES.names())}"
        )
    return bare_path_kind(spec), spec


def open_source(spec: str) -> FaceDataset:
    """Open a training source string such as ``folder:/data/casia`` or ``synthetic:200x20``, or a
    bare path such as ``data/train`` (see :func:`bare_path_kind`), as ``data stats`` takes it."""
    prefix, rest = split_source(spec)
    dataset = SOURCES.entry(prefix).fn(rest)
    if len(dataset) == 0:
        raise UserError(f"data source '{spec}' holds no images")
    if dataset.num_classes < 2:
        raise UserError(f"data source '{spec}' holds a single identity; training needs at least 2")
    return dataset
