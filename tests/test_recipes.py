"""Peer recipes: each ``configs/<source>_*.yaml`` holds its source's values, option for option.

The expected values are the peers' own config files (cited at the top of each recipe); the test
also builds each recipe's margin and checks its gradient form, and trains each for two steps on a
tiny dataset (data and backbone overridden) so that every key is one the engine accepts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from faceforge.config import load_config
from faceforge.models import build_margin
from faceforge.models.heads.combined import Combined
from tiny_data import write_random_packed

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# per recipe: the cited source file and the values that differ between the arcface_torch configs
# (the shared ones, s = 64, poly power 1, clip 5 on the backbone, fp16, are checked for all)
ARCFACE_TORCH = {
    "arcface_torch_ms1mv3_mbf": dict(
        source="configs/ms1mv3_mbf.py", backbone="mbf", margin=(1.0, 0.5, 0.0), lr=0.1, warmup=0,
        wd=1e-4, batch=128, rate=1.0, epochs=40,
    ),
    "arcface_torch_ms1mv3_r50": dict(
        source="configs/ms1mv3_r50.py", backbone="iresnet50", margin=(1.0, 0.5, 0.0), lr=0.2, warmup=2,
        wd=5e-4, batch=128, rate=1.0, epochs=25,
    ),
    "arcface_torch_glint360k_r50": dict(
        source="configs/glint360k_r50.py", backbone="iresnet50", margin=(1.0, 0.0, 0.4), lr=0.1, warmup=0,
        wd=1e-4, batch=128, rate=0.1, epochs=20,
    ),
    "arcface_torch_webface42m_r50": dict(
        source="configs/wf42m_pfc02_8gpus_r50_bs4k.py", backbone="iresnet50", margin=(1.0, 0.0, 0.4),
        lr=0.4, warmup=2, wd=5e-4, batch=512, rate=0.2, epochs=20,
    ),
    "mbf_arcface_partialfc": dict(
        source="configs/ms1mv3_mbf.py", backbone="mbf", margin=(1.0, 0.5, 0.0), lr=0.1, warmup=0,
        wd=1e-4, batch=512, rate=0.1, epochs=20,
    ),
}


def _load(name):
    path = CONFIGS / f"{name}.yaml"
    return path.read_text(), load_config(path)


@pytest.mark.parametrize("name", sorted(ARCFACE_TORCH))
def test_arcface_torch_recipes_match_their_source(name):
    want = ARCFACE_TORCH[name]
    text, cfg = _load(name)
    assert want["source"] in text  # the source config is cited
    assert cfg.model.backbone == want["backbone"] and cfg.model.embedding_size == 512
    # CombinedMarginLoss(64, m1, m2, m3) with its straight-through gradient
    assert cfg.head.name == "arcface_torch"
    opts = cfg.head.options
    assert (opts["s"], (opts["m1"], opts["m2"], opts["m3"])) == (64.0, want["margin"])
    margin = build_margin(cfg.head.name, **opts)
    assert isinstance(margin, Combined) and margin.compat
    cos = torch.tensor([[0.3, -0.2, 0.9], [0.95, 0.1, -0.5]], requires_grad=True)
    margin(cos, torch.tensor([0, 2])).sum().backward()
    torch.testing.assert_close(cos.grad, torch.full_like(cos, 64.0))  # d logits / d cos = s everywhere
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", want["lr"], 0.9, want["wd"])
    assert not o.no_decay_norm  # train_v2: one weight decay for every parameter
    assert (o.schedule, o.power, o.warmup_epochs) == ("poly", 1.0, want["warmup"])  # PolynomialLRWarmup
    assert (o.grad_clip, o.grad_clip_scope) == (5.0, "backbone")  # clip_grad_norm_(backbone, 5)
    assert cfg.data.batch_size == want["batch"] and cfg.data.flip
    assert cfg.train.options["sample_rate"] == want["rate"]
    assert cfg.train.epochs == want["epochs"] and cfg.train.precision == "fp16"
    assert cfg.train.mode == "conventional"


def test_facex_zoo_mobilefacenet_arcface_matches_its_source():
    text, cfg = _load("facex_zoo_mobilefacenet_arcface")
    assert "training_mode/conventional_training/train.py" in text and "head_conf.yaml" in text
    assert cfg.model.backbone == "mobilefacenet" and cfg.model.embedding_size == 512
    assert cfg.head.name == "arcface"
    assert cfg.head.options == {"s": 32.0, "m": 0.35, "fallback": "cos"}  # scale 32, margin_arc .35, am 0
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.no_decay_norm) == ("sgd", 0.1, 0.9, 1e-4, False)
    assert (o.schedule, o.lr_steps, o.gamma, o.warmup_epochs) == ("step", [10, 13, 16], 0.1, 0)
    assert o.grad_clip == 0
    assert cfg.data.batch_size == 512 and cfg.train.epochs == 18 and cfg.train.precision == "fp32"
    assert cfg.train.options.get("sample_rate", 1.0) == 1.0


def test_facex_zoo_semi_siamese_matches_its_source():
    text, cfg = _load("facex_zoo_semi_siamese")
    assert "training_mode/semi-siamese_training/train.py" in text
    assert cfg.train.mode == "semi_siamese" and cfg.model.backbone == "mobilefacenet"
    assert cfg.head.name == "cosface" and cfg.head.options == {"s": 32.0, "m": 0.35}  # am_softmax
    assert cfg.train.options == {"queue_size": 16384, "momentum": 0.999}
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.no_decay_norm) == ("sgd", 0.1, 0.9, 5e-4, False)
    assert (o.schedule, o.lr_steps, o.gamma, o.warmup_epochs) == ("step", [150, 200, 230], 0.1, 0)
    assert o.grad_clip == 0
    assert cfg.data.batch_size == 1024  # 512 identities x 2 views
    assert cfg.train.epochs == 250 and cfg.train.precision == "fp32"


@pytest.fixture(scope="module")
def tiny_packed(tmp_path_factory):
    return write_random_packed(tmp_path_factory.mktemp("recipes") / "tiny.ffpk", 32, 16)


RECIPES = sorted([*ARCFACE_TORCH, "facex_zoo_mobilefacenet_arcface", "facex_zoo_semi_siamese"])


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_trains(name, tiny_packed, tmp_path):
    from faceforge.train.engine import Trainer, param_groups

    tiny = [f"data.train=packed:{tiny_packed}", "model.backbone=mobilefacenet_tiny",
            "model.embedding_size=16", "data.batch_size=8", "data.workers=0", "train.max_steps=2",
            "train.precision=fp32", f"output={tmp_path}"]
    if "siamese" in name:
        tiny.append("train.queue_size=64")
    cfg = load_config(CONFIGS / f"{name}.yaml", tiny)
    trainer = Trainer(cfg, quiet=True)
    # what weight decay applies to: every parameter, as the peers' single SGD group
    groups = param_groups(trainer.backbone, trainer.mode, cfg)
    assert {g["weight_decay"] for g in groups} == {cfg.optim.weight_decay}
    if cfg.optim.grad_clip_scope == "backbone":
        assert {id(p) for p in trainer._clip_params} == {id(p) for p in trainer.backbone.parameters()}
    assert trainer.fit()["steps"] == 2
