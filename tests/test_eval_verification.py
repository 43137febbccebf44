"""Verification protocols: peer fixtures match; plain float64 loops agree on random data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.errors import UserError
from faceforge.eval.verification import (
    equal_error_rate,
    facex_folds,
    kfold_ids,
    roc_curve,
    tar_at_far,
    verify_embeddings,
)

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _fixture(name: str):
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"peer fixture {path} not present (../shared/reference)")
    return np.load(path)


ARCFACE_KEYS = {
    "tpr": "tpr",
    "fpr": "fpr",
    "fold_accuracy": "fold_accuracy",
    "accuracy_mean": "accuracy",
    "accuracy_std": "accuracy_std",
    "best_threshold": "best_threshold",
    "val_mean": "val",
    "val_std": "val_std",
    "far_mean": "far",
    "val_fold": "val_fold",
    "far_fold": "far_fold",
    "dist": "dist",
}


@pytest.mark.parametrize("name", ["verification_600.npz", "verification_lfw6000.npz"])
def test_insightface_fixture_exact(name):
    ref = _fixture(name)
    res = verify_embeddings(ref["embeddings"], ref["issame"], protocol="insightface", normalize=False)
    for ref_key, key in ARCFACE_KEYS.items():
        np.testing.assert_array_equal(np.asarray(res[key]), ref[f"arcface_{ref_key}"], err_msg=ref_key)
    # README section 4: the closed-form slinear threshold matches the peer to 1e-12
    np.testing.assert_allclose(res["val_threshold"], ref["arcface_val_threshold"], rtol=0, atol=1e-12)
    gap = np.abs(res["dist"][:, None] - np.arange(0, 4, 0.01)[None]).min()
    assert gap == pytest.approx(float(ref["arcface_min_gap_dist_to_roc_grid"]), rel=1e-9)


def test_insightface_fixture_renormalised_same_accuracy():
    ref = _fixture("verification_600.npz")
    # normalising the float32 rows again moves distances by ~1e-7, far below the 1e-5 gap to the grid
    res = verify_embeddings(ref["embeddings"], ref["issame"])
    np.testing.assert_array_equal(res["fold_accuracy"], ref["arcface_fold_accuracy"])
    np.testing.assert_allclose(res["dist"], ref["arcface_dist"], atol=1e-6)


def test_facex_fixture_exact_on_peer_scores():
    ref = _fixture("verification_lfw6000.npz")
    n = ref["issame"].shape[0]
    res = facex_folds(ref["facex_score"], ref["issame"], kfold_ids(n), 10)
    np.testing.assert_array_equal(res["fold_accuracy"], ref["facex_fold_accuracy"])
    assert res["accuracy"] == ref["facex_accuracy_mean"]
    assert res["accuracy_std"] == pytest.approx(float(ref["facex_accuracy_std_error"]), abs=1e-15)
    # README: thresholds move by up to 2.6e-8 with numpy 1.x (NEP 50), compare with atol 1e-7
    np.testing.assert_allclose(res["best_threshold"], ref["facex_best_threshold"], rtol=0, atol=1e-7)


def test_facex_fixture_from_embeddings():
    ref = _fixture("verification_lfw6000.npz")
    res = verify_embeddings(ref["embeddings"], ref["issame"], protocol="facex", normalize=False)
    # float32 dot products differ from the peer's BLAS in the last bit (<= 2 ulp at ~0.8)
    np.testing.assert_allclose(res["score"], ref["facex_score"], rtol=0, atol=2.5e-7)
    np.testing.assert_array_equal(res["fold_accuracy"], ref["facex_fold_accuracy"])
    np.testing.assert_allclose(res["best_threshold"], ref["facex_best_threshold"], rtol=0, atol=1e-7)
    assert res["accuracy_std"] == pytest.approx(float(ref["facex_accuracy_std_error"]), abs=1e-15)


# --------------------------------------------------------------------------------------------
# plain loops (float64), written the way the peers read, for random data


def _loop_insightface(emb, issame, n_folds=10):
    emb = emb.astype(np.float64)
    dist = np.array([sum((a - b) ** 2) for a, b in zip(emb[0::2], emb[1::2], strict=True)])
    n = len(issame)
    sizes = [n // n_folds + (1 if f < n % n_folds else 0) for f in range(n_folds)]
    bounds = np.cumsum([0, *sizes])
    grid = np.arange(0, 4, 0.01)

    # one threshold at a time, as the peer's calculate_accuracy / calculate_val_far do
    def acc(t, idx):
        return float(np.sum((dist[idx] < t) == issame[idx])) / len(idx)

    def rates(t, idx):
        same, diff = idx[issame[idx]], idx[~issame[idx]]
        tpr = float(np.sum(dist[same] < t)) / len(same) if len(same) else 0.0
        fpr = float(np.sum(dist[diff] < t)) / len(diff) if len(diff) else 0.0
        return tpr, fpr

    accs, bests, val, far = [], [], [], []
    for f in range(n_folds):
        test = np.arange(bounds[f], bounds[f + 1])
        train = np.array([i for i in range(n) if not bounds[f] <= i < bounds[f + 1]])
        train_acc = [acc(t, train) for t in grid]
        best = grid[train_acc.index(max(train_acc))]
        bests.append(best)
        accs.append(acc(best, test))
        vgrid = np.arange(0, 4, 0.001)
        far_train = [rates(t, train)[1] for t in vgrid]
        if max(far_train) >= 1e-3:
            ia = max(i for i, v in enumerate(far_train) if v <= 1e-3)
            if ia + 1 < len(vgrid):
                thr = vgrid[ia] + (vgrid[ia + 1] - vgrid[ia]) * (1e-3 - far_train[ia]) / (
                    far_train[ia + 1] - far_train[ia]
                )
            else:
                thr = vgrid[ia]
        else:
            thr = 0.0
        v, fa = rates(thr, test)
        val.append(v)
        far.append(fa)
    return np.array(accs), np.array(bests), np.array(val), np.array(far)


def _loop_facex(scores, issame, n_folds=10):
    n = len(issame)
    folds = kfold_ids(n, n_folds)
    accs, bests = [], []
    for f in range(n_folds):
        train = [i for i in range(n) if folds[i] != f]
        s = [float(scores[i]) for i in train]
        lo, hi = min(s), max(s)
        step = float(np.float32(np.float32(hi) - np.float32(lo)) / np.float32(1000))
        pos = [float(scores[i]) for i in train if issame[i]]
        neg = [float(scores[i]) for i in train if not issame[i]]
        best_j, best_t = None, None
        for k in range(1, 1001):
            t = lo + step * k
            j = sum(p > t for p in pos) / len(pos) - sum(q > t for q in neg) / len(neg)
            if best_j is None or j > best_j:
                best_j, best_t = j, t
        test = [i for i in range(n) if folds[i] == f]
        ok = sum((scores[i] > best_t) if issame[i] else (scores[i] < best_t) for i in test)
        accs.append(ok / len(test))
        bests.append(best_t)
    return np.array(accs), np.array(bests)


def _random_pairs(n, dim, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, dim))
    issame = rng.random(n) < 0.5
    noise = rng.standard_normal((n, dim))
    b = np.where(issame[:, None], a + rng.uniform(0.5, 1.5, (n, 1)) * noise, 0.3 * a + noise)
    emb = np.empty((2 * n, dim))
    emb[0::2], emb[1::2] = a, b
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), issame


@pytest.mark.parametrize("n,seed", [(317, 0), (150, 1)])
def test_insightface_matches_float64_loop(n, seed):
    emb, issame = _random_pairs(n, 16, seed)
    res = verify_embeddings(emb, issame, normalize=False)
    accs, bests, val, far = _loop_insightface(emb, issame)
    np.testing.assert_array_equal(res["fold_accuracy"], accs)
    np.testing.assert_array_equal(res["best_threshold"], bests)
    np.testing.assert_allclose(res["val_fold"], val, atol=1e-12)
    np.testing.assert_allclose(res["far_fold"], far, atol=1e-12)
    assert res["accuracy_std"] == pytest.approx(np.std(accs), abs=1e-15)


def test_facex_matches_loop():
    emb, issame = _random_pairs(230, 16, 3)
    res = verify_embeddings(emb, issame, protocol="facex", normalize=False)
    accs, bests = _loop_facex(res["score"], issame)
    np.testing.assert_array_equal(res["fold_accuracy"], accs)
    np.testing.assert_allclose(res["best_threshold"], bests, atol=1e-12)
    assert res["accuracy_std"] == pytest.approx(np.std(accs, ddof=1) / np.sqrt(10), abs=1e-15)


def test_tar_at_far_and_eer_match_brute_force():
    rng = np.random.default_rng(5)
    scores = np.round(rng.standard_normal(400), 2)  # ties on purpose
    issame = rng.random(400) < 0.4
    scores[issame] += 1.0
    roc = roc_curve(scores, issame)
    for far in (1e-2, 5e-2, 0.2):
        best = 0.0
        for t in np.unique(scores):
            pred = scores >= t
            if pred[~issame].mean() <= far:
                best = max(best, pred[issame].mean())
        assert tar_at_far(roc, far)[0] == pytest.approx(best)
    eer, _ = equal_error_rate(roc)
    fnr = 1 - roc["tpr"]
    i = np.argmin(np.abs(roc["fpr"] - fnr))
    assert abs(eer - (roc["fpr"][i] + fnr[i]) / 2) <= np.abs(np.diff(roc["fpr"])).max() + 1e-12


def test_explicit_folds_and_bad_input():
    emb, issame = _random_pairs(40, 8, 0)
    folds = np.arange(40) % 10  # interleaved folds
    res = verify_embeddings(emb, issame, folds=folds)
    assert res["folds"] == 10 and len(res["fold_accuracy"]) == 10
    with pytest.raises(UserError, match="embeddings"):
        verify_embeddings(emb[:-2], issame)
    with pytest.raises(UserError, match="protocol"):
        verify_embeddings(emb, issame, protocol="lfw")
    bad = emb.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        verify_embeddings(bad, issame)


def test_kfold_ids_first_folds_larger():
    ids = kfold_ids(23, 10)
    assert np.bincount(ids).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert np.all(np.diff(ids) >= 0)
