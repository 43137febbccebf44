"""Tiny packed training sets for engine tests (random 112x112 images, labels ``i % classes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.packed import PackedWriter


def write_random_packed(path: Path, n: int, classes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = PackedWriter(path, (112, 112, 3))
    for i in range(n):
        w.add(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), i % classes)
    w.close()
    return path
