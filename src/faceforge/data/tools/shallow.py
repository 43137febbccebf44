"""``faceforge data shallow SRC DST --per-identity 2``: a shallow copy (few images per identity)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from faceforge.data.tools import check_new_output
from faceforge.errors import UserError
from faceforge.io.folders import list_identity_folder


def shallow(src: str | Path, dst: str | Path, per_identity: int = 2, seed: int | None = None,
            min_images: int = 1) -> dict:
    """Copy ``per_identity`` images of every identity (the first ones in sorted order, or a seeded
    random choice when ``seed`` is given); identities with fewer than ``min_images`` are dropped."""
    if per_identity < 1:
        raise UserError(f"--per-identity: must be at least 1, got {per_identity}")
    src, dst = Path(src), Path(dst)
    files, labels, names = list_identity_folder(src, "shallow")
    check_new_output(src, dst)
    rng = np.random.default_rng(seed) if seed is not None else None
    kept_ids = kept_images = 0
    for lab, name in enumerate(names):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < min_images:
            continue
        if rng is not None and len(idx) > per_identity:
            idx = np.sort(rng.choice(idx, per_identity, replace=False))
        idx = idx[:per_identity]
        (dst / name).mkdir(parents=True, exist_ok=True)
        for i in idx:
            shutil.copyfile(files[i], dst / name / files[i].name)
        kept_ids += 1
        kept_images += len(idx)
    return {"source": str(src), "output": str(dst), "identities": kept_ids, "images": kept_images,
            "images_in": len(files), "identities_in": len(names)}
