"""Landmark errors: MSE and MAE per coordinate in crop pixels, NME by inter-ocular distance, per group.

``NME`` is the mean point-to-point Euclidean error divided by the distance between the outer eye
corners (points 21 and 29 of the 88; the 300-W "inter-ocular" normalisation), in percent.
"""

from __future__ import annotations

import numpy as np

from faceforge.data.synthetic import LANDMARK_GROUPS
from faceforge.errors import UserError

OUTER_EYE_CORNERS = (LANDMARK_GROUPS["left_eye"].start, LANDMARK_GROUPS["right_eye"].start)


def landmark_errors(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Errors of ``pred`` against ``truth`` (both [N, 88, 2], same pixel units, e.g. a 160 crop)."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise UserError(f"landmark_errors: shapes {pred.shape} and {truth.shape} differ or are not [N, P, 2]")
    if len(pred) == 0:
        raise UserError("landmark_errors: no samples")
    d = pred - truth
    dist = np.sqrt((d**2).sum(-1))  # [N, P]
    iod = np.linalg.norm(truth[:, OUTER_EYE_CORNERS[0]] - truth[:, OUTER_EYE_CORNERS[1]], axis=-1)
    nme_each = dist.mean(1) / np.maximum(iod, 1e-9)
    out = {
        "samples": int(len(pred)),
        "mse": float((d**2).mean()),
        "mae": float(np.abs(d).mean()),
        "mean_distance": float(dist.mean()),
        "nme_percent": float(100 * nme_each.mean()),
        "failure_rate_10_percent": float((nme_each > 0.10).mean()),  # share of faces with NME > 10%
        "groups": {},
    }
    for name, sl in LANDMARK_GROUPS.items():
        g = d[:, sl]
        out["groups"][name] = {
            "mse": float((g**2).mean()),
            "mae": float(np.abs(g).mean()),
            "nme_percent": float(100 * (dist[:, sl].mean(1) / np.maximum(iod, 1e-9)).mean()),
        }
    return out
