"""IJB-B / IJB-C 1:1 template verification, scored the way InsightFace's ``ijb_11.py`` scores it.

The facts followed (InsightFace ``recognition/_evaluation_/ijb/ijb_11.py``; own code):

* every loose crop is warped to the ArcFace 112x112 template with its listed five points;
* a face's feature is the model output of the crop plus that of its mirror (flip "sum", their F2);
  the norm is kept (their ``use_norm_score=True``, N1; ``norm=unit`` normalises first, N0) and the
  feature is multiplied by the detector score (``use_detector_score=True``, D1; ``weight=none``, D0);
* template = sum over its medias of the mean over that media's faces (medias are *not*
  normalised, the line is commented out there), then L2-normalised; a pair's score is the dot
  product of its two template features (float64);
* the ROC is sklearn's ``roc_curve`` (``drop_intermediate=True``: collinear points removed, a
  ``(0, 0)`` point first); TAR at a FAR target is read off the ROC point whose FPR is *closest*
  to the target (``min |fpr - target|`` over the curve reversed, so among equally close points the
  one of higher FPR, i.e. the larger TPR, wins). That point may lie above the target; the
  conservative "largest TAR with FAR <= target" is reported beside it as ``tar_at_far_le``.

Faces whose image cannot be read are left out of their media (InsightFace would crash); a template
with no readable face gets a zero feature (score 0 with everything) and is counted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.embed.base import l2_normalize
from faceforge.errors import UserError
from faceforge.eval.ijb_data import KINDS, IJBSet, open_ijb
from faceforge.eval.verification import roc_curve, tar_at_far

FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
# pairs per step: 2 x 64 MiB of gathered float64 rows; ijb_11.py's 100,000 was 3x slower here
SCORE_CHUNK = 16_384


# --------------------------------------------------------------------------------------------
# features -> templates -> scores


def face_features(
    raw: np.ndarray, det_scores: np.ndarray, weight: str = "detector", norm: str = "keep"
) -> np.ndarray:
    """Per-face features before pooling: optionally unit-normalised, optionally scaled by the
    detector score. float32 like ``ijb_11.py``'s (469,375 x 512 is 0.9 GiB); pooling sums in
    float64."""
    if weight not in ("detector", "none") or norm not in ("keep", "unit"):
        raise UserError(f"weight={weight}, norm={norm}: expected weight detector|none, norm keep|unit")
    feats = np.asarray(raw, dtype=np.float32)
    if norm == "unit":
        feats = l2_normalize(feats)
    if weight == "detector":
        feats = feats * np.asarray(det_scores, dtype=np.float32)[:, None]
    return feats


def pool_templates(
    feats: np.ndarray, templates: np.ndarray, medias: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted template ids, [T, D] L2-normalised template features): the sum over medias of the
    mean of each media's faces. Rows with ``valid`` False are left out."""
    templates, medias = np.asarray(templates, np.int64), np.asarray(medias, np.int64)
    tids = np.unique(templates)
    out = np.zeros((len(tids), feats.shape[1]), dtype=np.float64)
    keep = np.ones(len(templates), bool) if valid is None else np.asarray(valid, bool)
    if keep.any():
        rows = np.nonzero(keep)[0]
        rows = rows[np.lexsort((medias[rows], templates[rows]))]
        t, m, f = templates[rows], medias[rows], np.asarray(feats)[rows]  # one gathered copy
        starts = np.nonzero(np.r_[True, (t[1:] != t[:-1]) | (m[1:] != m[:-1])])[0]
        counts = np.diff(np.r_[starts, len(t)])
        media_mean = np.add.reduceat(f, starts, axis=0, dtype=np.float64) / counts[:, None]
        owner = t[starts]
        t_starts = np.nonzero(np.r_[True, owner[1:] != owner[:-1]])[0]
        out[np.searchsorted(tids, owner[t_starts])] = np.add.reduceat(media_mean, t_starts, axis=0)
    return tids, l2_normalize(out)


def score_pairs(
    tids: np.ndarray, feats: np.ndarray, pairs: np.ndarray, chunk: int = SCORE_CHUNK
) -> np.ndarray:
    """Cosine score (float64) of each template pair [P, 2] (ids looked up in sorted ``tids``)."""
    pairs = np.asarray(pairs, np.int64)
    pos = np.searchsorted(tids, pairs)
    scores = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        a, b = pos[s : s + chunk, 0], pos[s : s + chunk, 1]
        scores[s : s + chunk] = np.einsum("ij,ij->i", feats[a], feats[b])
    return scores


# --------------------------------------------------------------------------------------------
# ROC and TAR@FAR as ijb_11.py reads them


def sklearn_roc(scores: np.ndarray, labels: np.ndarray, full: dict | None = None) -> dict[str, np.ndarray]:
    """sklearn ``roc_curve(labels, scores)`` with its default ``drop_intermediate=True``:
    ``fpr``, ``tpr``, ``thresholds`` (``inf`` first), ``auc`` (trapezoid). ``full``: the
    :func:`~faceforge.eval.verification.roc_curve` of the same scores, when already computed."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise UserError("pairs: need both genuine and impostor pairs for a ROC")
    full = full or roc_curve(scores, labels)  # every distinct score, (0, 0) first
    # back to integer counts (exact: rate = count / n) so collinearity is tested as sklearn does
    fps = np.rint(full["fpr"][1:] * n_neg).astype(np.int64)
    tps = np.rint(full["tpr"][1:] * n_pos).astype(np.int64)
    thr = full["thresholds"][1:]
    if len(fps) > 2:
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return {"fpr": fpr, "tpr": tpr, "thresholds": np.r_[np.inf, thr], "auc": float(trapezoid(tpr, fpr))}


def insightface_tar(roc: dict[str, np.ndarray], far: float) -> dict[str, float]:
    """The ROC point ``ijb_11.py`` reports for ``far``: closest FPR, ties to the reversed curve's
    first (higher FPR, larger TPR). Returns its ``tar``, ``far`` (the point's own FPR) and score
    ``threshold``."""
    fpr, tpr, thr = roc["fpr"][::-1], roc["tpr"][::-1], roc["thresholds"][::-1]
    i = int(np.argmin(np.abs(fpr - far)))
    return {"tar": float(tpr[i]), "far": float(fpr[i]), "threshold": float(thr[i])}


def tar_table(scores: np.ndarray, labels: np.ndarray, far_targets=FAR_TARGETS) -> dict[str, Any]:
    """TAR at each FAR target (InsightFace rule and the <= rule), AUC and the ROC."""
    full = roc_curve(scores, labels)  # one sort of all the pairs serves both rules
    roc = sklearn_roc(scores, labels, full)
    return {
        "tar_at_far": {f"{f:g}": insightface_tar(roc, f) for f in far_targets},
        "tar_at_far_le": {f"{f:g}": tar_at_far(full, f)[0] for f in far_targets},
        "auc": roc["auc"],
        "roc_fpr": roc["fpr"],
        "roc_tpr": roc["tpr"],
        "thresholds": roc["thresholds"],  # of the ROC points (a curve key: left out of JSON)
    }


# --------------------------------------------------------------------------------------------
# the protocol over an embedder


def template_bank(
    embedder,
    ijb: IJBSet,
    flip: str = "sum",
    weight: str | None = None,
    norm: str | None = None,
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Embed every face (cached), pool into templates; the shared first half of 1:1 and 1:N.
    ``progress``: a progress bar on stderr while embedding."""
    from faceforge.eval.cache import cached_embeddings
    from faceforge.io.progress import Progress

    bar = Progress(len(ijb), progress, label="embed")

    weight = weight or ijb.options.get("weight", "detector")
    norm = norm or ijb.options.get("norm", "keep")
    t0 = time.perf_counter()
    emb = cached_embeddings(
        embedder,
        ijb,
        ijb.spec,
        flip,
        cache_dir,
        batch_size,
        workers,
        lambda done, _: bar.step(done - bar.done),
    )
    t1 = time.perf_counter()
    feats = face_features(emb.features, ijb.scores, weight, norm)
    tids, tf = pool_templates(feats, ijb.templates, ijb.medias, emb.valid)
    t2 = time.perf_counter()
    empty = int((np.linalg.norm(tf, axis=1) == 0).sum())
    return {
        "tids": tids,
        "features": tf,
        "weight": weight,
        "norm": norm,
        "corrupt_images": emb.num_corrupt,
        "corrupt": emb.corrupt[:20],
        "empty_templates": empty,
        "seconds": {"embed": t1 - t0, "pool": t2 - t1},
    }


def evaluate_ijb(
    embedder,
    source: str | IJBSet,
    flip: str = "sum",
    weight: str | None = None,
    norm: str | None = None,
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    bank: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """IJB 1:1 verification of ``embedder`` on ``source`` (``ijbc:ROOT`` or an :class:`IJBSet`)."""
    ijb = source if isinstance(source, IJBSet) else open_ijb(source)
    if ijb.pairs is None:
        raise UserError(f"{ijb.root}: the 1:1 pair list was not read")
    bank = bank or template_bank(embedder, ijb, flip, weight, norm, batch_size, workers, cache_dir)
    t0 = time.perf_counter()
    scores = score_pairs(bank["tids"], bank["features"], ijb.pairs)
    t1 = time.perf_counter()
    out = tar_table(scores, ijb.labels)
    out.update(
        {
            "benchmark": ijb.kind,
            "source": f"{ijb.kind}:{ijb.root}",
            "model": embedder.meta.name,
            "flip": flip,
            "weight": bank["weight"],
            "norm": bank["norm"],
            "faces": len(ijb),
            "templates": len(bank["tids"]),
            "pairs": len(scores),
            "genuine": int(ijb.labels.sum()),
            "impostor": int((~ijb.labels).sum()),
            "corrupt_images": bank["corrupt_images"],
            "empty_templates": bank["empty_templates"],
            "score": scores,
            "seconds": {**bank["seconds"], "score": t1 - t0},
        }
    )
    return out


def table_text(result: dict[str, Any]) -> str:
    """The TAR@FAR table a user reads (InsightFace's FAR columns, TAR in %)."""
    keys = list(result["tar_at_far"])
    head = (
        f"{result['benchmark'].upper()} 1:1 ({result['faces']} faces, {result['templates']} templates, "
        f"{result['pairs']} pairs; flip {result['flip']}, weight {result['weight']}, norm {result['norm']})"
    )
    lines = [
        head,
        "FAR        " + "".join(f"{k:>9}" for k in keys) + "      AUC",
        "TAR %      "
        + "".join(f"{100 * result['tar_at_far'][k]['tar']:9.2f}" for k in keys)
        + f"{100 * result['auc']:9.2f}",
        "TAR % (<=) " + "".join(f"{100 * result['tar_at_far_le'][k]:9.2f}" for k in keys),
    ]
    if result["corrupt_images"] or result["empty_templates"]:
        lines.append(
            f"{result['corrupt_images']} unreadable faces left out; "
            f"{result['empty_templates']} templates without a face"
        )
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out_dir: str | Path, name: str = "ijb") -> Path:
    """``<name>.json`` (no per-pair arrays), ``<name>_roc.npz`` (the ROC) and ``<name>_roc.png``."""
    import io

    from faceforge.atomic import atomic_write_bytes, atomic_write_text
    from faceforge.eval.report import plot_roc
    from faceforge.eval.verification import to_jsonable

    out_dir = Path(out_dir)
    path = out_dir / f"{name}.json"
    atomic_write_text(path, json.dumps(to_jsonable(result), indent=2) + "\n")
    buf = io.BytesIO()
    np.savez(buf, fpr=result["roc_fpr"], tpr=result["roc_tpr"], thresholds=result["thresholds"])
    atomic_write_bytes(out_dir / f"{name}_roc.npz", buf.getvalue())
    plot_roc(
        {result["model"]: (result["roc_fpr"], result["roc_tpr"])}, out_dir / f"{name}_roc.png", title=name
    )
    return path


def is_ijb_source(spec: str) -> bool:
    """Whether a suite's verification entry names an IJB tree (``ijbb:`` / ``ijbc:``)."""
    return str(spec).partition(":")[0] in KINDS


def report_section(results: dict[str, dict[str, Any]], bench: str, out_dir: Path) -> tuple[str, str]:
    """The suite report's section for one IJB row: TAR@FAR columns per model, and the ROC plot."""
    from faceforge.eval import report

    curves = {m: (r[bench]["roc_fpr"], r[bench]["roc_tpr"]) for m, r in results.items()}
    report.plot_roc(curves, out_dir / f"roc_{bench}.png", title=f"ROC {bench}")
    detail = {
        m: {
            **{f"TAR@FAR={k}": f"{100 * v['tar']:.2f}" for k, v in r[bench]["tar_at_far"].items()},
            "AUC": f"{100 * r[bench]['auc']:.2f}",
            "unreadable faces": str(r[bench]["corrupt_images"]),
        }
        for m, r in results.items()
    }
    cols = list(next(iter(detail.values())).keys())
    first = next(iter(results.values()))[bench]
    note = (
        f"{first['faces']} faces, {first['templates']} templates, {first['pairs']} pairs; "
        "TAR % read off the ROC the way InsightFace's ijb_11.py does (closest FPR); "
        f"weight {first['weight']}, norm {first['norm']}."
    )
    return f"IJB: {bench}", note + "\n\n" + report.markdown_table(
        detail, cols
    ) + f"\n\n![ROC](roc_{bench}.png)"


def run(
    models,
    data: str,
    flip: str = "sum",
    weight: str | None = None,
    norm: str | None = None,
    identification: str | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """``faceforge eval ijb``: 1:1, and with ``identification`` (``insightface`` or ``open_set``)
    the 1:N protocol, of one model (several are concatenated)."""
    from faceforge.embed.loading import load_embedders

    embedder = load_embedders(models, device)
    ijb = open_ijb(data)
    cache = cache_dir or (Path(out) / "cache" if out else None)
    bank = template_bank(embedder, ijb, flip, weight, norm, batch_size, workers, cache, progress)
    result = evaluate_ijb(embedder, ijb, flip, bank=bank)
    if identification:
        from faceforge.eval.ijb_1n import identify_ijb

        result["identification"] = identify_ijb(ijb, bank, identification)
    if out:
        result["json"] = str(write_outputs(result, out, ijb.kind))
    return result
