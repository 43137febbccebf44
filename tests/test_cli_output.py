"""The smaller newcomer frictions of issue 25 (item 6): compact ``detect`` JSON, counted nouns,
plot legends named after models, whole-number CMC ranks, a bare path as ``data.train``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from faceforge.cli._common import count
from faceforge.cli.main import main


def test_detect_prints_one_compact_object_per_image(capsys, tmp_path):
    pytest.importorskip("onnxruntime", reason="face detection needs onnxruntime")
    photos = shared_path("data", "photos")
    images = [str(photos / "t1.jpg"), str(photos / "biden.jpg")]
    assert main(["detect", *images]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # before: json.dumps(indent=1), every number of every box on a line of its own
    assert len(lines) == 2
    records = [json.loads(x) for x in lines]
    assert [r["file"] for r in records] == images
    assert len(records[0]["faces"]) == 6
    assert main(["detect", *images, "--output", str(tmp_path / "d.json")]) == 0
    assert capsys.readouterr().out.startswith("7 faces in 2 images -> ")
    text = (tmp_path / "d.json").read_text()
    assert len(text.splitlines()) == 4 and len(json.loads(text)) == 2  # [, an image per line, ]
    assert main(["detect", images[1], "--output", str(tmp_path / "e.json")]) == 0
    assert capsys.readouterr().out.startswith("1 face in 1 image -> ")


def test_count_says_one_image_not_one_images():
    assert count(1, "image") == "1 image" and count(0, "image") == "0 images"
    assert count(2, "identity", "identities") == "2 identities" and count(1, "identity", "identities") == \
        "1 identity"


def test_gallery_remove_counts_in_the_singular(tmp_path, tiny_mfn_ckpt, capsys):
    import cv2

    from faceforge.data.synthetic import SyntheticFaces

    img = tmp_path / "x.png"
    cv2.imwrite(str(img), SyntheticFaces(seed=1).render(0, 0)[0][:, :, ::-1])
    g = str(tmp_path / "g")
    assert main(["gallery", "create", g, "--model", str(tiny_mfn_ckpt)]) == 0
    assert main(["gallery", "enroll", g, str(img), "--identity", "alice", "--model", str(tiny_mfn_ckpt),
                 "--aligned", "--quiet"]) == 0
    assert "enrolled 1 image of 1 identity;" in capsys.readouterr().out
    assert main(["gallery", "remove", g, "alice"]) == 0
    assert capsys.readouterr().out.strip() == "removed 'alice' (1 image)"


def _captured(monkeypatch):
    from faceforge.eval import report

    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.append(fig) or path)
    return figures


def test_cmc_ranks_are_whole_numbers(monkeypatch):
    from faceforge.eval.report import plot_cmc

    figures = _captured(monkeypatch)
    plot_cmc({"a": np.linspace(0.5, 1.0, 10)}, "unused.png")
    ticks = [t for t in figures[0].axes[0].get_xticks() if 1 <= t <= 10]
    assert ticks and all(float(t).is_integer() for t in ticks)  # before: 2.5, 5.0, 7.5, 10.0


def test_legends_name_the_model_and_its_file(monkeypatch, tmp_path, tiny_mfn_ckpt):
    import shutil

    from faceforge.data.synthetic import write_dataset, write_pairs
    from faceforge.embed.loading import load_embedder
    from faceforge.eval.report import model_label
    from faceforge.eval.verification import evaluate_pairs, write_result

    ckpt = tmp_path / "run_a" / "last.ckpt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_mfn_ckpt, ckpt)
    embedder = load_embedder(str(ckpt))
    assert model_label(embedder) == "mobilefacenet_tiny (run_a/last.ckpt)"  # before: "last"
    write_dataset(tmp_path / "p", 4, 2, offset=70_000)
    write_pairs(tmp_path / "p", 4, 2, folds=2, offset=70_000)
    res = evaluate_pairs(embedder, f"pairs:{tmp_path / 'p' / 'pairs.txt'}")
    figures = _captured(monkeypatch)
    write_result(res, tmp_path / "out")
    legend = figures[0].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["mobilefacenet_tiny (run_a/last.ckpt)"]


def test_data_train_takes_a_bare_path_as_data_stats_does(tmp_path, tiny_folder, capsys):
    # before: "data source '...' has no prefix", while `data stats DIR` took the same path
    sets = [f"data.train={tiny_folder}", "model.backbone=mobilefacenet_tiny", "model.embedding_size=16",
            "data.batch_size=8", "train.max_steps=1", f"output={tmp_path / 'run'}"]
    assert main(["train", "--quiet", *(a for s in sets for a in ("--set", s))]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1
    assert main(["data", "stats", str(tiny_folder)]) == 0
