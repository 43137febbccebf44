"""Exact resume: kill -9 mid-epoch, resume, and the loss trajectory equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from launch import torchrun
from tiny_data import logged_losses

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    sets = [
        f"data.train=folder:{data}",
        "model.backbone=mobilefacenet_tiny",
        "model.embedding_size=32",
        "data.batch_size=8",
        "train.epochs=3",
        "train.log_every=1",
        "train.save_every_steps=2",
        "train.deterministic=true",
        "optim.lr=0.05",
        "optim.warmup_epochs=0.5",
        f"output={out}",
        "head.name=cosface",
        "head.s=16",
    ]
    cmd = [sys.executable, "-m", "faceforge", "train", "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return cmd + list(extra)


# The interrupted run SIGKILLs itself at a fixed point (after step 9 is logged; the last checkpoint
# is step 8, mid-epoch 2), so the test does not depend on how fast a polling loop gets scheduled.
KILL_AT_STEP_9 = """
import os, signal, sys
from faceforge.train import engine
step = engine.Trainer._step
def killing_step(self, images, labels):
    if self.state.global_step == 9:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, images, labels)
engine.Trainer._step = killing_step
from faceforge.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill9_then_resume_matches_uninterrupted(tmp_path, tiny_folder):
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_args(tiny_folder, ref_dir), check=True, env=ENV, timeout=300)
    ref = logged_losses(ref_dir / "metrics.jsonl")
    assert len(ref) == 18  # 49 listed files (one corrupt, skipped) // 8 = 6 steps × 3 epochs

    cut = _args(tiny_folder, cut_dir)
    proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP_9, *cut[3:]], env=ENV, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    metrics = cut_dir / "metrics.jsonl"
    assert max(logged_losses(metrics)) == 9  # step 9 was logged, then lost with the process
    saved = torch.load(cut_dir / "last.ckpt", weights_only=False)["train"]["state"]
    assert saved["global_step"] == 8 and saved["step_in_epoch"] == 2
    subprocess.run(_args(tiny_folder, cut_dir, "--resume", "auto"), check=True, env=ENV, timeout=300)
    got = logged_losses(metrics)
    assert sorted(got) == sorted(ref)
    for step in ref:
        assert got[step] == ref[step], (step, got[step], ref[step])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_resume_on_a_different_world_size(tmp_path, tiny_folder):
    out = tmp_path / "ws"
    cmd = _args(tiny_folder, out, "--set", "data.batch_size=4", "--set", "train.max_steps=3")
    run = torchrun(2, cmd[1:])
    # every rank tore its process group down: no abort at interpreter exit
    assert "terminate called" not in run.stdout, run.stdout[-2000:]
    first = torch.load(out / "last.ckpt", weights_only=False)
    assert first["train"]["world_size"] == 2
    assert tuple(first["head"]["weight"].shape) == (6, 32)  # full classifier, one file
    cmd = _args(
        tiny_folder, out, "--set", "data.batch_size=8", "--set", "train.max_steps=5", "--resume", "auto"
    )
    subprocess.run(cmd, check=True, env=ENV, timeout=300)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    resume = [r for r in lines if r.get("event") == "resume"][-1]
    assert resume["saved_world_size"] == 2 and resume["world_size"] == 1
    second = torch.load(out / "last.ckpt", weights_only=False)
    assert second["train"]["state"]["global_step"] == 5
    momentum = second["train"]["optimizer"]["state"]
    assert all(torch.isfinite(t).all() for s in momentum.values() for t in s.values() if torch.is_tensor(t))
