"""A "same person" threshold chosen on a verification set at a target false-accept rate.

The score is the cosine of L2-normalised embeddings (after the card's flip fusion), the one
:meth:`faceforge.FaceAnalyzer.compare` reports. The threshold is the lowest score that keeps the
FAR on the set's different-identity pairs at or below the target (:func:`tar_at_far` on the
all-pairs ROC); "same" means ``score >= threshold``. With D different pairs the smallest FAR
measurable is 1/D: a target below it is reported as ``far_resolution`` and the threshold then
simply sits above every impostor score seen.

faceforge checkpoints store the result under ``ckpt["calibration"]`` (``faceforge calibrate``);
ONNX exports store it as ``faceforge.threshold`` / ``faceforge.far`` metadata and in the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceforge.errors import UserError


def calibrate(embedder, pairs, far: float = 1e-3, flip: str = "none", batch_size: int = 64,
              workers: int = 0) -> dict[str, Any]:
    """Embed a pair source and pick the cosine threshold at ``far`` (see the module docstring)."""
    from faceforge.embed.base import l2_normalize
    from faceforge.embed.extract import embed_images
    from faceforge.eval.pairs import PairSet, open_pairs
    from faceforge.eval.verification import roc_curve, tar_at_far

    if not 0 < far < 1:
        raise UserError(f"--far: expected a rate in (0, 1), got {far}")
    pairset = pairs if isinstance(pairs, PairSet) else open_pairs(str(pairs))
    emb = embed_images(embedder, pairset, batch_size=batch_size, flip=flip, workers=workers)
    keep = emb.valid[pairset.pairs].all(axis=1)
    if not keep.any():
        raise UserError(f"--pairs {pairs}: no pair has two readable images")
    feats = l2_normalize(emb.features)
    a, b = pairset.pairs[keep, 0], pairset.pairs[keep, 1]
    scores = np.einsum("ij,ij->i", feats[a], feats[b]).astype(np.float64)
    issame = pairset.issame[keep]
    negatives = int((~issame).sum())
    if negatives == 0 or issame.sum() == 0:
        raise UserError(f"--pairs {pairs}: calibration needs both same and different pairs")
    tar, thr = tar_at_far(roc_curve(scores, issame), far)
    if not np.isfinite(thr):  # no score keeps FAR at the target: accept nothing above the max impostor
        thr = float(np.nextafter(scores[~issame].max(), np.inf))
    measured_far = float(np.mean(scores[~issame] >= thr))
    return {
        "threshold": float(thr),
        "far": float(far),
        "measured_far": measured_far,
        "tar": float(tar),
        "far_resolution": 1.0 / negatives,
        "pairs": int(keep.sum()),
        "score": "cosine",
        "flip": flip,
        "source": str(pairs) if not isinstance(pairs, PairSet) else pairset.name,
    }


def calibrate_checkpoint(ckpt: str | Path, pairs: str, far: float = 1e-3, flip: str = "sum",
                         device: str = "cpu", batch_size: int = 64) -> dict[str, Any]:
    """``faceforge calibrate``: calibrate a faceforge checkpoint and store ``ckpt["calibration"]``."""
    from faceforge.embed.torch_embedder import load_faceforge_checkpoint
    from faceforge.models.checkpoint import read_checkpoint, write_checkpoint

    obj = read_checkpoint(ckpt)
    embedder = load_faceforge_checkpoint(Path(ckpt), device)
    result = calibrate(embedder, pairs, far, flip, batch_size)
    obj["calibration"] = result
    write_checkpoint(ckpt, obj)
    return result


def stored_calibration(model_path: str | Path) -> dict[str, Any] | None:
    """The calibration stored with a faceforge checkpoint, if any."""
    from faceforge.models.checkpoint import read_checkpoint

    cal = read_checkpoint(model_path).get("calibration")
    return dict(cal) if isinstance(cal, dict) and "threshold" in cal else None
