"""``synthetic:NxK[,offset=J][,seed=S][,mode=aligned|wild][,difficulty=D][,size=PX]`` — rendered on the fly.

``synthetic:200x20`` is 200 identities (``offset .. offset+199``) with 20 images each, drawn by
:class:`faceforge.data.synthetic.SyntheticFaces`; nothing touches the disk. Image ``k`` of identity
``j`` is the same in every spec that contains it, so ``synthetic:100x10,offset=1000`` is a disjoint
validation set for ``synthetic:1000x20``.
"""

from __future__ import annotations

import re

import numpy as np

from faceforge.data.dataset import SOURCES, FaceDataset
from faceforge.data.synthetic import MODES, SyntheticFaces, identity_name
from faceforge.errors import UserError

_COUNTS = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_OPTIONS = {"offset": int, "seed": int, "mode": str, "difficulty": float, "size": int}


class SyntheticDataset(FaceDataset):
    """``n_ids`` identities x ``k`` images; label ``i // k``, identity ``offset + i // k``."""

    def __init__(self, n_ids: int, k: int, offset: int = 0, seed: int = 0, mode: str = "aligned",
                 difficulty: float = 1.0, size: int | None = None):
        if n_ids < 1 or k < 1:
            raise UserError(f"synthetic: need at least 1 identity and 1 image, got {n_ids}x{k}")
        if offset < 0:
            raise UserError(f"synthetic offset: expected a non-negative integer, got {offset}")
        self.faces = SyntheticFaces(seed=seed, mode=mode, difficulty=difficulty, size=size)
        self.n_ids, self.k, self.offset = n_ids, k, offset
        self.labels = np.repeat(np.arange(n_ids, dtype=np.int64), k)
        self.names = [identity_name(offset + j) for j in range(n_ids)]
        self.description = (f"synthetic:{n_ids}x{k},offset={offset},seed={seed},mode={mode},"
                            f"difficulty={difficulty:g},size={self.faces.size}")

    def _jk(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self.labels):
            raise IndexError(f"image {index} out of range 0..{len(self.labels) - 1}")
        return self.offset + index // self.k, index % self.k

    def read(self, index: int) -> np.ndarray:
        return self.faces.render(*self._jk(index))[0]

    def read_with_truth(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The image and its ground truth (``landmarks`` [88, 2], ``five`` [5, 2], ``box`` [4])."""
        return self.faces.render(*self._jk(index))

    def landmarks(self, index: int) -> np.ndarray:
        """The 88 landmarks [88, 2] (pixels of the image ``read(index)`` returns), without rendering."""
        return self.faces.geometry(*self._jk(index))["landmarks"]

    def five_points(self, index: int) -> np.ndarray:
        return self.faces.geometry(*self._jk(index))["five"]

    def box(self, index: int) -> np.ndarray:
        """The face box ``[x1, y1, x2, y2]`` (landmarks' extent, up to mid-forehead)."""
        return self.faces.geometry(*self._jk(index))["box"]


def parse_spec(spec: str) -> dict:
    """``200x20,offset=1000,mode=wild`` -> keyword arguments of :class:`SyntheticDataset`."""
    where = f"synthetic:{spec}"
    head, *opts = spec.split(",")
    m = _COUNTS.match(head)
    if not m:
        raise UserError(f"data source '{where}': expected 'synthetic:<identities>x<images>', e.g. "
                        f"synthetic:200x20,offset=0,seed=0,mode=aligned,difficulty=1.0")
    kwargs: dict = {"n_ids": int(m.group(1)), "k": int(m.group(2))}
    for opt in opts:
        key, eq, value = (s.strip() for s in opt.partition("="))
        if not eq or key not in _OPTIONS:
            raise UserError(f"data source '{where}': unknown option '{opt.strip()}'; valid: "
                            + ", ".join(f"{k}=" for k in _OPTIONS))
        if key in kwargs:
            raise UserError(f"data source '{where}': option '{key}' given twice")
        try:
            kwargs[key] = _OPTIONS[key](value)
        except ValueError:
            raise UserError(f"data source '{where}': {key}={value!r} is not a valid "
                            f"{_OPTIONS[key].__name__}") from None
    if kwargs.get("mode", "aligned") not in MODES:
        raise UserError(f"data source '{where}': mode must be one of {', '.join(MODES)}")
    return kwargs


@SOURCES.register("synthetic")
def open_synthetic(spec: str) -> SyntheticDataset:
    kwargs = parse_spec(spec)
    try:
        return SyntheticDataset(**kwargs)
    except UserError as e:
        raise UserError(f"data source 'synthetic:{spec}': {e}") from None
