"""1:N identification: gallery/probe rank-k and CMC, MegaFace-style distractors, IJB-style templates.

All scores are cosine similarities of L2-normalised features.

* **Closed-set rank-k / CMC.** An identity's score is the best score over its gallery images; a
  probe's rank is 1 + the number of identities scoring strictly higher than its own (a tie goes to
  the true identity). Probes whose identity has no gallery image are counted as ``unknown`` and
  left out of the rates.
* **Open-set identification** (probes of people absent from the gallery, "unknown"): a probe is
  accepted when its best gallery score reaches a threshold. The false-alarm rate (FAR, "FPIR") is
  the share of unknown probes accepted; the detection and identification rate DIR at a FAR is the
  share of known probes whose true identity ranks first *and* is accepted at the threshold that
  keeps FAR at or below it (Phillips et al., FRVT's TPIR/FPIR). With U unknown probes the smallest
  FAR measurable is 1/U: below it the threshold simply sits above every unknown score, and the
  result says ``resolved: false``.
* **MegaFace-style rank-1** (FaceScrub protocol): every ordered pair (a, b) of images of one probe
  identity is a trial with ``a`` as probe and ``b`` as the only mate in a gallery of ``n``
  distractors; it succeeds when ``score(a, b)`` beats the best distractor among the first ``n``.
  Distractors stream through FAISS ``IndexFlatIP`` in chunks, so a million 512-d vectors are one
  pass; the running maximum is recorded at every requested size.
* **IJB-B/C-style 1:1 templates**: a template's feature is the (optionally detector-score
  weighted) mean of its normalised image features, normalised again; TAR at FAR over the pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.embed.base import l2_normalize
from faceforge.errors import UserError
from faceforge.eval.verification import roc_curve, tar_at_far

RANKS = (1, 3, 5, 10)
DISTRACTOR_SIZES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)


# --------------------------------------------------------------------------------------------
# closed-set gallery / probe


def identity_scores(
    probe: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """[P, I] best cosine score of each probe against each gallery identity, and the identities."""
    gallery_labels = np.asarray(gallery_labels)
    ids, inverse = np.unique(gallery_labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.r_[0, np.nonzero(np.diff(inverse[order]))[0] + 1]
    sims = l2_normalize(probe).astype(np.float32) @ l2_normalize(gallery).astype(np.float32).T
    return np.maximum.reduceat(sims[:, order], starts, axis=1), ids


def identify(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probe: np.ndarray,
    probe_labels: np.ndarray,
    ranks: Sequence[int] = RANKS,
    max_rank: int | None = None,
) -> dict[str, Any]:
    """Rank-k identification rates and the CMC curve (rates at rank 1..max_rank)."""
    if len(gallery) == 0 or len(probe) == 0:
        raise UserError(
            f"identification: 0 usable images in the {'gallery' if len(gallery) == 0 else 'probe set'} "
            "(every image there is missing or cannot be decoded)"
        )
    scores, ids = identity_scores(probe, gallery, gallery_labels)
    probe_labels = np.asarray(probe_labels)
    col = np.searchsorted(ids, probe_labels)
    col = np.minimum(col, len(ids) - 1)
    known = ids[col] == probe_labels
    true = scores[np.nonzero(known)[0], col[known]]
    rank = 1 + (scores[known] > true[:, None]).sum(axis=1)
    if not known.any():  # a rate over 0 probes is not a number to report
        raise UserError(
            f"identification: 0 usable probes: none of the {len(probe_labels)} probe images belongs to a "
            "gallery identity (identities are matched by folder name)"
        )
    max_rank = int(max_rank or min(len(ids), max(max(ranks), 20)))
    n = max(int(known.sum()), 1)
    cmc = np.array([(rank <= k).sum() / n for k in range(1, max_rank + 1)])
    out = {f"rank{k}": float((rank <= k).sum() / n) for k in ranks}
    out.update(
        {
            "cmc": cmc,
            "ranks": rank,
            "probes": int(known.sum()),
            "unknown_probes": int((~known).sum()),
            "gallery_identities": int(len(ids)),
        }
    )
    return out


OPEN_SET_FARS = (1e-3, 1e-2, 1e-1)


def open_set_identify(gallery: np.ndarray, gallery_labels: np.ndarray, probe: np.ndarray,
                      probe_labels: np.ndarray, fars: Sequence[float] = OPEN_SET_FARS,
                      threshold: float | None = None) -> dict[str, Any]:
    """Open-set rates (see the module docstring): ``dir`` {far: DIR}, ``thresholds`` {far: t},
    ``resolved`` {far: far >= 1/U}, the DIR/FAR curve over every threshold, and, given a score
    ``threshold`` (a calibrated one), the share of unknown probes it rejects and of known probes it
    identifies correctly (``at_threshold``)."""
    scores, ids = identity_scores(probe, gallery, gallery_labels)
    probe_labels = np.asarray(probe_labels)
    col = np.minimum(np.searchsorted(ids, probe_labels), len(ids) - 1)
    known = ids[col] == probe_labels
    if known.all() or not known.any():
        raise UserError(f"open-set identification: needs probes of both gallery identities and people absent "
                        f"from the gallery; got {int(known.sum())} known and {int((~known).sum())} unknown")
    best = scores.max(axis=1)
    true = scores[np.nonzero(known)[0], col[known]]
    first = (scores[known] > true[:, None]).sum(axis=1) == 0
    unknown_best = np.sort(best[~known])[::-1]
    n_unknown = len(unknown_best)

    def dir_at(t: float) -> float:
        return float(np.mean(first & (true >= t)))

    out: dict[str, Any] = {"dir": {}, "thresholds": {}, "resolved": {}, "known_probes": int(known.sum()),
                           "unknown_probes": n_unknown, "far_resolution": 1.0 / n_unknown}
    for far in fars:
        k = int(np.floor(far * n_unknown + 1e-9))  # at most k unknown probes may be accepted
        t = float(np.nextafter(unknown_best[k], np.inf)) if k < n_unknown else float(unknown_best[-1])
        out["dir"][far], out["thresholds"][far] = dir_at(t), t
        out["resolved"][far] = bool(far * n_unknown >= 1)
    grid = np.r_[np.nextafter(unknown_best[0], np.inf), unknown_best[:-1], -np.inf]  # FAR 0 .. 1
    out["curve"] = {"far": np.arange(len(grid)) / n_unknown,
                    "dir": np.array([dir_at(t) for t in grid])}
    if threshold is not None:
        out["at_threshold"] = {"threshold": float(threshold),
                               "unknown_rejected": float(np.mean(best[~known] < threshold)),
                               "known_identified": dir_at(float(threshold)),
                               "known_rejected": float(np.mean(true < threshold))}
    return out


def open_set_line(res: dict[str, Any]) -> str:
    """One line: DIR at each FAR (marked when the FAR is below the set's resolution)."""
    rates = ", ".join(f"DIR@FAR={far:g} {100 * rate:.2f}%" + ("" if res["resolved"][far] else " (unresolved)")
                      for far, rate in res["dir"].items())
    line = f"open set: {rates} ({res['known_probes']} known, {res['unknown_probes']} unknown probes)"
    if "at_threshold" in res:
        a = res["at_threshold"]
        line += (f"; at threshold {a['threshold']:.4f}: {100 * a['unknown_rejected']:.1f}% of unknown "
                 f"rejected, {100 * a['known_identified']:.1f}% of known identified")
    return line


# --------------------------------------------------------------------------------------------
# MegaFace-style distractors


def random_distractors(n: int, dim: int = 512, seed: int = 0, chunk: int = 100_000) -> Iterator[np.ndarray]:
    """``n`` random unit vectors (float32) in chunks, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def _faiss():
    try:
        import faiss
    except ImportError:
        raise UserError(
            "MegaFace-style search needs FAISS: pip install faceforge[eval] (faiss-cpu)"
        ) from None
    return faiss


def best_distractor_scores(
    probe: np.ndarray, distractors: Iterable[np.ndarray], sizes: Sequence[int], use_faiss: bool = True
) -> np.ndarray:
    """[P, len(sizes)]: each probe's best inner product among the first ``sizes[j]`` distractors.

    ``distractors`` is an iterable of [n_i, D] chunks (already normalised). Sizes beyond the
    number of distractors get the value over all of them. FAISS ``IndexFlatIP`` is exact; the
    numpy path (``use_faiss=False``) is the reference the tests compare with.
    """
    probe = np.ascontiguousarray(probe, dtype=np.float32)
    sizes = sorted(int(s) for s in sizes)
    best = np.full(probe.shape[0], -np.inf, dtype=np.float32)
    out = np.full((probe.shape[0], len(sizes)), -np.inf, dtype=np.float32)
    seen, j = 0, 0
    faiss = _faiss() if use_faiss else None
    for chunk in distractors:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != probe.shape[1]:
            raise UserError(f"distractors: expected [n, {probe.shape[1]}] features, got {chunk.shape}")
        pos = 0
        while pos < chunk.shape[0] and j < len(sizes):
            take = min(chunk.shape[0] - pos, sizes[j] - seen)  # never straddle a size boundary
            seg = chunk[pos : pos + take]
            if faiss is not None:
                index = faiss.IndexFlatIP(seg.shape[1])
                index.add(seg)
                scores, _ = index.search(probe, 1)
                top = scores[:, 0]
            else:
                top = (probe @ seg.T).max(axis=1)
            np.maximum(best, top, out=best)
            pos += take
            seen += take
            while j < len(sizes) and seen == sizes[j]:
                out[:, j] = best
                j += 1
        if j == len(sizes):
            break
    out[:, j:] = best[:, None]  # fewer distractors than asked: all of them
    return out


def megaface_rank1(
    probe: np.ndarray,
    probe_labels: np.ndarray,
    distractors: Iterable[np.ndarray],
    sizes: Sequence[int] = DISTRACTOR_SIZES,
    use_faiss: bool = True,
) -> dict[str, Any]:
    """Rank-1 identification rate as distractors grow (see the module docstring)."""
    probe = l2_normalize(np.asarray(probe, dtype=np.float32))
    labels = np.asarray(probe_labels)
    sizes = sorted(int(s) for s in sizes)
    if not sizes or sizes[0] < 1:
        raise UserError(f"megaface: distractor sizes must be >= 1, got {sizes}")
    available = [0]

    def counted(chunks):
        for chunk in chunks:
            available[0] += len(chunk)
            yield chunk

    top = best_distractor_scores(probe, counted(distractors), sizes, use_faiss)
    if available[0] < sizes[-1]:  # a size past the end would quietly repeat the smaller one
        raise UserError(
            f"megaface: sizes {sizes} ask for {sizes[-1]} distractors but only {available[0]} are "
            "available; use smaller --sizes or more distractors"
        )
    hits = np.zeros(len(sizes), dtype=np.int64)
    trials = 0
    for lab in np.unique(labels):
        idx = np.nonzero(labels == lab)[0]
        if len(idx) < 2:
            continue
        s = probe[idx] @ probe[idx].T
        off = ~np.eye(len(idx), dtype=bool)
        trials += int(off.sum())
        for j in range(len(sizes)):
            hits[j] += int(((s > top[idx, j][:, None]) & off).sum())
    if trials == 0:
        raise UserError("megaface: the probe set needs identities with at least two images")
    return {"sizes": sizes, "rank1": (hits / trials).tolist(), "trials": trials}


# --------------------------------------------------------------------------------------------
# IJB-B/C-style template verification


def template_features(
    features: np.ndarray, template_ids: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(template ids, [T, D] normalised template features): the weighted mean of normalised
    image features (weights: detector scores, default 1)."""
    feats = l2_normalize(np.asarray(features, dtype=np.float32))
    tids, inverse = np.unique(np.asarray(template_ids), return_inverse=True)
    w = np.ones(len(feats), dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
    sums = np.zeros((len(tids), feats.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, feats * w[:, None])
    return tids, l2_normalize(sums).astype(np.float32)


def template_verification(
    features: np.ndarray,
    template_ids: np.ndarray,
    pair_templates: np.ndarray,
    pair_labels: np.ndarray,
    weights: np.ndarray | None = None,
    far_targets: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
) -> dict[str, Any]:
    """TAR at FAR of template pairs ``pair_templates`` [N, 2] (template ids) with 0/1 labels."""
    tids, tf = template_features(features, template_ids, weights)
    pair_templates = np.asarray(pair_templates)
    pos = np.searchsorted(tids, pair_templates)
    pos = np.minimum(pos, len(tids) - 1)
    if not np.all(tids[pos] == pair_templates):
        bad = pair_templates[tids[pos] != pair_templates][0]
        raise UserError(f"template pairs: template {bad} has no image")
    scores = np.einsum("ij,ij->i", tf[pos[:, 0]], tf[pos[:, 1]]).astype(np.float64)
    roc = roc_curve(scores, np.asarray(pair_labels).astype(bool))
    out = {"tar_at_far": {f"{f:g}": tar_at_far(roc, f)[0] for f in far_targets}, "pairs": len(scores)}
    out.update({"roc_fpr": roc["fpr"], "roc_tpr": roc["tpr"], "scores": scores})
    return out


# --------------------------------------------------------------------------------------------
# folders


def open_identity_folder(root: str | Path):
    """A ``folder:`` dataset (``ROOT/<identity>/<image>``) with identity names."""
    from faceforge.data.readers.folder import FolderDataset

    ds = FolderDataset(root)
    if len(ds) == 0:
        raise UserError(f"{root}: no images found (expected ROOT/<identity>/<image>)")
    return ds


def named_labels(names_a: list[str], labels_a: np.ndarray, names_b: list[str], labels_b: np.ndarray):
    """Map two folder datasets' labels into one space by identity *name*."""
    space = {n: i for i, n in enumerate(sorted(set(names_a) | set(names_b)))}
    map_a = np.array([space[n] for n in names_a], dtype=np.int64)
    map_b = np.array([space[n] for n in names_b], dtype=np.int64)
    return map_a[labels_a], map_b[labels_b]


def identify_folders(
    embedder,
    gallery: str | Path,
    probe: str | Path,
    flip: str = "sum",
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    probe_images=None,
    probe_spec: str | None = None,
    progress=None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Rank-k and CMC of a probe folder against a gallery folder (identities matched by name), and
    the open-set rates (``res["open_set"]``, :func:`open_set_identify`; ``threshold`` a calibrated
    score) when some probe identities are absent from the gallery.

    ``probe_images`` replaces the probe images (same order and labels; the masked benchmark
    passes masked copies) and ``probe_spec`` names them in the cache. ``progress(label)`` gives
    the ``fn(done, total)`` called while each set ("gallery", "probe") is embedded.
    """
    from faceforge.eval.cache import cached_embeddings

    g_ds, p_ds = open_identity_folder(gallery), open_identity_folder(probe)
    g = cached_embeddings(
        embedder, g_ds, f"folder:{Path(gallery).resolve()}", flip, cache_dir, batch_size, workers,
        _bar(progress, "gallery"),
    )
    p_src = p_ds if probe_images is None else probe_images
    p_spec = probe_spec or f"folder:{Path(probe).resolve()}"
    p = cached_embeddings(
        embedder, p_src, p_spec, flip, cache_dir, batch_size, workers, _bar(progress, "probe")
    )
    g_lab, p_lab = named_labels(g_ds.names, g_ds.labels, p_ds.names, p_ds.labels)
    res = identify(g.features[g.valid], g_lab[g.valid], p.features[p.valid], p_lab[p.valid])
    if res["unknown_probes"]:
        res["open_set"] = open_set_identify(g.features[g.valid], g_lab[g.valid], p.features[p.valid],
                                            p_lab[p.valid], threshold=threshold)
    res.update({"model": embedder.meta.name, "corrupt_images": g.num_corrupt + p.num_corrupt})
    return res


def _bar(progress, label: str):
    return progress(label) if progress else None


def parse_distractors(spec: str) -> tuple[str, dict[str, str]]:
    """``random:N[,seed=S]`` or a folder path (``folder:DIR`` or ``DIR``)."""
    if spec.startswith("random:"):
        body, *opts = spec[len("random:") :].split(",")
        try:
            n = int(float(body))
            extra = dict(o.split("=", 1) for o in opts)
            seed = int(extra.pop("seed", 0))
        except ValueError:
            raise UserError(f"distractors '{spec}': expected random:N[,seed=S]") from None
        if extra:
            raise UserError(f"distractors '{spec}': unknown option(s) {', '.join(extra)}; valid: seed")
        return "random", {"n": str(n), "seed": str(seed)}
    return "folder", {"path": spec.removeprefix("folder:")}


def megaface_folders(
    embedder,
    probe: str | Path,
    distractors: str,
    sizes: Sequence[int] = DISTRACTOR_SIZES,
    flip: str = "sum",
    batch_size: int = 64,
    workers: int = 0,
    cache_dir: str | Path | None = None,
    progress=None,
) -> dict[str, Any]:
    """MegaFace-style rank-1 of a probe identity folder against distractors (a folder or random);
    ``progress`` as in :func:`identify_folders` ("probe", "distractors")."""
    from faceforge.eval.cache import cached_embeddings

    p_ds = open_identity_folder(probe)
    p = cached_embeddings(
        embedder, p_ds, f"folder:{Path(probe).resolve()}", flip, cache_dir, batch_size, workers,
        _bar(progress, "probe"),
    )
    feats = p.features[p.valid]
    kind, opts = parse_distractors(distractors)
    if kind == "random":
        stream: Iterable[np.ndarray] = random_distractors(int(opts["n"]), feats.shape[1], int(opts["seed"]))
    else:
        d_ds = open_identity_folder(opts["path"])
        d = cached_embeddings(
            embedder, d_ds, f"folder:{Path(opts['path']).resolve()}", flip, cache_dir, batch_size, workers,
            _bar(progress, "distractors"),
        )
        stream = [l2_normalize(d.features[d.valid])]
    res = megaface_rank1(feats, p_ds.labels[p.valid], stream, sizes)
    res.update({"model": embedder.meta.name, "distractors": distractors})
    return res
