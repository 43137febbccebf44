"""Tiny packed training sets for engine tests (random 112x112 images, labels ``i % classes``), and
the per-step losses a run logged."""

from __future__ import annotations

import json
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


def logged_losses(path: Path) -> dict[int, float]:
    """``step -> loss_total`` of a ``metrics.jsonl``; a step logged twice fails (a resumed run drops
    the records after its checkpoint, then logs those steps again)."""
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "loss_total" in rec:
            assert rec["step"] not in out, f"step {rec['step']} logged twice"
            out[rec["step"]] = rec["loss_total"]
    return out
