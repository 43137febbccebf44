"""Masked-face identification: masked probes against an unmasked gallery.

Probes are masked on the fly with ``faceforge.data.masks.apply_mask(img_aligned, rng)`` when that
module exists, or read from a folder of pre-masked probes (same ``<identity>/<image>`` layout).
The result is a rank table with one row for the unmasked probes and one for the masked ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceforge.errors import UserError
from faceforge.eval.identification import RANKS, identify_folders, open_identity_folder


class MaskedImages:
    """A folder dataset whose images come back masked, reproducibly (one seed per image)."""

    def __init__(self, dataset, apply_mask, seed: int = 0):
        self.dataset, self.apply_mask, self.seed = dataset, apply_mask, seed
        self.labels = dataset.labels

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int) -> np.ndarray:
        img = self.dataset.read(index)
        return self.apply_mask(img, np.random.default_rng((self.seed, index)))


def _mask_function():
    try:
        from faceforge.data.masks import apply_mask
    except ImportError:
        return None
    return apply_mask


def masked_identification(
    embedder,
    gallery: str | Path,
    probe: str | Path,
    masked_probe: str | Path | None = None,
    flip: str = "sum",
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``{"unmasked": {...}, "masked": {...}}`` rank results against the same gallery."""
    kw = dict(flip=flip, batch_size=batch_size, workers=workers, cache_dir=cache_dir)
    plain = identify_folders(embedder, gallery, probe, **kw)
    if masked_probe is not None:
        masked = identify_folders(embedder, gallery, masked_probe, **kw)
        how = f"pre-masked folder {masked_probe}"
    else:
        apply_mask = _mask_function()
        if apply_mask is None:
            raise UserError(
                "masked: faceforge.data.masks.apply_mask is not available; "
                "give masked_probe: a folder of pre-masked probe images"
            )
        p_ds = open_identity_folder(probe)
        spec = f"masked:{Path(probe).resolve()},seed={seed}"
        masked = identify_folders(
            embedder, gallery, probe, probe_images=MaskedImages(p_ds, apply_mask, seed), probe_spec=spec, **kw
        )
        how = f"apply_mask, seed {seed}"
    return {"unmasked": plain, "masked": masked, "masking": how, "model": embedder.meta.name}


def rank_table(result: dict[str, Any], ranks=RANKS) -> str:
    """Markdown rank table of a masked result."""
    head = "| probes | " + " | ".join(f"rank-{k}" for k in ranks) + " |"
    lines = [head, "|" + "---|" * (len(ranks) + 1)]
    for row in ("unmasked", "masked"):
        cells = " | ".join(f"{100 * result[row][f'rank{k}']:.2f}" for k in ranks)
        lines.append(f"| {row} | {cells} |")
    return "\n".join(lines)
