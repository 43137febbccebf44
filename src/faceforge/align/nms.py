"""Greedy non-maximum suppression over (x1, y1, x2, y2) boxes, in numpy."""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes kept, best score first.

    ``mode="union"`` suppresses a box whose IoU with a kept box exceeds ``threshold``;
    ``mode="min"`` divides the overlap by the smaller area instead (MTCNN's last stage uses it so a
    small box inside a larger face is dropped).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', not {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    area = box_area(boxes)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        b, r = boxes[i], boxes[rest]
        w = np.clip(np.minimum(b[2], r[:, 2]) - np.maximum(b[0], r[:, 0]), 0, None)
        h = np.clip(np.minimum(b[3], r[:, 3]) - np.maximum(b[1], r[:, 1]), 0, None)
        inter = w * h
        if mode == "union":
            overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        else:
            overlap = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)
