"""The training step never waits for the device: values are read back only at log steps.

Every device->host read of a tensor goes through ``item``, ``tolist``, ``__float__``, ``__int__``
or ``__bool__`` (an ``if tensor:``); counting those calls over 40 CPU steps with ``log_every=10``
bounds what a CUDA run would stall on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceforge.config import load_config
from faceforge.train.engine import Trainer, TrainingDiverged
from tiny_data import write_random_packed

READS = ("item", "tolist", "__float__", "__int__", "__bool__")


def _cfg(tmp_path, *extra):
    return load_config(
        None,
        [
            f"data.train=packed:{write_random_packed(tmp_path / 'd.ffpk', 80, 8)}",
            "model.backbone=mobilefacenet_tiny",
            "model.embedding_size=16",
            "data.batch_size=2",
            "train.epochs=1",
            "train.max_steps=40",
            "train.log_every=10",
            "optim.grad_clip=5",
            f"output={tmp_path / 'out'}",
            *extra,
        ],
    )


class _CountReads:
    def __init__(self, monkeypatch):
        self.calls = {name: 0 for name in READS}
        for name in READS:
            original = getattr(torch.Tensor, name)

            def counted(t, *a, _name=name, _original=original, **k):
                self.calls[_name] += 1
                return _original(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def test_at_most_half_a_read_per_step(tmp_path, monkeypatch):
    trainer = Trainer(_cfg(tmp_path), quiet=True)
    reads = _CountReads(monkeypatch)
    result = trainer.fit()
    monkeypatch.undo()
    assert result["steps"] == 40
    assert reads.total / 40 <= 0.5, reads.calls
    lines = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20, 30, 40]
    assert all(np.isfinite(r["loss_total"]) for r in lines)


def test_non_finite_loss_stops_at_the_log_step_keeping_the_good_checkpoint(tmp_path):
    trainer = Trainer(_cfg(tmp_path, "train.save_every_steps=5", "optim.grad_clip=0"), quiet=True)
    step = trainer._step

    def poisoned(images, labels):
        out = step(images, labels)
        if trainer.state.global_step == 6:  # the 7th step's loss is NaN
            out["loss_total"] = out["loss_total"] * float("nan")
        return out

    trainer._step = poisoned
    with pytest.raises(TrainingDiverged, match="loss became nan at step 7"):
        trainer.fit()
    saved = torch.load(tmp_path / "out" / "last.ckpt", weights_only=False)
    assert saved["train"]["state"]["global_step"] == 5  # step 10's checkpoint was never written


def test_time_budget_is_decided_at_the_log_step(tmp_path):
    # 6 ms of budget: spent before the first step ends, acted on at the first log record
    result = Trainer(_cfg(tmp_path, "train.max_minutes=0.0001", "train.max_steps=0"), quiet=True).fit()
    assert result["steps"] == 10
    saved = torch.load(tmp_path / "out" / "last.ckpt", weights_only=False)
    assert saved["train"]["state"]["global_step"] == 10
