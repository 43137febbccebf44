"""``packed:FILE`` — the memory-mapped packed format of :mod:`faceforge.data.packed`."""

from __future__ import annotations

from faceforge.data.dataset import SOURCES
from faceforge.data.packed import PackedDataset


@SOURCES.register("packed")
def open_packed(path: str) -> PackedDataset:
    return PackedDataset(path)
