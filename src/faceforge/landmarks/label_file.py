"""Landmark label files: CSV or TSV, one image per row, 88 points in pixels of that image.

Accepted layouts (the delimiter is a tab if the first line holds one, else a comma):

* with a header naming columns: ``path`` (required), ``lm<i>_x``/``lm<i>_y`` for i in 0..87
  (required), ``box_x1 box_y1 box_x2 box_y2`` and ``identity`` (optional); other columns (such as
  the five points ``left_eye_x`` ...) are ignored. This is what ``faceforge synth`` writes.
* without a header: ``path x0 y0 ... x87 y87`` (177 fields), the same plus a box ``x1 y1 x2 y2``
  (181 fields), or the full ``faceforge synth`` row ``path identity 176 numbers 10 five-point
  numbers box`` (192 fields).

Relative paths are relative to the label file's folder. ``nan`` is read as a missing value, which
the cleaning step (:mod:`faceforge.landmarks.samples`) drops with a reason.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceforge.data.synthetic import NUM_LANDMARKS, five_from_88, landmarks_header
from faceforge.errors import UserError
from faceforge.io.text import read_text

BOX_COLUMNS = ["box_x1", "box_y1", "box_x2", "box_y2"]
_LM_COLUMNS = [f"lm{i}_{c}" for i in range(NUM_LANDMARKS) for c in "xy"]


@dataclass
class LandmarkLabels:
    """Rows of a label file: resolved image paths, points [N, 88, 2], boxes [N, 4] (NaN = none)."""

    paths: list[str]
    points: np.ndarray
    boxes: np.ndarray
    identities: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


MAX_COORD = 1e6  # pixels: far outside any image the gate decodes; larger values are damage, not points


def _numbers(values: list[str], where: str) -> np.ndarray:
    try:
        out = np.array([float(v) if v.strip() else np.nan for v in values], np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise UserError(f"{where}: '{bad}' is not a number") from None
    bad = np.isinf(out) | (np.abs(np.nan_to_num(out)) > MAX_COORD)
    if bad.any():  # NaN stays: it marks a missing point, which cleaning drops with a reason
        raise UserError(f"{where}: coordinate {values[int(np.argmax(bad))].strip()} is not a pixel position "
                        f"(infinite or beyond +-{MAX_COORD:g})")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return not text.strip()


def read_labels(path: str | Path) -> LandmarkLabels:
    """Read a landmark label file (see the module docstring for the layouts)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"landmark file not found: {path}")
    text = read_text(path)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{path}: empty landmark file")
    base = path.parent
    named = len(rows[0]) > 1 and not _is_number(rows[0][1]) and not _is_number(rows[0][-1])
    header = rows[0] if named else None
    paths, pts, boxes, ids = [], [], [], []
    if header is not None:
        cols = {name.strip(): i for i, name in enumerate(header)}
        if "path" not in cols:
            raise UserError(f"{path}: header has no 'path' column")
        missing = [c for c in _LM_COLUMNS if c not in cols]
        if missing:
            raise UserError(f"{path}: header lacks landmark columns (e.g. '{missing[0]}'); "
                            "expected lm0_x, lm0_y, ..., lm87_y")
        lm_idx = [cols[c] for c in _LM_COLUMNS]
        box_idx = [cols[c] for c in BOX_COLUMNS] if all(c in cols for c in BOX_COLUMNS) else None
        id_idx = cols.get("identity")
        for n, row in enumerate(rows[1:], start=2):
            where = f"{path}:{n}"
            if len(row) != len(header):
                raise UserError(f"{where}: {len(row)} fields, the header has {len(header)}")
            paths.append(row[cols["path"]])
            pts.append(_numbers([row[i] for i in lm_idx], where))
            boxes.append(_numbers([row[i] for i in box_idx], where) if box_idx else np.full(4, np.nan))
            ids.append(row[id_idx] if id_idx is not None else "")
    else:
        for n, row in enumerate(rows, start=1):
            where = f"{path}:{n}"
            k = len(row)
            if k == 1 + 2 * NUM_LANDMARKS:
                nums, box, ident = row[1:], None, ""
            elif k == 5 + 2 * NUM_LANDMARKS:
                nums, box, ident = row[1:-4], row[-4:], ""
            elif k == 2 + 2 * NUM_LANDMARKS + 10 + 4:
                nums, box, ident = row[2 : 2 + 2 * NUM_LANDMARKS], row[-4:], row[1]
            else:
                raise UserError(f"{where}: {k} fields; expected path + 176 numbers (177), + a box (181), "
                                "or the faceforge synth layout (192)")
            paths.append(row[0])
            pts.append(_numbers(nums, where))
            boxes.append(_numbers(box, where) if box else np.full(4, np.nan))
            ids.append(ident)
    if not paths:
        raise UserError(f"{path}: no rows")
    resolved = [p if Path(p).is_absolute() else str(base / p) for p in paths]
    return LandmarkLabels(resolved, np.stack(pts).reshape(-1, NUM_LANDMARKS, 2), np.stack(boxes), ids)


def write_labels(path: str | Path, paths: list[str], points: np.ndarray, boxes: np.ndarray | None = None,
                 identities: list[str] | None = None) -> Path:
    """Write labels in the ``faceforge synth`` layout (path, identity, 176 numbers, five points, box).

    Without boxes the box columns are left out. Written atomically.
    """
    from faceforge.atomic import atomic_write_text

    points = np.asarray(points, np.float64).reshape(-1, NUM_LANDMARKS, 2)
    if len(points) != len(paths):
        raise UserError(f"write_labels: {len(paths)} paths but {len(points)} point sets")
    if boxes is not None:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) != len(paths):
            raise UserError(f"write_labels: {len(paths)} paths but {len(boxes)} boxes")
    identities = identities or [""] * len(paths)
    header = landmarks_header()
    if boxes is None:
        header = header[:-4]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    five = five_from_88(points)
    for i, p in enumerate(paths):
        nums = [points[i].ravel(), five[i].ravel()] + ([boxes[i]] if boxes is not None else [])
        w.writerow([p, identities[i]] + [f"{v:.3f}" for v in np.concatenate(nums)])
    atomic_write_text(path, buf.getvalue())
    return Path(path)
