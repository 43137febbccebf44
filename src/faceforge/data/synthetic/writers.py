"""On disk: identity folders in LFW's layout with ``landmarks.csv``, and LFW ``pairs.txt``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.data.synthetic.layout import FIVE_NAMES, NUM_LANDMARKS
from faceforge.data.synthetic.render import SyntheticFaces
from faceforge.errors import UserError


def identity_name(j: int) -> str:
    return f"id{j:07d}"


def image_name(j: int, k: int) -> str:
    """Relative path of image ``k`` (0-based) of identity ``j``: LFW style, 1-based on disk."""
    name = identity_name(j)
    return f"{name}/{name}_{k + 1:04d}.jpg"


def landmarks_header() -> list[str]:
    cols = ["path", "identity"]
    cols += [f"lm{i}_{c}" for i in range(NUM_LANDMARKS) for c in "xy"]
    cols += [f"{n}_{c}" for n in FIVE_NAMES for c in "xy"]
    return cols + ["box_x1", "box_y1", "box_x2", "box_y2"]


def _check_counts(n_ids: int, k: int, offset: int) -> None:
    if n_ids < 1:
        raise UserError(f"identities: expected at least 1, got {n_ids}")
    if k < 1:
        raise UserError(f"images: expected at least 1 per identity, got {k}")
    if offset < 0:
        raise UserError(f"offset: expected a non-negative identity index, got {offset}")


def _render_identities(args) -> list[str]:
    import cv2

    cv2.setNumThreads(1)
    root, ids, k, seed, mode, difficulty, size = args
    faces = SyntheticFaces(seed=seed, mode=mode, difficulty=difficulty, size=size)
    rows = []
    for j in ids:
        folder = Path(root) / identity_name(j)
        folder.mkdir(parents=True, exist_ok=True)
        for kk in range(k):
            img, truth = faces.render(j, kk)
            rel = image_name(j, kk)
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            path = Path(root) / rel
            # rename into place so a reader never sees half an image; no fsync per image (too slow
            # for 10^5 files) -- landmarks.csv, written last and atomically, marks a finished set
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, path)
            nums = np.concatenate([truth["landmarks"].ravel(), truth["five"].ravel(), truth["box"]])
            rows.append(",".join([rel, identity_name(j)] + [f"{v:.3f}" for v in nums]))
    return rows


def write_dataset(root, n_ids: int, k: int, mode: str = "aligned", offset: int = 0, seed: int = 0,
                  workers: int = 1, difficulty: float = 1.0, size: int | None = None,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Render identities ``offset .. offset+n_ids-1`` with ``k`` images each under ``root``.

    Writes ``root/<name>/<name>_<k:04d>.jpg`` and ``root/landmarks.csv`` (path, identity, 176
    landmark numbers x0,y0,..., 10 five-point numbers, box x1,y1,x2,y2; pixel coordinates of the
    written image). ``progress(n)`` is called with the number of images just finished.
    """
    from faceforge.atomic import atomic_write_text

    _check_counts(n_ids, k, offset)
    SyntheticFaces(seed=seed, mode=mode, difficulty=difficulty, size=size)  # validates the options
    if workers < 1:
        raise UserError(f"workers: expected at least 1, got {workers}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"output: {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    ids = list(range(offset, offset + n_ids))
    chunk = max(1, min(16, n_ids // (workers * 4) or 1))
    jobs = [(str(root), ids[i : i + chunk], k, seed, mode, difficulty, size) for i in range(0, n_ids, chunk)]
    results: dict[int, list[str]] = {}
    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = _render_identities(job)
            if progress:
                progress(len(job[1]) * k)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            it = pool.imap_unordered(_indexed, list(enumerate(jobs)))
            for i, rows in it:
                results[i] = rows
                if progress:
                    progress(len(jobs[i][1]) * k)
    lines = [",".join(landmarks_header())]
    for i in range(len(jobs)):
        lines.extend(results[i])
    atomic_write_text(root / "landmarks.csv", "\n".join(lines) + "\n")
    return root


def _indexed(item):
    i, job = item
    return i, _render_identities(job)


def make_pairs(n_ids: int, k: int, folds: int = 10, per_fold: int | None = None, offset: int = 0,
               seed: int = 0) -> str:
    """The text of an LFW-layout pairs file (see :func:`write_pairs`); checks the request first."""
    _check_counts(n_ids, k, offset)
    if folds < 1:
        raise UserError(f"pairs: expected at least 1 fold, got {folds}")
    if k < 2:
        raise UserError("pairs: same-identity pairs need at least 2 images per identity")
    if n_ids < 2 * folds:
        raise UserError(
            f"pairs: {folds} folds of disjoint identities need at least {2 * folds} identities, got {n_ids}"
        )
    rng = np.random.default_rng([seed, 0x9A, offset, n_ids, k, folds])
    groups = np.array_split(offset + rng.permutation(n_ids), folds)
    same_cap = min(len(g) * k * (k - 1) // 2 for g in groups)
    diff_cap = min(len(g) * (len(g) - 1) // 2 * k * k for g in groups)
    cap = min(same_cap, diff_cap)
    if per_fold is None:
        per_fold = min(300, cap)
    if not 1 <= per_fold <= cap:
        raise UserError(f"pairs: {per_fold} pairs per fold requested; these identities allow 1..{cap}")
    lines = [f"{folds}\t{per_fold}"]
    for g in groups:
        # enumerate every candidate, then sample without replacement: exact counts, no retry loops
        same = [(int(j), a, b) for j in np.sort(g) for a in range(k) for b in range(a + 1, k)]
        pick = np.sort(rng.choice(len(same), per_fold, replace=False))
        lines += [f"{identity_name(same[i][0])}\t{same[i][1] + 1}\t{same[i][2] + 1}" for i in pick]
        ids = np.sort(g)
        n_pairs = len(ids) * (len(ids) - 1) // 2
        chosen = np.sort(rng.choice(n_pairs * k * k, per_fold, replace=False))
        iu, ju = np.triu_indices(len(ids), 1)
        for c in chosen:
            pair, rest = divmod(int(c), k * k)
            a, b = divmod(rest, k)
            j1, j2 = int(ids[iu[pair]]), int(ids[ju[pair]])
            lines.append(f"{identity_name(j1)}\t{a + 1}\t{identity_name(j2)}\t{b + 1}")
    return "\n".join(lines) + "\n"


def write_pairs(root, n_ids: int, k: int, folds: int = 10, per_fold: int | None = None, offset: int = 0,
                seed: int = 0, filename: str = "pairs.txt") -> Path:
    """Write an LFW-layout verification pairs file for identities ``offset .. offset+n_ids-1``.

    Line 1 is ``<folds><TAB><n>``; each fold then lists ``n`` same pairs ``name<TAB>i<TAB>j`` followed
    by ``n`` different pairs ``name1<TAB>i<TAB>name2<TAB>j``, with 1-based image numbers: ``name i`` is
    the file ``<root>/<name>/<name>_<i:04d>.jpg`` as written by :func:`write_dataset`. Folds hold
    disjoint identities, as LFW's do. ``n`` defaults to min(300, what the identities allow).
    """
    from faceforge.atomic import atomic_write_text

    text = make_pairs(n_ids, k, folds, per_fold, offset, seed)
    path = Path(root) / filename
    atomic_write_text(path, text)
    return path
