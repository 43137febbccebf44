"""End-to-end smoke tests: every training mode through the CLI on synthetic faces, and the
one-line errors a user gets for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faceforge.cli.main import main

TINY = [
    "--set",
    "model.backbone=mobilefacenet_tiny",
    "--set",
    "model.embedding_size=32",
    "--set",
    "train.log_every=1",
    "--set",
    "optim.lr=0.05",
    "--quiet",
]


def _train(tmp_path: Path, name: str, *sets: str) -> dict:
    out = tmp_path / name
    args = ["train", *TINY, "--set", f"output={out}"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"out": out, "lines": [x for x in lines if "loss_total" in x]}


def test_conventional_with_validation_and_checkpoint(tmp_path):
    from faceforge.data.synthetic import write_dataset, write_pairs

    test = tmp_path / "test"
    write_dataset(test, 20, 4, offset=50_000)
    write_pairs(test, 20, 4, folds=2, offset=50_000)
    r = _train(
        tmp_path,
        "conv",
        "data.train=synthetic:12x4",
        "data.batch_size=16",
        "train.epochs=2",
        f"data.val=pairs:{test / 'pairs.txt'}",
        "train.keep=best",
        "head.name=cosface",
    )
    assert len(r["lines"]) == 6 and all(x["loss_total"] > 0 for x in r["lines"])
    ckpt = torch.load(r["out"] / "last.ckpt", weights_only=False)
    assert ckpt["head"]["weight"].shape == (12, 32)
    assert 0.0 <= ckpt["metrics"]["val_accuracy"] <= 1.0
    assert (r["out"] / "best.ckpt").exists()


@pytest.mark.parametrize(
    "mode_sets",
    [
        ["train.mode=semi_siamese", "train.queue_size=64", "data.train=synthetic:16x2"],
        ["train.mode=triplet", "train.k=4", "data.train=synthetic:8x6"],
        ["train.mode=upper_half", "model.input_size=[56,112]", "data.train=synthetic:8x4"],
        ["train.sample_rate=0.5", "data.train=synthetic:10x4", "head.name=magface"],
        [
            "precision=bf16",
            "data.train=synthetic:8x4",
            "optim.name=adamw",
            "optim.lr=0.001",
            "optim.schedule=poly",
            "train.grad_accum=2",
            "optim.grad_clip=5.0",
        ],
    ],
    ids=["semi_siamese", "triplet", "upper_half", "partial_fc_magface", "bf16_adamw_accum"],
)
def test_modes_train_through_cli(tmp_path, mode_sets):
    sets = [s if "." in s.split("=")[0] else f"train.{s}" for s in mode_sets]
    r = _train(tmp_path, "m", "data.batch_size=16", "train.max_steps=3", *sets)
    assert len(r["lines"]) == 3
    assert all(torch.isfinite(torch.tensor(x["loss_total"])) for x in r["lines"])


def test_upper_half_checkpoint_embeds_full_crops(tmp_path):
    from faceforge.embed.extract import embed_images
    from faceforge.embed.loading import load_embedder

    r = _train(
        tmp_path,
        "uh",
        "train.mode=upper_half",
        "model.input_size=[56,112]",
        "data.train=synthetic:8x4",
        "data.batch_size=16",
        "train.max_steps=1",
    )
    emb = load_embedder(r["out"] / "last.ckpt")
    assert emb.meta.template == "arcface_upper_half" and tuple(emb.meta.input_size) == (56, 112)
    from faceforge.data.dataset import open_source

    ds = open_source("synthetic:2x2")
    feats = embed_images(emb, [ds.read(i) for i in range(4)])
    assert feats.features.shape == (4, 32) and feats.valid.all()


def test_finetune_from_checkpoint_and_repeat(tmp_path):
    base = _train(tmp_path, "base", "data.train=synthetic:8x4", "data.batch_size=16", "train.max_steps=2")
    out = tmp_path / "ft"
    args = [
        "train",
        *TINY,
        "--set",
        f"output={out}",
        "--set",
        "data.train=synthetic:8x4",
        "--set",
        "data.batch_size=16",
        "--set",
        "train.max_steps=2",
        "--set",
        f"model.init={base['out'] / 'last.ckpt'}",
        "--set",
        "optim.backbone_lr_mult=0.1",
        "--set",
        "head.name=softmax",
        "--repeat",
        "2",
    ]
    assert main(args) == 0
    summary = json.loads((out / "repeat_summary.json").read_text())
    assert summary["loss_total"]["n"] == 2


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--set", "data.train=folder:/nonexistent/faces"], "/nonexistent/faces"),
        (["--set", "model.backbone=mobilefacenett"], "mobilefacenet"),
        (["--set", "head.name=arcfase"], "arcface"),
        (["--set", "optim.lrr=0.1"], "optim.lrr"),
        (["--set", "optim.lr=fast"], "optim.lr"),
        (["--set", "data.train=synthetic:1x5"], "single identity"),
        (["--set", "data.train=bogus:x"], "bogus"),
        (["--set", "head.mm=0.3"], "head.mm"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, culprit):
    proc = subprocess.run(
        [sys.executable, "-m", "faceforge", "train", "--set", f"output={tmp_path}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert culprit in err


def test_bad_yaml_key_names_file_and_closest(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  momentun: 0.9\n")
    proc = subprocess.run(
        [sys.executable, "-m", "faceforge", "train", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and "momentum" in proc.stderr and "Traceback" not in proc.stderr


def test_every_command_has_help():
    from faceforge.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.format_help().strip(), name
        nested = [a for a in p._actions if getattr(a, "choices", None) and a.dest.endswith("_command")]
        for group in nested:
            for sub_name, sp in group.choices.items():
                assert sp.format_help().strip(), f"{name} {sub_name}"
