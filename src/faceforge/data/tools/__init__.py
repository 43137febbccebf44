"""Dataset tools behind ``faceforge data ...``: clean, balance, merge, shallow, stats, pack, convert;
own-data sets: split, gallery-probe (``split.py``) and verification pairs (``pairs.py``)."""

from __future__ import annotations

from pathlib import Path

from faceforge.data.dataset import SOURCES, FaceDataset, split_source
from faceforge.errors import UserError


def open_any(spec: str) -> FaceDataset:
    """A source string (``rec:...``), or a bare path recognised by its form: a folder of identity
    folders, a folder holding ``train.rec``, a ``.rec``, a ``.ffpk``, or a ``.lst``/``.txt`` list."""
    prefix, rest = split_source(spec)
    dataset = SOURCES.entry(prefix).fn(rest)
    if len(dataset) == 0:
        raise UserError(f"data source '{spec}' holds no images")
    return dataset


def check_new_output(src: Path, dst: Path) -> None:
    """DST must not be SRC, lie inside it, or be a non-empty folder: tools never overwrite inputs."""
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents or d in s.parents:
        raise UserError(f"{dst}: output must be a new folder outside the source {src}")
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise UserError(f"{dst}: output already exists and is not empty")
