"""``list:FILE[,root=DIR]`` — image lists: FaceX-Zoo ``path label`` lines and InsightFace ``.lst``.

* FaceX-Zoo train list: ``relative/path.jpg 123`` per line, paths relative to ``root`` (default: the
  list's folder).
* InsightFace ``.lst`` (``face2rec``): ``aligned<TAB>path<TAB>label[<TAB>bbox...]``. MXNet ``im2rec``'s
  ``index<TAB>label<TAB>path`` is recognised too (the path is the last field).

Labels are remapped to ``0..C-1`` in ascending order of the original label; ``names`` keeps the
original labels as strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_text
from faceforge.data.dataset import SOURCES, FaceDataset
from faceforge.errors import UserError
from faceforge.io.images import read_image


def _int(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def parse_list(text: str, where: str) -> tuple[list[str], list[int]]:
    """Paths and (original) labels of a FaceX-Zoo list or an InsightFace/im2rec ``.lst``."""
    paths: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line:
            f = line.rstrip("\r\n").split("\t")
            if len(f) < 3:
                raise UserError(f"{where}:{lineno}: expected 'aligned<TAB>path<TAB>label', got {line!r}")
            if _int(f[2]) is not None and _int(f[0]) is not None:  # face2rec: aligned, path, label
                path, label = f[1], _int(f[2])
            elif _int(f[1]) is not None and len(f) == 3:  # im2rec: index, label, path
                path, label = f[2], _int(f[1])
            else:
                raise UserError(f"{where}:{lineno}: cannot find an integer label in {line!r}")
        else:
            path, _, lab = line.strip().rpartition(" ")
            label = _int(lab) if path else None
            if label is None:
                raise UserError(f"{where}:{lineno}: expected 'path label', got {line.strip()!r}")
            path = path.strip()
        if label is None or label < 0:
            raise UserError(f"{where}:{lineno}: label must be a non-negative integer in {line.strip()!r}")
        paths.append(path)
        labels.append(label)
    return paths, labels


class ListDataset(FaceDataset):
    def __init__(self, list_file: str | Path, root: str | Path | None = None):
        self.list_file = Path(list_file)
        if not self.list_file.is_file():
            raise UserError(f"image list not found: {self.list_file}")
        self.root = Path(root) if root else self.list_file.parent
        where = str(self.list_file)
        try:
            text = self.list_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{where}: not UTF-8 text (bad byte at offset {e.start})") from None
        if "\0" in text:
            raise UserError(f"{where}: binary data (NUL byte at offset {text.index(chr(0))}), not a list")
        paths, raw = parse_list(text, where)
        originals = sorted(set(raw))
        remap = {lab: i for i, lab in enumerate(originals)}
        self.files = [Path(p) if os.path.isabs(p) else self.root / p for p in paths]
        self.labels = np.asarray([remap[r] for r in raw], dtype=np.int64)
        self.names = [str(o) for o in originals]
        self.description = f"list:{self.list_file}"

    def read(self, index: int) -> np.ndarray:
        return read_image(self.files[index])


def write_lst(path: str | Path, files: Sequence[str | Path], labels: Sequence[int], aligned: int = 1) -> None:
    """Write an InsightFace ``.lst`` (``aligned<TAB>path<TAB>label``), atomically."""
    lines = []
    for f, lab in zip(files, labels, strict=True):
        s = str(f)
        if "\t" in s or "\n" in s:
            raise UserError(f"{path}: file name {s!r} holds a tab or newline; run 'faceforge data clean'")
        lines.append(f"{aligned}\t{s}\t{int(lab)}\n")
    atomic_write_text(path, "".join(lines))


def write_facex_list(path: str | Path, files: Sequence[str], labels: Sequence[int]) -> None:
    """Write a FaceX-Zoo train list (``relative/path label``), atomically."""
    atomic_write_text(path, "".join(f"{f} {int(lab)}\n" for f, lab in zip(files, labels, strict=True)))


@SOURCES.register("list")
def open_list(spec: str) -> ListDataset:
    path, *opts = spec.split(",")
    root = None
    for opt in opts:
        key, eq, value = opt.partition("=")
        if key.strip() != "root" or not eq:
            raise UserError(f"list:{spec}: unknown option '{opt}' (valid: root=DIR)")
        root = value.strip()
    return ListDataset(path, root)
