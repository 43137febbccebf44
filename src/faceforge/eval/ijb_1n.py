"""IJB-B / IJB-C 1:N identification over the templates of :func:`faceforge.eval.ijb.template_bank`.

Two readings of the same files (``meta/ijbc_1N_gallery_G1.csv``, ``..._G2.csv``,
``..._1N_probe_mixed.csv``; IJB-B ``S1``/``S2``):

* ``insightface`` (InsightFace ``recognition/_evaluation_/ijb/ijb_1n.py``, own code): one gallery,
  G1 and G2 together, so every probe has exactly one mated gallery template (an error otherwise).
  Rank-k: the mate among the k best-scoring gallery templates. TPIR at FPIR f: the threshold is
  the ``ceil(P * f)``-th largest of all P x (G - 1) non-mated probe-gallery scores, and TPIR is the
  fraction of probes whose mate scores strictly above it.
* ``open_set`` (the IJB-C/NIST open-set definition): G1 and G2 are separate galleries; for each,
  probes of a subject absent from it are non-mated searches. FPIR(t) = non-mated searches whose
  best score is > t; TPIR(t) = mated searches whose mate is rank 1 and scores > t; t is the
  smallest threshold with FPIR <= f. Rank-k over the mated searches; both galleries and their mean.

Ranks count gallery templates scoring strictly above the mate (a tie goes to the mate).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from faceforge.errors import UserError
from faceforge.eval.ijb_data import GALLERIES, IJBSet, read_template_subjects

FPIR_TARGETS = (0.01, 0.1)
RANKS = (1, 5, 10)
PROTOCOLS_1N = ("insightface", "open_set")


def _features(bank: dict[str, Any], tids: np.ndarray) -> np.ndarray:
    return bank["features"][np.searchsorted(bank["tids"], tids)]


def _mate_columns(probe_subjects: np.ndarray, gallery_subjects: np.ndarray, where: str) -> np.ndarray:
    """Gallery column of each probe's subject, -1 when absent; a subject twice is an error."""
    subj, counts = np.unique(gallery_subjects, return_counts=True)
    if (counts > 1).any():
        raise UserError(
            f"{where}: subject {subj[np.argmax(counts > 1)]} has {counts.max()} gallery templates"
        )
    order = np.argsort(gallery_subjects)
    pos = np.minimum(np.searchsorted(gallery_subjects[order], probe_subjects), len(order) - 1)
    found = gallery_subjects[order][pos] == probe_subjects
    return np.where(found, order[pos], -1)


def _ranks(sims: np.ndarray, mate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1-based) and score of each probe's mate (rows with ``mate >= 0``)."""
    rows = np.arange(len(mate))
    mate_score = sims[rows, mate]
    return 1 + (sims > mate_score[:, None]).sum(axis=1), mate_score


def insightface_1n(
    probe: np.ndarray,
    probe_subjects: np.ndarray,
    gallery: np.ndarray,
    gallery_subjects: np.ndarray,
    fpir_targets=FPIR_TARGETS,
    where: str = "gallery",
) -> dict[str, Any]:
    """``ijb_1n.py``'s ``evaluation``: closed-set ranks and its TPIR@FPIR (module docstring)."""
    mate = _mate_columns(probe_subjects, gallery_subjects, where)
    if (mate < 0).any():
        raise UserError(
            f"{where}: probe subject {probe_subjects[np.argmax(mate < 0)]} has no gallery template"
        )
    sims = probe @ gallery.T
    rank, pos = _ranks(sims, mate)
    p = len(probe)
    out: dict[str, Any] = {f"rank{k}": float((rank <= k).mean()) for k in RANKS}
    sims[np.arange(p), mate] = -np.inf  # in place (19,593 x 3,531 for IJB-C): non-mated scores only
    neg = sims.ravel()
    n_neg = neg.size - p
    out["tpir_at_fpir"] = {}
    for f in fpir_targets:
        k = min(max(math.ceil(p * f), 1), n_neg)
        th = float(np.partition(neg, neg.size - k)[neg.size - k])  # the k-th largest; -inf sit lowest
        out["tpir_at_fpir"][f"{f:g}"] = {"tpir": float((pos > th).mean()), "threshold": th}
    out.update({"probes": p, "gallery_templates": len(gallery)})
    return out


def open_set_1n(
    probe: np.ndarray,
    probe_subjects: np.ndarray,
    gallery: np.ndarray,
    gallery_subjects: np.ndarray,
    fpir_targets=FPIR_TARGETS,
    where: str = "gallery",
) -> dict[str, Any]:
    """Open-set search of one gallery (module docstring)."""
    mate = _mate_columns(probe_subjects, gallery_subjects, where)
    mated = mate >= 0
    if not mated.any() or mated.all():
        raise UserError(f"{where}: open-set search needs both mated and non-mated probes")
    sims = probe @ gallery.T
    rank, pos = _ranks(sims[mated], mate[mated])
    top_nm = np.sort(sims[~mated].max(axis=1))[::-1]
    out: dict[str, Any] = {f"rank{k}": float((rank <= k).mean()) for k in RANKS}
    out["tpir_at_fpir"] = {}
    for f in fpir_targets:
        k = int(math.floor(f * len(top_nm)))  # at most k non-mated searches may score above t
        th = float(top_nm[k]) if k < len(top_nm) else -np.inf
        hit = (rank == 1) & (pos > th)
        out["tpir_at_fpir"][f"{f:g}"] = {
            "tpir": float(hit.mean()),
            "threshold": th,
            "fpir": float((top_nm > th).mean()),
        }
    out.update(
        {"mated": int(mated.sum()), "non_mated": int((~mated).sum()), "gallery_templates": len(gallery)}
    )
    return out


def identify_ijb(ijb: IJBSet, bank: dict[str, Any], protocol: str = "insightface") -> dict[str, Any]:
    """1:N identification of the probe_mixed templates against the galleries."""
    if protocol not in PROTOCOLS_1N:
        raise UserError(f"1:N protocol '{protocol}': expected one of {', '.join(PROTOCOLS_1N)}")
    g_names = GALLERIES[ijb.kind]
    galleries = [read_template_subjects(ijb, f"gallery_{g}") for g in g_names]
    p_tids, p_subj = read_template_subjects(ijb, "probe_mixed")
    probe = _features(bank, p_tids)
    where = f"{ijb.kind}_1N_gallery_{'+'.join(g_names)}"
    if protocol == "insightface":
        g_tids = np.concatenate([g[0] for g in galleries])
        g_subj = np.concatenate([g[1] for g in galleries])
        out = insightface_1n(probe, p_subj, _features(bank, g_tids), g_subj, where=where)
    else:
        per = {
            name: open_set_1n(probe, p_subj, _features(bank, t), s, where=f"{ijb.kind}_1N_gallery_{name}")
            for name, (t, s) in zip(g_names, galleries, strict=True)
        }
        first = per[g_names[0]]
        out = {k: float(np.mean([r[k] for r in per.values()])) for k in (f"rank{r}" for r in RANKS)}
        out["tpir_at_fpir"] = {
            f: {"tpir": float(np.mean([r["tpir_at_fpir"][f]["tpir"] for r in per.values()]))}
            for f in first["tpir_at_fpir"]
        }
        out["galleries"] = per
    out["protocol"] = protocol
    return out


def table_text(res: dict[str, Any], kind: str) -> str:
    """Rank-k and TPIR@FPIR in % on two lines."""
    ranks = ", ".join(f"rank-{k} {100 * res[f'rank{k}']:.2f}" for k in RANKS)
    tpir = ", ".join(f"TPIR@FPIR={f} {100 * v['tpir']:.2f}" for f, v in res["tpir_at_fpir"].items())
    return f"{kind.upper()} 1:N ({res['protocol']}): {ranks}\n  {tpir}"
