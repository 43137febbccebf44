"""1:1 verification: the 10-fold protocols of InsightFace and FaceX-Zoo, TAR@FAR, EER and ROC.

``verify_embeddings(emb, issame)`` takes features of 2N images (pair i = rows 2i and 2i+1) and
returns a dict. Two protocols:

* ``insightface`` (arcface_torch ``eval/verification.py: evaluate``): squared L2 distance in
  float64; "same" when ``dist < t``; accuracy grid ``np.arange(0, 4, 0.01)``; each held-out fold
  uses the **first** threshold maximising accuracy on the other nine folds; std with ddof=0;
  VAL@FAR=1e-3 on the grid ``np.arange(0, 4, 0.001)`` with the threshold interpolated the way
  scipy <= 1.8 ``interp1d(kind="slinear")`` did (the peer crashes on scipy >= 1.9, InsightFace
  issue #2152; see :func:`_slinear_threshold`).
* ``facex`` (FaceX-Zoo ``test_protocol/lfw/lfw_evaluator.py``): cosine score of float32 features;
  1,000 thresholds spread over each training split's score range; first maximiser of Youden's J
  (TPR - FPR, counted as ``score > t``); a held-out score equal to the threshold counts as wrong
  for both classes; the spread is the standard error ``std(ddof=1) / sqrt(folds)``. FaceX-Zoo
  hard-codes 6000 pairs in blocks of 600; here folds are general (same split as InsightFace).

Folds are contiguous blocks in pair order (sklearn ``KFold(shuffle=False)``: the first
``N % k`` folds are one larger) unless an explicit fold id per pair is given (CALFW lists).

``mean_subtract=True`` is the LFW scoring of SphereFace (``evaluation.m``) and MobileFaceNet-PyTorch
(``lfw_eval.py``): for each held-out fold, the mean of the *other* folds' raw features (both images
of every pair) is subtracted from every feature before L2 normalisation, so the threshold is chosen
and tested on features centred without looking at the test fold. Either protocol can use it; the
all-pairs ROC / TAR@FAR / EER then use features centred on the mean of all pairs.

Every computation is vectorised with counts from ``searchsorted``: 6000 pairs take milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.embed.base import l2_normalize
from faceforge.errors import UserError
from faceforge.eval.thresholds import measurable, smallest_far, tar_cell, tar_table

PROTOCOLS = ("insightface", "facex")
FAR_TARGETS = (1e-4, 1e-3, 1e-2)


# --------------------------------------------------------------------------------------------
# folds and features


def kfold_ids(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold id of each of ``n`` items: contiguous blocks, the first ``n % n_folds`` one larger."""
    if n < n_folds:
        raise UserError(f"pairs: {n} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n // n_folds, dtype=np.int64)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def _check(emb: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(emb)
    issame = np.asarray(issame).astype(bool).ravel()
    if emb.ndim != 2 or emb.shape[0] != 2 * issame.shape[0]:
        raise UserError(f"embeddings: expected shape (2N, D) with N={issame.shape[0]} pairs, got {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise UserError("embeddings: contain NaN or inf (a diverged model?)")
    return emb, issame


def _fold_ids(n: int, folds: np.ndarray | None, n_folds: int) -> tuple[np.ndarray, int]:
    if folds is None:
        return kfold_ids(n, n_folds), n_folds
    folds = np.asarray(folds, dtype=np.int64).ravel()
    if folds.shape[0] != n:
        raise UserError(f"folds: expected one fold id per pair ({n}), got {folds.shape[0]}")
    uniq = np.unique(folds)
    if not np.array_equal(uniq, np.arange(len(uniq))):
        raise UserError("folds: fold ids must be 0..K-1")
    return folds, len(uniq)


def _counts_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly below each threshold (``np.less(value, t)``)."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def _counts_above(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly above each threshold."""
    return sorted_values.shape[0] - np.searchsorted(sorted_values, thresholds, side="right")


def _ratio(num: np.ndarray, den) -> np.ndarray:
    """``num / den`` as the peers compute it (float division), 0 where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


# --------------------------------------------------------------------------------------------
# InsightFace


def pair_distances(emb: np.ndarray) -> np.ndarray:
    """Squared L2 distance of pairs (rows 2i, 2i+1) in float64, as arcface_torch computes it."""
    emb = np.asarray(emb, dtype=np.float64)
    return np.sum(np.square(np.subtract(emb[0::2], emb[1::2])), 1)


def _slinear_threshold(far_train: np.ndarray, thresholds: np.ndarray, far_target: float) -> float:
    """The threshold scipy <= 1.8 ``interp1d(far_train, thresholds, kind="slinear")`` returns.

    ``far_train`` is non-decreasing with repeats. 1.8 built a degree-1 B-spline on the stably
    sorted points, which is linear interpolation between the *last* point whose FAR is the largest
    value <= target and the *first* point of the next larger FAR value.
    """
    ia = int(np.searchsorted(far_train, far_target, side="right")) - 1  # far[0] == 0 so ia >= 0
    far_a, t_a = far_train[ia], thresholds[ia]
    if ia + 1 >= far_train.shape[0]:
        return float(t_a)
    far_b, t_b = far_train[ia + 1], thresholds[ia + 1]
    return float(t_a + (t_b - t_a) * (far_target - far_a) / (far_b - far_a))


def insightface_folds(
    dist: np.ndarray, issame: np.ndarray, folds: np.ndarray, n_folds: int, far_target: float = 1e-3
) -> dict[str, Any]:
    """arcface_torch ``calculate_roc`` + ``calculate_val`` on precomputed float64 distances."""
    grid = np.arange(0, 4, 0.01)
    val_grid = np.arange(0, 4, 0.001)
    same_sorted = [np.sort(dist[(folds == f) & issame]) for f in range(n_folds)]
    diff_sorted = [np.sort(dist[(folds == f) & ~issame]) for f in range(n_folds)]
    n_same = np.array([len(s) for s in same_sorted])
    n_diff = np.array([len(s) for s in diff_sorted])
    # per fold, per threshold: same (tp) and different (fp) pairs predicted "same"
    tp = np.stack([_counts_below(s, grid) for s in same_sorted])
    fp = np.stack([_counts_below(s, grid) for s in diff_sorted])
    vfp = np.stack([_counts_below(s, val_grid) for s in diff_sorted])

    best = np.zeros(n_folds)
    acc = np.zeros(n_folds)
    tprs = np.zeros((n_folds, grid.shape[0]))
    fprs = np.zeros((n_folds, grid.shape[0]))
    val_thr = np.zeros(n_folds)
    val = np.zeros(n_folds)
    far = np.zeros(n_folds)
    for f in range(n_folds):
        tr_tp, tr_fp = tp.sum(0) - tp[f], fp.sum(0) - fp[f]
        tr_same, tr_diff = n_same.sum() - n_same[f], n_diff.sum() - n_diff[f]
        acc_train = (tr_tp + (tr_diff - tr_fp)) / float(tr_same + tr_diff)
        b = int(np.argmax(acc_train))  # first maximiser
        best[f] = grid[b]
        tprs[f] = _ratio(tp[f], n_same[f])
        fprs[f] = _ratio(fp[f], n_diff[f])
        acc[f] = float(tp[f, b] + n_diff[f] - fp[f, b]) / float(n_same[f] + n_diff[f])

        far_train = _ratio(vfp.sum(0) - vfp[f], tr_diff)
        thr = _slinear_threshold(far_train, val_grid, far_target) if far_train.max() >= far_target else 0.0
        val_thr[f] = thr
        val[f] = _ratio(_counts_below(same_sorted[f], thr), n_same[f])
        far[f] = _ratio(_counts_below(diff_sorted[f], thr), n_diff[f])
    return {
        "fold_accuracy": acc,
        "accuracy": float(np.mean(acc)),
        "accuracy_std": float(np.std(acc)),
        "best_threshold": best,
        "tpr": np.mean(tprs, 0),
        "fpr": np.mean(fprs, 0),
        "thresholds": grid,
        "val": float(np.mean(val)),
        "val_std": float(np.std(val)),
        "far": float(np.mean(far)),
        "val_threshold": val_thr,
        "val_fold": val,
        "far_fold": far,
    }


# --------------------------------------------------------------------------------------------
# FaceX-Zoo


def pair_scores(emb: np.ndarray) -> np.ndarray:
    """Cosine score (dot product of already normalised features) of each pair, in float32."""
    emb = np.asarray(emb, dtype=np.float32)
    return np.einsum("ij,ij->i", emb[0::2], emb[1::2])


def facex_folds(
    scores: np.ndarray, issame: np.ndarray, folds: np.ndarray, n_folds: int, num_thresholds: int = 1000
) -> dict[str, Any]:
    """FaceX-Zoo ``LFWEvaluator.test_one_model`` + ``getThreshold`` on precomputed float32 scores."""
    scores = np.asarray(scores, dtype=np.float32)
    steps = np.arange(1, num_thresholds + 1)
    best = np.zeros(n_folds)
    acc = np.zeros(n_folds)
    for f in range(n_folds):
        train = folds != f
        tr_scores = scores[train]
        pos = np.sort(tr_scores[issame[train]])
        neg = np.sort(tr_scores[~issame[train]])
        smin, smax = tr_scores.min(), tr_scores.max()
        step = (smax - smin) / np.float32(num_thresholds)  # float32, as numpy >= 2 (NEP 50) does
        thresholds = np.float64(smin) + np.float64(step) * steps
        tpr = _ratio(_counts_above(pos, thresholds), pos.shape[0])
        fpr = _ratio(_counts_above(neg, thresholds), neg.shape[0])
        t = thresholds[int(np.argmax(tpr - fpr))]
        best[f] = t
        test = folds == f
        te_scores, te_same = scores[test], issame[test]
        correct = np.sum(te_scores[te_same] > t) + np.sum(te_scores[~te_same] < t)
        acc[f] = correct / test.sum()
    return {
        "fold_accuracy": acc,
        "accuracy": float(np.mean(acc)),
        "accuracy_std": float(np.std(acc, ddof=1) / np.sqrt(n_folds)),  # standard error
        "best_threshold": best,
    }


# --------------------------------------------------------------------------------------------
# mean subtraction of the other folds' features (SphereFace / MobileFaceNet-PyTorch)

_PER_FOLD = ("fold_accuracy", "best_threshold", "val_threshold", "val_fold", "far_fold")


def _centred(emb: np.ndarray, rows: np.ndarray) -> np.ndarray:
    mu = emb[rows].mean(axis=0, dtype=np.float64)
    return l2_normalize((emb.astype(np.float64) - mu).astype(emb.dtype))


def fold_centred(fold_fn, score_fn, emb: np.ndarray, issame: np.ndarray, folds: np.ndarray, k: int,
                 base: dict[str, Any]) -> dict[str, Any]:
    """``fold_fn`` (a k-fold protocol over per-pair scores) where fold f is scored on features
    centred on the mean of the other folds; ``base`` (the run on globally centred features) gives
    the averaged curves, every per-fold entry is replaced."""
    out = {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in base.items()}
    for f in range(k):
        res = fold_fn(score_fn(_centred(emb, np.repeat(folds != f, 2))), issame, folds, k)
        for key in _PER_FOLD:
            if key in res:
                out[key][f] = res[key][f]
    out["accuracy"] = float(np.mean(out["fold_accuracy"]))
    if "val_fold" in out:  # insightface: std with ddof=0
        out["accuracy_std"] = float(np.std(out["fold_accuracy"]))
        out["val"], out["val_std"] = float(np.mean(out["val_fold"])), float(np.std(out["val_fold"]))
        out["far"] = float(np.mean(out["far_fold"]))
    else:  # facex: standard error
        out["accuracy_std"] = float(np.std(out["fold_accuracy"], ddof=1) / np.sqrt(k))
    return out


# --------------------------------------------------------------------------------------------
# threshold-free metrics on all pairs


def roc_curve(scores: np.ndarray, issame: np.ndarray) -> dict[str, np.ndarray]:
    """ROC over every distinct score (higher = more alike; "same" when ``score >= threshold``).

    Returns ``fpr``, ``tpr`` (starting at 0, 0) and ``thresholds`` (``+inf`` first).
    """
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], issame[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.shape[0] - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return {
        "fpr": np.r_[0.0, fps / n_neg],
        "tpr": np.r_[0.0, tps / n_pos],
        "thresholds": np.r_[np.inf, s[last]],
    }


def tar_at_far(roc: dict[str, np.ndarray], far: float) -> tuple[float, float]:
    """Highest TAR whose FAR does not exceed ``far``, and its score threshold."""
    ok = np.nonzero(roc["fpr"] <= far)[0]
    i = ok[np.argmax(roc["tpr"][ok])]
    return float(roc["tpr"][i]), float(roc["thresholds"][i])


def equal_error_rate(roc: dict[str, np.ndarray]) -> tuple[float, float]:
    """EER (FAR = FRR), interpolated linearly between the two ROC points around the crossing."""
    fpr, fnr = roc["fpr"], 1.0 - roc["tpr"]
    i = int(np.argmax(fpr >= fnr))  # fpr rises from 0 and fnr falls to 0: a crossing exists
    if i == 0:
        return float(fpr[0]), float(roc["thresholds"][0])
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    eer = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t0, t1 = roc["thresholds"][i - 1], roc["thresholds"][i]
    thr = t1 if not np.isfinite(t0) else t0 + w * (t1 - t0)
    return float(eer), float(thr)


# --------------------------------------------------------------------------------------------
# public entry points


def verify_embeddings(
    emb: np.ndarray,
    issame: np.ndarray,
    protocol: str = "insightface",
    n_folds: int = 10,
    folds: np.ndarray | None = None,
    normalize: bool = True,
    far_targets: tuple[float, ...] = FAR_TARGETS,
    mean_subtract: bool = False,
) -> dict[str, Any]:
    """Verification metrics of 2N features (pair i = rows 2i, 2i+1) and N same/different labels.

    ``normalize``: L2-normalise rows first (arcface_torch does it before ``evaluate``); pass
    False for features that are already normalised to keep them bit-identical.
    Returns accuracy (mean over folds), ``accuracy_std`` (std for insightface, standard error for
    facex), per-fold accuracies and thresholds, ``threshold`` (the mean best threshold, in the
    protocol's unit: squared distance or cosine), ``cos_threshold``, VAL@FAR=1e-3 (insightface),
    ``tar_at_far`` on all pairs, ``eer`` and the all-pairs ROC (``roc_fpr``, ``roc_tpr``).
    ``mean_subtract``: centre on the other folds' mean first (see the module docstring).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol '{protocol}': expected one of {', '.join(PROTOCOLS)}")
    emb, issame = _check(emb, issame)
    fold_ids, k = _fold_ids(issame.shape[0], folds, n_folds)
    raw = emb
    if mean_subtract:
        emb = _centred(emb, np.ones(emb.shape[0], dtype=bool))
    elif normalize:
        emb = l2_normalize(emb)
    out: dict[str, Any] = {
        "protocol": protocol,
        "pairs": int(issame.shape[0]),
        "same": int(issame.sum()),
        "different": int((~issame).sum()),
        "folds": k,
        "mean_subtract": bool(mean_subtract),
    }
    if protocol == "insightface":
        dist = pair_distances(emb)
        out.update(insightface_folds(dist, issame, fold_ids, k))
        if mean_subtract:
            out.update(fold_centred(insightface_folds, pair_distances, raw, issame, fold_ids, k, out))
        out["threshold"] = float(np.mean(out["best_threshold"]))
        out["cos_threshold"] = 1.0 - out["threshold"] / 2.0  # |a-b|^2 = 2 - 2cos for unit rows
        out["dist"] = dist
        scores = -dist
    else:
        scores32 = pair_scores(emb)
        out.update(facex_folds(scores32, issame, fold_ids, k))
        if mean_subtract:
            out.update(fold_centred(facex_folds, pair_scores, raw, issame, fold_ids, k, out))
        out["threshold"] = float(np.mean(out["best_threshold"]))
        out["cos_threshold"] = out["threshold"]
        out["score"] = scores32
        scores = scores32.astype(np.float64)
    roc = roc_curve(scores, issame)
    sign = -1.0 if protocol == "insightface" else 1.0  # thresholds back in the protocol's unit
    # TAR/threshold only where the impostor pairs measure the FAR (None, measurable False elsewhere)
    out["tar_at_far"] = tar_table(roc, far_targets, out["different"], sign)
    out["eer"], eer_thr = equal_error_rate(roc)
    out["eer_threshold"] = sign * eer_thr
    out["roc_fpr"], out["roc_tpr"] = roc["fpr"], roc["tpr"]
    return out


def pipeline_choices(embedder, flip: str | None = None, mean_subtract: bool | None = None) -> dict[str, Any]:
    """Flip fusion and scoring: what the user asked, else what the model's card declares, else the
    defaults (flip ``sum``, no mean subtraction); with where each choice came from."""
    card = getattr(embedder, "card", None)
    declared = getattr(card, "declared", frozenset()) if card is not None else frozenset()
    out: dict[str, Any] = {}
    for key, asked, default in (("flip", flip, "sum"), ("mean_subtract", mean_subtract, False)):
        if asked is not None:
            out[key], out[f"{key}_from"] = asked, "command line"
        elif key in declared:
            out[key], out[f"{key}_from"] = getattr(card, key), "model card"
        else:
            out[key], out[f"{key}_from"] = default, "default"
    return out


def preprocessing_record(embedder) -> dict[str, Any]:
    """What ``verification.json`` records about the model: file, card and how images were fed."""
    meta = embedder.meta
    card = getattr(embedder, "card", None)
    source = getattr(embedder, "source", None) or getattr(embedder, "path", None)
    return {
        "model_path": str(source) if source else meta.name,
        "card": card.to_dict() if card is not None else None,
        "card_origin": getattr(embedder, "card_origin", ""),
        "input_size": list(meta.input_size),
        "template": meta.template,
        "channel_order": meta.channel_order,
        "mean": meta.mean if isinstance(meta.mean, (int, float)) else list(meta.mean),
        "std": meta.std if isinstance(meta.std, (int, float)) else list(meta.std),
    }


def summary_line(result: dict[str, Any]) -> str:
    """One line a user reads: accuracy +- spread, threshold, TAR@FAR and EER."""
    spread = "s.e." if result["protocol"] == "facex" else "std"
    unit = "cos" if result["protocol"] == "facex" else "dist^2"
    tars = ", ".join(f"TAR@FAR={k}: {tar_cell(v)}" for k, v in result["tar_at_far"].items())
    if any(not v.get("measurable", True) for v in result["tar_at_far"].values()):
        tars += f" (n/m: not measurable, {result['different']} impostor pairs need FAR >= " \
                f"{smallest_far(result['different']):.2g})"
    text = (
        f"accuracy {result['accuracy']:.4f} ± {result['accuracy_std']:.4f} ({spread}, "
        f"{result['folds']} folds, {result['pairs']} pairs), threshold {result['threshold']:.4f} "
        f"({unit}), {tars}, EER {result['eer']:.4f}"
    )
    if "val" in result:
        text += f", VAL@FAR=1e-3 {result['val']:.4f} ± {result['val_std']:.4f}"
        train = result["different"] * (result["folds"] - 1) // max(result["folds"], 1)
        if not measurable(1e-3, train):  # kept for parity with insightface's number, but marked
            text += f" (insightface's protocol; n/m by faceforge's rule: {train} training impostor pairs " \
                    f"measure FAR >= {smallest_far(train):.2g})"
    return text


def alignment_warning(result: dict[str, Any]) -> str:
    """A warning when images were not aligned crops (empty when all were, or the model aligned them)."""
    n = result.get("unaligned_images", 0)
    if not n or result.get("self_aligned"):
        return ""
    h, w = result["preprocessing"]["input_size"]
    return (f"WARNING: {n} of {result['images']} images are not aligned face crops (e.g. "
            f"{result['unaligned_example']}; the model takes {h}x{w} {result['preprocessing']['template']} "
            "crops): they were resized whole, which loses much accuracy; align them first, e.g. "
            "'faceforge align SRC DST --fallback center' for already-cropped sets such as LFW")


def coverage_line(result: dict[str, Any]) -> str:
    """Pairs scored vs pairs in the protocol, flagged when the accuracy covers fewer pairs."""
    total, scored = result.get("protocol_pairs", result["pairs"]), result["pairs"]
    if scored == total:
        return f"scored {scored} of {total} pairs in the protocol"
    return (f"WARNING: scored {scored} of {total} pairs in the protocol ({total - scored} dropped: "
            f"{result.get('corrupt_images', 0)} images unreadable or without a face); this accuracy is "
            "not comparable with one over the whole protocol")


_CURVE_KEYS = ("dist", "score", "roc_fpr", "roc_tpr", "tpr", "fpr", "thresholds")


def to_jsonable(result: dict[str, Any], curves: bool = False) -> dict[str, Any]:
    """The result with arrays as lists; long per-pair arrays and curves left out unless asked."""
    out = {}
    for key, value in result.items():
        if key in _CURVE_KEYS and not curves:
            continue
        if isinstance(value, dict):
            value = to_jsonable(value, curves)
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def write_result(result: dict[str, Any], out_dir: str | Path, name: str = "verification") -> Path:
    """Write ``<name>.json`` and ``roc.png`` atomically into ``out_dir``; return the JSON path."""
    from faceforge.atomic import atomic_write_text
    from faceforge.eval.report import plot_roc

    out_dir = Path(out_dir)
    path = out_dir / f"{name}.json"
    atomic_write_text(path, json.dumps(to_jsonable(result), indent=2) + "\n")
    label = result.get("label") or result.get("model", "model")
    plot_roc({label: (result["roc_fpr"], result["roc_tpr"])}, out_dir / "roc.png", title=name)
    return path


def evaluate_pairs(
    embedder,
    pair_source,
    flip: str | None = "sum",
    protocol: str = "insightface",
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    mean_subtract: bool | None = False,
    progress=None,
) -> dict[str, Any]:
    """Embed a pair source (a string such as ``bin:lfw.bin`` or a ``PairSet``) and verify it.

    ``flip`` / ``mean_subtract`` None: the model card's choice (:func:`pipeline_choices`).
    Pairs with a corrupt or missing image are dropped and counted (``dropped_pairs``;
    ``protocol_pairs`` is the protocol's count); the trainer calls this during training with its
    own :class:`~faceforge.embed.base.Embedder`.
    """
    from faceforge.eval.cache import cached_embeddings
    from faceforge.eval.pairs import PairSet, open_pairs

    choices = pipeline_choices(embedder, flip, mean_subtract)
    flip = choices["flip"]
    pairs = pair_source if isinstance(pair_source, PairSet) else open_pairs(str(pair_source), True)
    spec = pair_source if isinstance(pair_source, str) else f"pairset:{pairs.name}:{len(pairs)}"
    emb = cached_embeddings(embedder, pairs, spec, flip, cache_dir, batch_size, workers, progress)
    result = _verify_rows(emb.features, emb.valid, pairs, spec, protocol, choices["mean_subtract"], True)
    result.update({"model": embedder.meta.name, **choices, "preprocessing": preprocessing_record(embedder),
                   "images": len(pairs.images), "unaligned_images": emb.unaligned,
                   "unaligned_example": emb.unaligned_example,
                   "self_aligned": emb.unaligned > 0 and hasattr(embedder, "prepare_photo"),
                   "self_alignment": emb.self_alignment})
    from faceforge.eval.report import model_label

    result["label"] = model_label(embedder)  # what the ROC legend calls it (not the file stem)

    return result


def _verify_rows(features: np.ndarray, valid: np.ndarray, pairs, spec: str, protocol: str,
                 mean_subtract: bool, normalize: bool) -> dict[str, Any]:
    """Verify the pairs whose two images have a feature row; count the others."""
    keep = valid[pairs.pairs].all(axis=1)
    kept = pairs.select(keep)
    missing = int((~valid).sum())
    if len(kept) == 0:
        raise UserError(f"{spec}: no pair has two usable images ({missing} unreadable or without a face)")
    feats = features[kept.pairs.reshape(-1)]
    folds = kept.folds
    if folds is not None and not keep.all():
        # a fold may vanish; renumber the survivors 0..K-1
        folds = np.unique(folds, return_inverse=True)[1]
    result = verify_embeddings(feats, kept.issame, protocol=protocol, folds=folds,
                               mean_subtract=mean_subtract, normalize=normalize)
    result.update({"source": spec, "protocol_pairs": len(pairs), "dropped_pairs": int((~keep).sum()),
                   "corrupt_images": missing, "complete": bool(keep.all())})
    return result


def verify_embedding_file(npz: str | Path, pair_source: str, protocol: str = "insightface",
                          mean_subtract: bool = False) -> dict[str, Any]:
    """Score the output of ``faceforge embed`` (an .npz with ``embeddings`` and ``files``) on a pair
    source: each pair image is matched by resolved path to its first face; images without a row
    (no face, unreadable, not embedded) drop their pairs, counted as in :func:`evaluate_pairs`."""
    from faceforge.eval.pairs import open_pairs

    npz = Path(npz)
    if not npz.is_file():
        raise UserError(f"--embeddings: file not found: {npz}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            feats, files, face = z["embeddings"], z["files"], z["face"]
            flip = str(z["flip"]) if "flip" in z else "unknown"
    except Exception as e:  # truncated zip, bad CRC, missing array, pickled objects
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"--embeddings {npz}: not an .npz written by 'faceforge embed' ({reason})") from None
    rows: dict[str, int] = {}
    for row, (name, k) in enumerate(zip(files, face)):
        if int(k) == 0:
            rows.setdefault(str(Path(str(name)).resolve()), row)
    pairs = open_pairs(pair_source)
    index = np.array([rows.get(str(Path(p).resolve()), -1) if isinstance(p, Path) else -1
                      for p in pairs.images], dtype=np.int64)
    if not (index >= 0).any():
        raise UserError(f"--embeddings {npz}: none of the {len(pairs.images)} images of {pair_source} was "
                        f"embedded (e.g. {pairs.images[0]}); embed the pair source itself: faceforge embed "
                        f"'{pair_source}' --out {npz.name}")
    features = np.zeros((len(pairs.images), feats.shape[1]), dtype=np.float32)
    features[index >= 0] = feats[index[index >= 0]]
    result = _verify_rows(features, index >= 0, pairs, pair_source, protocol, mean_subtract, False)
    result.update({"model": str(npz), "flip": flip, "flip_from": "embeddings file",
                   "mean_subtract_from": "command line" if mean_subtract else "default",
                   "preprocessing": {"embeddings": str(npz)}})
    return result


def run(
    models,
    pairs: str,
    flip: str | None = None,
    protocol: str = "insightface",
    out: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 0,
    mean_subtract: bool | None = None,
    progress=None,
) -> dict[str, Any]:
    """``faceforge eval verify``: load the model(s), verify, write JSON + ROC when ``out`` is set.

    ``flip`` / ``mean_subtract`` None: as the model's card says (flip ``sum`` without a card)."""
    from faceforge.embed.loading import load_embedders

    embedder = load_embedders(models, device)
    cache = Path(out) / "cache" if out else None
    result = evaluate_pairs(embedder, pairs, flip, protocol, batch_size, workers, cache_dir=cache,
                            mean_subtract=mean_subtract, progress=progress)
    if out:
        result["json"] = str(write_result(result, out))
    return result
