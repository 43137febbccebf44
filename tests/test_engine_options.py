"""Engine options keep exact resume; the device feed equals the loader's batches, one ahead."""

from __future__ import annotations

import json

import pytest
import torch

from faceforge.config import load_config
from faceforge.data.batches import BatchPlan, DeviceBatches, epoch_batches, per_channel, to_model_input
from faceforge.data.packed import PackedDataset
from faceforge.train.engine import Trainer
from tiny_data import write_random_packed


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return write_random_packed(tmp_path_factory.mktemp("opts") / "d.ffpk", 48, 6, seed=3)


def _losses(out) -> dict[int, float]:
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_total"] for r in recs if "loss_total" in r}


@pytest.mark.parametrize(
    "options",
    [
        ["train.channels_last=true", "optim.grad_clip=1", "optim.grad_clip_scope=backbone"],
        ["train.precision=bf16", "train.grad_accum=2", "optim.no_decay_norm=false"],
    ],
    ids=["channels_last+clip_backbone", "bf16+accum"],
)
def test_resume_is_exact_under_engine_options(tmp_path, packed, options):
    def cfg(out, steps, *extra):
        return load_config(None, [
            f"data.train=packed:{packed}", "model.backbone=mobilefacenet_tiny", "model.embedding_size=16",
            "data.batch_size=4", "train.epochs=1", f"train.max_steps={steps}", "train.log_every=1",
            "train.deterministic=true", "optim.schedule=step", "head.name=cosface", "head.s=16",
            f"output={out}", *options, *extra,
        ])

    Trainer(cfg(tmp_path / "ref", 6), quiet=True).fit()
    ref = _losses(tmp_path / "ref")
    Trainer(cfg(tmp_path / "cut", 3), quiet=True).fit()  # stops at step 3 and saves there
    Trainer(cfg(tmp_path / "cut", 6), resume="auto", quiet=True).fit()
    got = _losses(tmp_path / "cut")
    assert sorted(got) == sorted(ref) == [1, 2, 3, 4, 5, 6]
    assert got == ref


@pytest.mark.parametrize("channels_last", [False, True])
def test_device_feed_is_the_loader_batches_converted(packed, channels_last):
    ds = PackedDataset(packed)
    plan = BatchPlan(len(ds), 8, seed=5)
    mean, std = (0.5, 0.4, 0.3), (0.5, 0.6, 0.7)
    scale = 1.0 / (255.0 * per_channel(std, "std"))
    shift = -per_channel(mean, "mean") / per_channel(std, "std")
    want = [(s, to_model_input(x, f, scale, shift), y) for s, x, f, y, _ in epoch_batches(ds, plan, 1)]
    feed = DeviceBatches(epoch_batches(ds, plan, 1), torch.device("cpu"), mean, std, channels_last)
    got = list(feed)
    feed.close()
    assert [s for s, *_ in got] == [s for s, *_ in want] == list(range(6))
    for (_, x, y, skipped), (_, wx, wy) in zip(got, want):
        assert skipped == 0 and torch.equal(y, wy) and torch.equal(x, wx)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=layout)


def test_head_warmup_freezes_the_backbone_then_lets_it_learn(tmp_path, packed):
    def run(warmup_epochs: float):
        cfg = load_config(None, [
            f"data.train=packed:{packed}", "model.backbone=mobilefacenet_tiny", "model.embedding_size=16",
            "data.batch_size=4", "train.epochs=1", "train.max_steps=3", "train.deterministic=true",
            f"optim.head_warmup_epochs={warmup_epochs}", f"output={tmp_path / str(warmup_epochs)}"])
        trainer = Trainer(cfg, quiet=True)
        before = {k: v.clone() for k, v in trainer.backbone.named_parameters()}
        head = [p.detach().clone() for p in trainer.mode.parameters()]
        trainer.fit()
        moved = [k for k, p in trainer.backbone.named_parameters() if not torch.equal(before[k], p)]
        head_moved = any(not torch.equal(a, b) for a, b in zip(head, trainer.mode.parameters()))
        return moved, head_moved

    frozen, head_moved = run(1.0)  # 12 steps per epoch: the 3 steps are all warm-up
    assert frozen == [] and head_moved
    free, _ = run(0.0)
    assert free
