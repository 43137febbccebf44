"""IJB-B/C: the layout reader, 1:1 TAR@FAR (InsightFace's rule), 1:N, cache, CLI and suite rows.

The tree is written here: synthetic "wild" faces with their known five points, 10 subjects x 4
templates x 2 medias, some faces shared by two templates (as in IJB-C). Expected numbers come from
plain per-face / per-pair / per-threshold loops, not from the library's vectorised code.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from faceforge.align.transform import warp_face
from faceforge.cli.main import main
from faceforge.embed.torch_embedder import TorchEmbedder
from faceforge.errors import UserError
from faceforge.eval import cache as cache_mod
from faceforge.eval.ijb import evaluate_ijb, insightface_tar, pool_templates, sklearn_roc, template_bank
from faceforge.eval.ijb_1n import identify_ijb
from faceforge.eval.ijb_data import open_ijb

SUBJECTS, TEMPLATES, MEDIAS = 10, 4, 2
FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _write_tree(root, kind: str = "ijbc", subjects: int = SUBJECTS):
    """Write an IJB-layout tree; return its rows (name, template, media, five, score, subject)."""
    from faceforge.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(seed=7, mode="wild", difficulty=0.5)
    rng = np.random.default_rng(0)
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    rows, n = [], 0
    for s in range(subjects):
        shared = None
        for t in range(TEMPLATES):
            tid = 100 * s + t + 1
            for m in range(MEDIAS):
                mid = 1000 * s + 10 * t + m
                for _ in range(1 + int(rng.integers(0, 3))):
                    img, truth = faces.render(s, n)
                    name = f"{n}.jpg"
                    cv2.imwrite(str(root / "loose_crop" / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                    row = (name, tid, mid, truth["five"], float(rng.uniform(0.4, 1.0)), s)
                    rows.append(row)
                    shared = shared or row
                    n += 1
            if t == 1:  # IJB reuses an image in several templates: one more row, same file
                rows.append((shared[0], tid, shared[2], shared[3], shared[4], s))
    with open(root / "meta" / f"{kind}_face_tid_mid.txt", "w") as f:
        f.writelines(f"{r[0]} {r[1]} {r[2]}\n" for r in rows)
    with open(root / "meta" / f"{kind}_name_5pts_score.txt", "w") as f:
        for r in rows:
            f.write(" ".join([r[0], *(f"{v:.3f}" for v in r[3].ravel()), f"{r[4]:.4f}"]) + "\n")
    tids = sorted({(r[1], r[5]) for r in rows})
    pairs = [(a, b, int(sa == sb)) for i, (a, sa) in enumerate(tids) for b, sb in tids[i + 1 :]]
    with open(root / "meta" / f"{kind}_template_pair_label.txt", "w") as f:
        f.writelines(f"{a} {b} {y}\n" for a, b, y in pairs)
    # 1:N: first template of subjects 0-4 in G1, of 5-9 in G2; the other templates probe
    gal = ("G1", "G2") if kind == "ijbc" else ("S1", "S2")
    half = subjects // 2
    for g, subj in zip(gal, (range(0, half), range(half, subjects)), strict=True):
        _write_csv(
            root / "meta" / f"{kind}_1N_gallery_{g}.csv",
            [r for r in rows if r[5] in subj and r[1] % 100 == 1],
        )
    _write_csv(root / "meta" / f"{kind}_1N_probe_mixed.csv", [r for r in rows if r[1] % 100 != 1])
    return rows, pairs


def _write_csv(path, rows):
    with open(path, "w") as f:
        f.write("TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID\n")
        f.writelines(f"{r[1]},{r[5]},img/{r[0]},{r[2]}\n" for r in rows)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijb") / "IJBC"
    rows, pairs = _write_tree(root)
    return root, rows, pairs


@pytest.fixture(scope="module")
def embedder():
    import torch

    from faceforge.models import build_backbone

    torch.manual_seed(0)
    return TorchEmbedder(build_backbone("mobilefacenet_tiny", embedding_size=32), name="tiny")


# --------------------------------------------------------------------------------------------
# plain-loop references


def _reference_scores(embedder, root, rows, pairs, weight=True):
    """Per face: read, warp, embed + mirror; per template: sum of media means, normalised."""
    medias: dict = {}
    for name, tid, mid, five, score, _ in rows:
        img = cv2.cvtColor(cv2.imread(str(root / "loose_crop" / name)), cv2.COLOR_BGR2RGB)
        crop = warp_face(img, np.round(five.astype(np.float64), 3), "arcface", (112, 112))
        feat = embedder.embed(crop[None])[0] + embedder.embed(np.ascontiguousarray(crop[None, :, ::-1]))[0]
        feat = feat.astype(np.float64) * (round(score, 4) if weight else 1.0)
        medias.setdefault(tid, {}).setdefault(mid, []).append(feat)
    templates = {}
    for tid, by_media in medias.items():
        total = sum(np.mean(v, axis=0) for v in by_media.values())
        templates[tid] = total / np.linalg.norm(total)
    return np.array([float(templates[a] @ templates[b]) for a, b, _ in pairs]), templates


def _loop_roc(scores, labels):
    """sklearn roc_curve semantics, one threshold at a time: (fpr, tpr) points incl. (0, 0)."""
    pos, neg = sum(labels), len(labels) - sum(labels)
    pts = []
    for t in sorted(set(scores), reverse=True):
        tp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= t and y)
        fp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= t and not y)
        pts.append((fp, tp))
    kept = [pts[0]]
    for i in range(1, len(pts) - 1):  # drop_intermediate: collinear middle points go
        d_fp = pts[i - 1][0] - 2 * pts[i][0] + pts[i + 1][0]
        d_tp = pts[i - 1][1] - 2 * pts[i][1] + pts[i + 1][1]
        if d_fp or d_tp:
            kept.append(pts[i])
    kept.append(pts[-1])
    return [(0.0, 0.0)] + [(fp / neg, tp / pos) for fp, tp in kept]


def _loop_tar(points, far):
    """ijb_11.py: the point of closest FPR on the reversed curve, the first such one."""
    best, best_d = None, math.inf
    for fpr, tpr in reversed(points):
        if abs(fpr - far) < best_d:
            best, best_d = tpr, abs(fpr - far)
    return best


# --------------------------------------------------------------------------------------------
# TAR@FAR rule


def test_tar_rule_hand_example():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 0], bool)
    roc = sklearn_roc(scores, labels)
    # (1,2) and (3,4) in (fp, tp) counts are collinear with their neighbours and dropped
    np.testing.assert_allclose(roc["fpr"], [0, 0, 0.25, 0.25, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc["tpr"], [0, 0.25, 0.25, 0.75, 0.75, 1, 1])
    assert insightface_tar(roc, 0.2)["tar"] == 0.75  # closest FPR 0.25 is above the target
    assert insightface_tar(roc, 0.2)["far"] == 0.25
    assert insightface_tar(roc, 0.5)["tar"] == 1.0  # tie at FPR 0.5: the larger TPR
    assert insightface_tar(roc, 1e-6)["tar"] == 0.25
    assert _loop_tar(_loop_roc(list(scores), list(labels)), 0.2) == 0.75


def test_tar_rule_matches_loop_on_random_scores():
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.2
    scores = np.round(rng.normal(labels * 1.5, 1.0), 1)  # rounded: many ties
    roc = sklearn_roc(scores, labels)
    points = _loop_roc(list(scores), list(labels))
    np.testing.assert_allclose(roc["fpr"], [p[0] for p in points])
    np.testing.assert_allclose(roc["tpr"], [p[1] for p in points])
    for far in (1e-3, 1e-2, 0.05, 0.1, 0.3):
        assert insightface_tar(roc, far)["tar"] == _loop_tar(points, far)


# --------------------------------------------------------------------------------------------
# the protocol on the synthetic tree


def test_read_tree(tree):
    root, rows, pairs = tree
    ijb = open_ijb(f"ijbc:{root}")
    assert len(ijb) == len(rows) > 150
    assert ijb.pairs.shape == (len(pairs), 2) and ijb.labels.sum() == sum(p[2] for p in pairs)
    np.testing.assert_allclose(ijb.landmarks[3], rows[3][3], atol=1e-3)
    assert ijb.read(0).shape == (112, 112, 3)
    assert open_ijb(f"ijbc:{root.parent}").root == root  # the package's top folder works too


def test_tar_at_far_matches_plain_loops(tree, embedder, tmp_path):
    root, rows, pairs = tree
    res = evaluate_ijb(embedder, f"ijbc:{root}", batch_size=32, cache_dir=tmp_path / "c")
    ref_scores, _ = _reference_scores(embedder, root, rows, pairs)
    np.testing.assert_allclose(res["score"], ref_scores, atol=2e-5)
    labels = [bool(p[2]) for p in pairs]
    points = _loop_roc(list(res["score"]), labels)
    for far in FARS:
        assert res["tar_at_far"][f"{far:g}"]["tar"] == pytest.approx(_loop_tar(points, far))
    assert res["pairs"] == len(pairs) and res["templates"] == SUBJECTS * TEMPLATES
    assert res["tar_at_far"]["0.1"]["tar"] > 0.1  # a random tiny net still ranks some mates first


def test_unweighted_and_unit_norm(tree, embedder, tmp_path):
    root, rows, pairs = tree
    res = evaluate_ijb(embedder, f"ijbc:{root},weight=none", cache_dir=tmp_path)
    ref_scores, _ = _reference_scores(embedder, root, rows, pairs, weight=False)
    np.testing.assert_allclose(res["score"], ref_scores, atol=2e-5)
    unit = evaluate_ijb(embedder, f"ijbc:{root}", norm="unit", cache_dir=tmp_path)
    assert unit["norm"] == "unit" and not np.allclose(unit["score"], res["score"])


def test_second_run_computes_no_embedding(tree, embedder, tmp_path):
    root, _, _ = tree
    first = evaluate_ijb(embedder, f"ijbc:{root}", cache_dir=tmp_path)
    computed, hits = cache_mod.STATS["computed"], cache_mod.STATS["hits"]
    second = evaluate_ijb(embedder, f"ijbc:{root}", weight="none", cache_dir=tmp_path)
    assert cache_mod.STATS["computed"] == computed and cache_mod.STATS["hits"] == hits + 1
    assert second["faces"] == first["faces"]


def test_one_to_n_matches_loops(tree, embedder, tmp_path):
    root, rows, _ = tree
    ijb = open_ijb(f"ijbc:{root}", pairs=False)
    bank = template_bank(embedder, ijb, cache_dir=tmp_path)
    res = identify_ijb(ijb, bank)
    _, feats = _reference_scores(embedder, root, rows, [])
    subject = {r[1]: r[5] for r in rows}
    gallery = sorted(t for t in feats if t % 100 == 1)
    probes = sorted(t for t in feats if t % 100 != 1)
    ranks, mates, negatives = [], [], []
    for p in probes:
        sims = {g: float(feats[p] @ feats[g]) for g in gallery}
        mate = next(g for g in gallery if subject[g] == subject[p])
        ranks.append(1 + sum(1 for g in gallery if sims[g] > sims[mate]))
        mates.append(sims[mate])
        negatives += [sims[g] for g in gallery if g != mate]
    for k in (1, 5, 10):
        assert res[f"rank{k}"] == pytest.approx(sum(r <= k for r in ranks) / len(probes))
    negatives.sort(reverse=True)
    for f in (0.01, 0.1):
        th = negatives[math.ceil(len(probes) * f) - 1]
        expected = sum(m > th for m in mates) / len(probes)
        assert res["tpir_at_fpir"][f"{f:g}"]["tpir"] == pytest.approx(expected, abs=1e-12)
    open_set = identify_ijb(ijb, bank, "open_set")
    g1 = open_set["galleries"]["G1"]
    g1_templates = [g for g in gallery if subject[g] < 5]
    mated = [p for p in probes if subject[p] < 5]
    assert g1["mated"] == len(mated) and g1["non_mated"] == len(probes) - len(mated)
    best_nm = sorted(
        max(float(feats[p] @ feats[g]) for g in g1_templates) for p in probes if p not in mated
    )
    for f in (0.01, 0.1):
        allowed = math.floor(f * len(best_nm))  # non-mated searches that may pass the threshold
        th = best_nm[len(best_nm) - 1 - allowed]  # the (allowed + 1)-th best: pass means > th
        hits = 0
        for p in mated:
            sims = {g: float(feats[p] @ feats[g]) for g in g1_templates}
            mate = next(g for g in g1_templates if subject[g] == subject[p])
            hits += max(sims.values()) == sims[mate] and sims[mate] > th
        assert g1["tpir_at_fpir"][f"{f:g}"]["tpir"] == pytest.approx(hits / len(mated))
        assert g1["tpir_at_fpir"][f"{f:g}"]["fpir"] <= f


def test_cli_prints_table_and_suite_row(tree, tmp_path, capsys):
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    root, _, _ = tree
    ckpt = tmp_path / "tiny.ckpt"
    save_checkpoint(ckpt, build_backbone("mobilefacenet_tiny", embedding_size=32))
    out = tmp_path / "out"
    rc = main(
        [
            "eval",
            "ijb",
            "--data",
            f"ijbc:{root}",
            "--model",
            str(ckpt),
            "--out",
            str(out),
            "--identification",
            "insightface",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "IJBC 1:1" in text and "1e-06" in text and "TPIR@FPIR=0.01" in text
    assert (
        (out / "ijbc.json").is_file()
        and (out / "ijbc_roc.png").is_file()
        and (out / "ijbc_roc.npz").is_file()
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"verification:\n  ijbc: ijbc:{root}\n")
    rc = main(["eval", "suite", str(suite), "--model", str(ckpt), "--out", str(tmp_path / "s")])
    report = (tmp_path / "s" / "report.md").read_text()
    assert rc == 0 and "IJB: ijbc" in report and "TAR@FAR=1e-05" in report


# --------------------------------------------------------------------------------------------
# bad files: one line naming file and line


@pytest.fixture()
def small_tree(tmp_path):
    """A small IJB-B tree (4 subjects) to break one file at a time."""
    root = tmp_path / "IJBB"
    _write_tree(root, "ijbb", subjects=4)
    return root


def _edit(path, line: int, text: str | None):
    """Replace (or with None delete) a line; ``{name}`` stands for the line's own first field."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text.format(name=lines[line - 1].split()[0])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "file, line, text, expected",
    [
        ("face_tid_mid.txt", 4, "{name} 101", "meta/ijbb_face_tid_mid.txt: line 4: expected 3 fields"),
        ("face_tid_mid.txt", 2, "{name} one 1000", "meta/ijbb_face_tid_mid.txt: line 2: template_id 'one'"),
        (
            "name_5pts_score.txt",
            5,
            "{name} 1 2 3 4 5 6 7 8 9 nan 0.9",
            "meta/ijbb_name_5pts_score.txt: line 5: y5 'nan'",
        ),
        (
            "name_5pts_score.txt",
            3,
            "x.jpg 1 2 3 4 5 6 7 8 9 10 0.9",
            "meta/ijbb_name_5pts_score.txt: line 3: image 'x.jpg'",
        ),
        ("template_pair_label.txt", 7, "101 102 2", "meta/ijbb_template_pair_label.txt: line 7: label 2"),
        (
            "template_pair_label.txt",
            2,
            "101 102.5 0",
            "meta/ijbb_template_pair_label.txt: line 2: template_2 '102.5'",
        ),
        (
            "template_pair_label.txt",
            3,
            "101 9999 0",
            "meta/ijbb_template_pair_label.txt: line 3: template 9999 has no face",
        ),
        (
            "template_pair_label.txt",
            4,
            "101 102",
            "meta/ijbb_template_pair_label.txt: line 4: expected 3 fields",
        ),
    ],
)
def test_bad_lines(small_tree, file, line, text, expected):
    _edit(small_tree / "meta" / f"ijbb_{file}", line, text)
    with pytest.raises(UserError) as e:
        open_ijb(f"ijbb:{small_tree}")
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


def test_missing_image_and_count_mismatch(small_tree):
    (small_tree / "loose_crop" / "2.jpg").unlink()
    with pytest.raises(
        UserError, match=r"ijbb_name_5pts_score.txt: line 3: image loose_crop/2.jpg not found"
    ):
        open_ijb(f"ijbb:{small_tree}")
    _edit(small_tree / "meta" / "ijbb_face_tid_mid.txt", 1, None)
    with pytest.raises(
        UserError, match=r"ijbb_name_5pts_score.txt: \d+ lines but meta/ijbb_face_tid_mid.txt has"
    ):
        open_ijb(f"ijbb:{small_tree}")


def test_inconsistent_1n_subject(small_tree, embedder, tmp_path):
    path = small_tree / "meta" / "ijbb_1N_probe_mixed.csv"
    lines = path.read_text().splitlines()
    t, s, *rest = lines[2].split(",")
    lines[2] = ",".join([t, str(int(s) + 1), *rest])  # row 3 gives its template another subject
    path.write_text("\n".join(lines) + "\n")
    ijb = open_ijb(f"ijbb:{small_tree}", pairs=False)
    bank = template_bank(embedder, ijb, cache_dir=tmp_path)
    with pytest.raises(UserError, match=r"ijbb_1N_probe_mixed.csv: line 3: template \d+ has subject"):
        identify_ijb(ijb, bank)


def test_bad_source_strings(tmp_path):
    with pytest.raises(UserError, match="expected ijbb:ROOT or ijbc:ROOT"):
        open_ijb(f"ijbd:{tmp_path}")
    with pytest.raises(UserError, match="no meta/ folder"):
        open_ijb(f"ijbc:{tmp_path}")
    (tmp_path / "meta").mkdir()
    with pytest.raises(UserError, match="unknown option 'foo=1'"):
        open_ijb(f"ijbc:{tmp_path},foo=1")
    with pytest.raises(UserError, match="meta/ijbc_face_tid_mid.txt: file not found"):
        open_ijb(f"ijbc:{tmp_path}")


def test_pooling_by_hand():
    a, b, c, d = np.eye(4)[0] * 2, np.eye(4)[1], np.eye(4)[2] * 3, np.eye(4)[3]
    feats = np.stack([a, b, c, d, d])
    templates = np.array([7, 7, 7, 9, 5])
    medias = np.array([1, 1, 2, 3, 4])
    valid = np.array([True, True, True, True, False])
    tids, tf = pool_templates(feats, templates, medias, valid)
    assert tids.tolist() == [5, 7, 9]
    expected = (a + b) / 2 + c  # media means summed, then normalised
    np.testing.assert_allclose(tf[1], expected / np.linalg.norm(expected))
    np.testing.assert_allclose(tf[0], 0)  # its only face is unreadable: a zero template
    np.testing.assert_allclose(tf[2], d)


def test_unreadable_face_is_left_out_and_counted(small_tree, embedder, tmp_path):
    (small_tree / "loose_crop" / "1.jpg").write_bytes(b"not a jpeg")
    res = evaluate_ijb(embedder, f"ijbb:{small_tree}", cache_dir=tmp_path)
    assert res["corrupt_images"] >= 1 and res["empty_templates"] == 0
    assert np.all(np.isfinite(res["score"]))
