"""Honest thresholds (issue 23): the 10/FAR rule, TAR@FAR marked where not measurable, ``calibrate``
for every kind of model at several FARs, and galleries that remember their model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import write_tiny_checkpoint
from faceforge.cli.main import main
from faceforge.errors import UserError


def test_smallest_far_rule():
    from faceforge.eval.thresholds import measurable, smallest_far

    assert smallest_far(594) == pytest.approx(10 / 594)
    assert smallest_far(0) == float("inf")
    assert measurable(1e-3, 10_000) and not measurable(1e-3, 9_999)
    assert not measurable(1e-4, 594) and not measurable(1e-2, 594) and measurable(0.02, 594)


def _scores(same: int, different: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(0.7, 0.1, same), rng.normal(0.1, 0.1, different)]
    return scores, np.r_[np.ones(same, bool), np.zeros(different, bool)]


def test_thresholds_at_several_fars_match_a_plain_count():
    from faceforge.eval.thresholds import thresholds_at_fars

    scores, issame = _scores(500, 20_000)
    res = thresholds_at_fars(scores, issame, [1e-2, 1e-3, 1e-4])
    assert (res["same"], res["different"], res["smallest_far"]) == (500, 20_000, 10 / 20_000)
    rows = {r["far"]: r for r in res["at_far"]}
    assert not rows[1e-4]["measurable"] and rows[1e-4]["threshold"] is None
    assert "needs 100000" in rows[1e-4]["reason"]
    for far in (1e-2, 1e-3):
        thr = rows[far]["threshold"]
        impostor, genuine = scores[~issame], scores[issame]
        assert np.mean(impostor >= thr) <= far and rows[far]["measured_far"] == np.mean(impostor >= thr)
        assert rows[far]["tar"] == pytest.approx(np.mean(genuine >= thr))
        # no score keeping FAR <= far accepts more genuine pairs (a plain loop over every score)
        best = max(np.mean(genuine >= t) for t in np.sort(scores) if np.mean(impostor >= t) <= far)
        assert rows[far]["tar"] == pytest.approx(best)


def test_verify_embeddings_marks_what_it_cannot_measure():
    from faceforge.eval.verification import summary_line, verify_embeddings

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(2 * 600, 16)).astype(np.float32)
    issame = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    res = verify_embeddings(emb, issame)
    tab = res["tar_at_far"]
    assert not tab["0.0001"]["measurable"] and tab["0.0001"]["tar"] is None
    assert not tab["0.01"]["measurable"]  # 300 impostor pairs measure FAR >= 0.033
    line = summary_line(res)
    assert "TAR@FAR=0.0001: n/m" in line and "300 impostor pairs need FAR >= 0.033" in line
    if "val" in res:  # insightface's VAL@FAR=1e-3: kept for parity, marked (270 training impostor pairs)
        assert "VAL@FAR=1e-3" in line and "n/m by faceforge's rule: 270 training impostor pairs" in line


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    from faceforge.data.synthetic import write_dataset, write_pairs

    root = tmp_path_factory.mktemp("cal")
    write_dataset(root / "syn", 40, 4)
    write_pairs(root / "syn", 40, 4, folds=10, per_fold=20)  # 200 impostor pairs
    ckpt = write_tiny_checkpoint(root / "m.ckpt")
    argv = ["export", str(ckpt), "--onnx", str(root / "m.onnx"), "--torchscript", str(root / "m.ts")]
    assert main(argv) == 0
    return root, f"pairs:{root / 'syn' / 'pairs.txt'}"


def test_export_refuses_an_unmeasurable_far(syn, capsys):
    root, pairs = syn
    capsys.readouterr()
    code = main(["export", str(root / "m.ckpt"), "--onnx", str(root / "x.onnx"), "--pairs", pairs,
                 "--far", "1e-3"])
    err = capsys.readouterr().err
    assert code == 2 and "refused" in err and "200 impostor pairs measure FAR >= 0.05" in err
    assert not (root / "x.onnx").exists()


@pytest.mark.parametrize("kind", ["m.onnx", "m.ts", "m.ckpt"])
def test_calibrate_any_model_keeps_the_threshold_with_it(syn, kind, tmp_path, capsys):
    from faceforge import FaceAnalyzer

    root, pairs = syn
    model = tmp_path / kind
    shutil.copyfile(root / kind, model)
    if kind == "m.ts":
        shutil.copyfile(root / "m.yaml", tmp_path / "m.yaml")
    capsys.readouterr()
    assert main(["calibrate", str(model), "--pairs", pairs, "--far", "0.1,0.05,1e-3"]) == 0
    out = capsys.readouterr().out
    assert "200 genuine + 200 impostor pairs (smallest measurable FAR 0.05" in out
    assert "FAR 0.001: not measurable" in out and "FAR 0.05: threshold" in out
    fa = FaceAnalyzer(model=str(model))
    assert fa.threshold is not None and fa.threshold_far == 0.1
    stored = "checkpoint calibration" if kind == "m.ckpt" else "model card"
    assert fa.threshold_source.startswith(stored)
    if kind != "m.ckpt":
        assert "calibrated by faceforge" in (tmp_path / "m.yaml").read_text()
    else:
        cal = fa.calibration
        assert cal["different"] == 200 and cal["smallest_far"] == pytest.approx(0.05)
        assert [r["measurable"] for r in cal["at_far"]] == [True, True, False]


def test_dlib_calibrates_into_a_card_of_its_own(syn, tmp_path, capsys):
    pytest.importorskip("dlib")
    import cv2

    from faceforge.deploy.calibration import calibrate_model
    from faceforge.embed.loading import load_embedder

    root, _ = syn
    # 150x150 images are taken as dlib chips as they are (no detection: seconds, not minutes)
    lines = []
    for j in range(10):
        for k in (1, 2):
            img = cv2.imread(str(root / "syn" / f"id{j:07d}" / f"id{j:07d}_{k:04d}.jpg"))
            cv2.imwrite(str(tmp_path / f"{j}_{k}.png"), cv2.resize(img, (150, 150)))
        lines.append(f"{j}_1.png {j}_2.png 1")
        lines += [f"{j}_1.png {(j + d) % 10}_2.png 0" for d in (1, 2)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = f"facex:{tmp_path / 'pairs.txt'}"  # 10 genuine, 20 impostor pairs: FAR >= 0.5
    with pytest.raises(UserError, match="--card-out"):  # no model file to keep it beside
        calibrate_model("dlib:resnet", pairs, far=0.5)
    card = tmp_path / "mine.yaml"
    assert main(["calibrate", "dlib:resnet", "--pairs", pairs, "--far", "0.5", "--card-out", str(card)]) == 0
    emb = load_embedder("dlib:resnet", card=str(card))
    assert emb.card.far == 0.5 and emb.card.template == "dlib_chip" and "flip" in emb.card.declared
    assert "built in, threshold from --card" in emb.card_origin


def test_gallery_remembers_its_model(tmp_path, capsys):
    from conftest import write_identity_crops

    model = write_tiny_checkpoint(tmp_path / "m.ckpt")
    write_identity_crops(tmp_path / "ids", seed=1, prefix="p")
    g = tmp_path / "G"
    assert main(["gallery", "create", str(g), "--model", str(model)]) == 0
    assert main(["gallery", "enroll", str(g), str(tmp_path / "ids"), "--aligned", "--quiet"]) == 0
    capsys.readouterr()
    probe = str(tmp_path / "ids" / "p1" / "0.png")
    assert main(["identify", probe, "--gallery", str(g), "--aligned", "--threshold", "0.99"]) == 0
    out = capsys.readouterr().out
    assert "face 0" in out and "1. p1" in out and "threshold 0.9900" in out
    assert main(["gallery", "list", str(g)]) == 0 and str(model) in capsys.readouterr().out
    other = tmp_path / "other.ckpt"
    import torch

    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.manual_seed(5)
    save_checkpoint(other, build_backbone("mobilefacenet_tiny"))
    assert main(["gallery", "search", str(g), probe, "--aligned", "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not this gallery's model" in err and err.count("\n") == 1
    moved = tmp_path / "moved.ckpt"
    model.rename(moved)
    assert main(["gallery", "search", str(g), probe, "--aligned"]) == 2
    err = capsys.readouterr().err
    assert "model file" in err and "missing" in err and str(model) in err and err.count("\n") == 1
    # the same model at its new place is accepted
    assert main(["gallery", "search", str(g), probe, "--aligned", "--model", str(moved)]) == 0
    shutil.copyfile(other, model)  # another file where the gallery's model was
    capsys.readouterr()
    assert main(["gallery", "search", str(g), probe, "--aligned"]) == 2
    err = capsys.readouterr().err
    assert "has changed since the gallery was made" in err and err.count("\n") == 1


def test_calibrate_from_an_identity_folder(syn, tmp_path, capsys):
    from faceforge.deploy.calibration import calibrate_model

    root, _ = syn
    model = tmp_path / "m.ckpt"
    shutil.copyfile(root / "m.ckpt", model)
    capsys.readouterr()
    argv = ["calibrate", str(model), "--folder", str(root / "syn"), "--per-fold", "20", "--far", "0.05"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "200 genuine + 200 impostor pairs" in out and "seed 0, 20 per fold" in out
    again = calibrate_model(str(model), folder=str(root / "syn"), far=0.05, per_fold=20)  # seeded
    other = calibrate_model(str(model), folder=str(root / "syn"), far=0.05, per_fold=20, seed=1)
    from faceforge.deploy.calibration import stored_calibration

    assert stored_calibration(model)["threshold"] == other["threshold"] != again["threshold"]
    assert main([*argv[:-1], "0.01"]) == 2 and "refused" in capsys.readouterr().err
