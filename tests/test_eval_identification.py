"""Identification: CMC by hand, FAISS vs numpy, MegaFace-style rank-1 vs a loop, templates."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.embed.base import l2_normalize
from faceforge.eval.identification import (
    best_distractor_scores,
    identify,
    megaface_rank1,
    open_set_identify,
    random_distractors,
    template_features,
    template_verification,
)


def test_cmc_by_hand():
    # gallery: identity 0 has two images, 1 and 2 one each (unit vectors on axes)
    gallery = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    g_lab = np.array([0, 0, 1, 2])
    probe = np.array(
        [
            [0.8, 0.6, 0.0],  # id 0: best own 0.96 (image 2 of id 0) > id1 0.6 -> rank 1
            [0.0, 0.6, 0.8],  # id 2: own 0.8 > id1 0.6, id0 0.48 -> rank 1
            [0.1, 0.2, 0.97],  # id 1: own 0.2 < id2 0.97, id0 0.22 -> rank 3
            [0.9, 0.1, 0.0],  # id 1: own 0.1 < id0 0.9 -> rank 2
            [0.0, 0.0, 1.0],  # id 7 has no gallery image -> unknown
        ],
        dtype=np.float32,
    )
    p_lab = np.array([0, 2, 1, 1, 7])
    res = identify(gallery, g_lab, probe, p_lab, ranks=(1, 2, 3))
    assert res["ranks"].tolist() == [1, 1, 3, 2]
    assert res["rank1"] == 0.5 and res["rank2"] == 0.75 and res["rank3"] == 1.0
    assert res["cmc"].tolist() == [0.5, 0.75, 1.0]
    assert res["unknown_probes"] == 1 and res["gallery_identities"] == 3


def test_open_set_dir_at_far_matches_a_loop():
    rng = np.random.default_rng(5)
    centers = l2_normalize(rng.standard_normal((12, 16)))
    g_lab = np.arange(8)  # identities 8..11 are never enrolled: their probes are unknown
    gallery = l2_normalize(centers[g_lab] + 0.3 * rng.standard_normal((8, 16)))
    p_lab = np.repeat(np.arange(12), 5)
    probe = l2_normalize(centers[p_lab] + 0.6 * rng.standard_normal((60, 16)))
    res = open_set_identify(gallery, g_lab, probe, p_lab, fars=(0.0, 0.05, 0.5), threshold=0.4)
    sims = probe.astype(np.float64) @ gallery.T.astype(np.float64)
    known = p_lab < 8
    unknown_best = sims[~known].max(axis=1)
    assert res["known_probes"] == 40 and res["unknown_probes"] == 20
    for far in (0.0, 0.05, 0.5):
        t = res["thresholds"][far]
        assert np.mean(unknown_best >= t) <= far + 1e-12  # the FAR is kept
        # one more accepted unknown (the next lower threshold) would break it
        assert far == 0.0 or np.mean(unknown_best >= unknown_best[unknown_best < t].max()) > far
        hits = [sims[i].argmax() == p_lab[i] and sims[i, p_lab[i]] >= t for i in np.flatnonzero(known)]
        assert res["dir"][far] == pytest.approx(np.mean(hits), abs=1e-6)
    assert res["resolved"] == {0.0: False, 0.05: True, 0.5: True}
    a = res["at_threshold"]
    assert a["unknown_rejected"] == pytest.approx(np.mean(unknown_best < 0.4))
    assert res["curve"]["dir"][-1] == pytest.approx(np.mean(sims[known].argmax(1) == p_lab[known]))
    with pytest.raises(Exception, match="both"):
        open_set_identify(gallery, g_lab, probe[known], p_lab[known])


def test_faiss_matches_numpy_brute_force():
    rng = np.random.default_rng(0)
    probe = l2_normalize(rng.standard_normal((40, 24)).astype(np.float32))
    dis = np.concatenate(list(random_distractors(3000, 24, seed=1, chunk=700)))
    sizes = [10, 100, 1000, 2500, 5000]
    fast = best_distractor_scores(probe, [dis[:1111], dis[1111:]], sizes)
    brute = np.stack([(probe.astype(np.float64) @ dis[: min(s, 3000)].T).max(1) for s in sizes], axis=1)
    np.testing.assert_allclose(fast, brute, atol=1e-6)
    numpy_path = best_distractor_scores(probe, [dis], sizes, use_faiss=False)
    np.testing.assert_allclose(fast, numpy_path, atol=1e-6)


def test_megaface_rank1_matches_loop():
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((6, 16))
    labels = np.repeat(np.arange(6), [2, 3, 4, 2, 3, 1])
    probe = l2_normalize((centers[labels] + 0.9 * rng.standard_normal((len(labels), 16))).astype(np.float32))
    dis = np.concatenate(list(random_distractors(400, 16, seed=3)))
    sizes = [1, 10, 100, 400]
    res = megaface_rank1(probe, labels, [dis], sizes)
    for j, n in enumerate(sizes):
        hits = trials = 0
        for a in range(len(labels)):
            best_d = max(float(probe[a] @ d) for d in dis[:n])
            for b in range(len(labels)):
                if a != b and labels[a] == labels[b]:
                    trials += 1
                    hits += float(probe[a] @ probe[b]) > best_d
        assert res["rank1"][j] == pytest.approx(hits / trials)
    assert res["trials"] == 2 + 6 + 12 + 2 + 6
    assert res["rank1"] == sorted(res["rank1"], reverse=True)


def test_template_features_weighted_mean():
    feats = np.array([[2, 0], [0, 1], [0, 3], [1, 1]], dtype=np.float32)
    tids, tf = template_features(feats, [5, 5, 9, 9], weights=[1, 3, 1, 1])
    assert tids.tolist() == [5, 9]
    np.testing.assert_allclose(tf[0], np.array([1, 3]) / np.sqrt(10), atol=1e-6)
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(tf[1], np.array([s, 1 + s]) / np.linalg.norm([s, 1 + s]), atol=1e-6)


def test_template_verification_perfect_separation():
    rng = np.random.default_rng(4)
    centers = l2_normalize(rng.standard_normal((20, 32)))
    tid = np.repeat(np.arange(40), 3)  # templates 2k and 2k+1 belong to identity k % 20
    ident = (tid // 2) % 20
    feats = centers[ident] + 0.05 * rng.standard_normal((len(tid), 32))
    same = [[2 * k, 2 * k + 1] for k in range(20)]
    pairs = np.array(same + [[2 * k, 2 * ((k + 1) % 20)] for k in range(20)])
    labels = np.array([1] * 20 + [0] * 20)
    res = template_verification(feats, tid, pairs, labels, far_targets=(1e-2, 1e-1))
    assert res["tar_at_far"]["0.01"] == 1.0 and res["pairs"] == 40


def test_cli_identify_reports_the_open_set(tmp_path, tiny_mfn_ckpt, capsys):
    from conftest import write_identity_crops
    from faceforge.cli.main import main
    from faceforge.data.tools.split import gallery_probe

    write_identity_crops(tmp_path / "src", seed=1, prefix="p", identities=6, per=3)
    gallery_probe(tmp_path / "src", tmp_path / "gp", unknown=2)
    gp = tmp_path / "gp"
    assert main(["eval", "identify", "--model", str(tiny_mfn_ckpt), "--gallery", str(gp / "gallery"),
                 "--probe", str(gp / "probe"), "--threshold", "0.5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "8 probes, 4 gallery identities, 6 probes without a gallery identity" in out
    assert "open set: DIR@FAR=0.001" in out and "(unresolved)" in out and "of unknown rejected" in out
