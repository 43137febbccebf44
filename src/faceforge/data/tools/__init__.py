"""Dataset tools behind ``faceforge data ...``: clean, balance, merge, shallow, stats, pack, convert;
own-data sets: split, gallery-probe (``split.py``) and verification pairs (``pairs.py``)."""

from __future__ import annotations

from pathlib import Path

from faceforge.data.dataset import SOURCES, FaceDataset
from faceforge.errors import UserError


def open_any(spec: str) -> FaceDataset:
    """A source string (``rec:...``), or a bare path recognised by its form: a folder of identity
    folders, a folder holding ``train.rec``, a ``.rec``, a ``.ffpk``, or a ``.lst``/``.txt`` list."""
    prefix, colon, rest = spec.partition(":")
    if colon and len(prefix) > 1 and prefix in SOURCES:
        dataset = SOURCES.entry(prefix).fn(rest)
    else:
        p = Path(spec)
        if p.is_dir():
            kind = "rec" if (p / "train.rec").is_file() else "folder"
        elif p.suffix == ".rec":
            kind = "rec"
        elif p.suffix == ".ffpk":
            kind = "packed"
        elif p.suffix in (".lst", ".txt"):
            kind = "list"
        elif not p.exists():
            raise UserError(f"data source not found: {spec} (or use a prefix: "
                            + ", ".join(f"{n}:" for n in SOURCES.names()) + ")")
        else:
            raise UserError(f"{spec}: cannot tell the format; use a prefix: "
                            + ", ".join(f"{n}:" for n in SOURCES.names()))
        dataset = SOURCES.entry(kind).fn(str(p))
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
