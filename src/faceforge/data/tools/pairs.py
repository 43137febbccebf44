"""Verification pairs drawn from any identity folder (``faceforge data pairs``).

Identities are shuffled (seeded) and dealt round-robin into ``n_folds`` folds, so the folds are
identity-disjoint like LFW View 2's. Each fold gets the same number ``m`` of same-identity pairs and
of different-identity pairs (``m = per_fold`` unless some fold has fewer same pairs to give; then the
smallest fold's count, so every fold stays balanced and equal). Same pairs are spread over the
fold's identities round-robin (one pair per identity per round) rather than drawn uniformly, which
would let the identities with the most photos dominate.

The file is a FaceX-Zoo style list (``path1 path2 label`` per line, label 1 = same, absolute paths)
ordered fold by fold, same pairs first: ``faceforge eval verify --pairs facex:PAIRS.txt`` and
``faceforge calibrate --pairs facex:PAIRS.txt`` read it, and with ``n_folds=10`` the reader's default
contiguous 10-fold split is exactly these identity-disjoint folds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_text
from faceforge.errors import UserError
from faceforge.io.folders import list_identity_folder

# per identity, at most this many candidate same pairs are listed (enough for any fold size)
_MAX_CANDIDATES = 2000


def _same_candidates(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Distinct index pairs (i < j) of one identity's ``n`` images in random order."""
    total = n * (n - 1) // 2
    if total <= _MAX_CANDIDATES:
        cands = list(itertools.combinations(range(n), 2))
        return [cands[k] for k in rng.permutation(len(cands))]
    seen: set[tuple[int, int]] = set()
    out = []
    while len(out) < _MAX_CANDIDATES:
        i, j = sorted(rng.choice(n, 2, replace=False).tolist())
        if (i, j) not in seen:
            seen.add((i, j))
            out.append((i, j))
    return out


def _round_robin(lists: list[list], m: int) -> list:
    out = []
    for row in itertools.zip_longest(*lists):
        out.extend(x for x in row if x is not None)
        if len(out) >= m:
            break
    return out[:m]


def verification_pairs(src: str | Path, n_folds: int = 10, per_fold: int = 300,
                       seed: int = 0) -> list[tuple[Path, Path, bool, int]]:
    """Balanced, identity-disjoint pairs ``(image1, image2, same, fold)`` ordered fold by fold (same
    pairs first within a fold); see the module docstring. ``per_fold`` is the number of same pairs
    (and of different pairs) wanted in each fold."""
    if n_folds < 1 or per_fold < 1:
        raise UserError(f"pairs: --folds and --per-fold must be at least 1, got {n_folds} and {per_fold}")
    files, labels, names = list_identity_folder(Path(src), "pairs")
    groups = [[files[i] for i in np.flatnonzero(labels == k)] for k in range(len(names))]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    folds = [[groups[k] for k in order[f::n_folds]] for f in range(n_folds)]
    if any(len(ids) < 2 for ids in folds):
        raise UserError(f"pairs: {src} has {len(groups)} identities; {n_folds} folds need at least "
                        f"{2 * n_folds} (2 per fold for different pairs); use fewer --folds")
    same = [[[(ids[k][i], ids[k][j]) for i, j in _same_candidates(len(ids[k]), rng)]
             for k in range(len(ids))] for ids in folds]
    m = min(per_fold, *(sum(len(c) for c in fold) for fold in same))
    if m == 0:
        raise UserError(f"pairs: a fold of {src} has no identity with 2 or more images, so no same "
                        "pair; use fewer --folds")
    out: list[tuple[Path, Path, bool, int]] = []
    for f, ids in enumerate(folds):
        out.extend((a, b, True, f) for a, b in _round_robin(same[f], m))
        possible = sum(len(a) * len(b) for a, b in itertools.combinations(ids, 2))
        if possible < m:
            raise UserError(f"pairs: fold {f} of {src} allows only {possible} different pairs, "
                            f"{m} wanted; lower --per-fold")
        seen: set[tuple[int, int, int, int]] = set()
        while len(seen) < m:
            a, b = sorted(rng.choice(len(ids), 2, replace=False).tolist())
            key = (a, int(rng.integers(len(ids[a]))), b, int(rng.integers(len(ids[b]))))
            if key not in seen:
                seen.add(key)
                out.append((ids[a][key[1]], ids[b][key[3]], False, f))
    return out


def write_pairs(src: str | Path, out: str | Path, n_folds: int = 10, per_fold: int = 300,
                seed: int = 0) -> dict:
    """Draw :func:`verification_pairs` and write them to ``out`` (FaceX-Zoo list, atomically);
    returns a report whose ``spec`` (``facex:OUT``) is the pair source for ``eval verify`` and
    ``calibrate``."""
    pairs = verification_pairs(src, n_folds, per_fold, seed)
    lines = []
    for a, b, same, _ in pairs:
        pa, pb = str(Path(a).absolute()), str(Path(b).absolute())
        for p in (pa, pb):
            if any(c.isspace() for c in p):
                raise UserError(f"{p}: a path with white space cannot go into a pairs list; rename it "
                                "(faceforge data clean writes plain names)")
        lines.append(f"{pa} {pb} {int(same)}\n")
    atomic_write_text(out, "".join(lines))
    same = sum(p[2] for p in pairs)
    return {"source": str(src), "output": str(out), "spec": f"facex:{out}", "folds": n_folds,
            "per_fold": same // n_folds, "short": same // n_folds < per_fold, "same": same,
            "different": len(pairs) - same, "seed": seed}


def pairs_summary(report: dict) -> str:
    short = " (fewer than asked: the smallest fold has no more same pairs)" if report.get("short") else ""
    return (f"pairs: {report['same']} same + {report['different']} different pairs in {report['folds']} "
            f"identity-disjoint folds of {report['per_fold']} + {report['per_fold']}{short} -> "
            f"{report['output']} (use --pairs {report['spec']})")
