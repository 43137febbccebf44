"""Interface test over the whole backbone registry: every entry builds, runs forward and backward.

Tiny variants (meta ``tiny=True`` or a ``_tiny`` name) and small nets run at batch 2 on CPU by
default; full-size nets above ``LIGHT_PARAMS`` are built on the meta device only (shape contract,
metadata), with their real CPU forward/backward under ``-m slow``.
"""

from __future__ import annotations

import pytest
import torch

from faceforge.models import backbone_meta, build_backbone
from faceforge.registry import BACKBONES

NAMES = BACKBONES.names()
LIGHT_PARAMS = 1_000_000
TEMPLATES = {"arcface", "sphereface"}


def _params_on_meta(name):
    with torch.device("meta"):
        return sum(p.numel() for p in build_backbone(name).parameters())


def _forward_backward(name):
    torch.manual_seed(0)
    meta = backbone_meta(name)
    model = build_backbone(name).train()
    h, w = meta["input_size"]
    x = torch.randn(2, 3, h, w, requires_grad=True)
    y = model(x)
    assert y.shape == (2, model.embedding_size), name
    assert torch.isfinite(y).all(), name
    y.pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), name
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    model.eval()
    with torch.no_grad():
        assert model(x[:1].detach()).shape == (1, model.embedding_size)


@pytest.mark.parametrize("name", NAMES)
def test_registration_contract(name):
    meta = backbone_meta(name)
    assert len(meta["input_size"]) == 2 and all(int(s) > 0 for s in meta["input_size"])
    assert meta["template"] in TEMPLATES, (name, meta["template"])
    assert 0 <= meta["mean"] <= 1 and meta["std"] > 0
    with torch.device("meta"):
        model = build_backbone(name)
        h, w = meta["input_size"]
        y = model(torch.zeros(2, 3, h, w))
    assert isinstance(model.embedding_size, int) and y.shape == (2, model.embedding_size)
    assert model.meta["backbone"] == name


@pytest.mark.parametrize("name", NAMES)
def test_light_forward_backward(name):
    if _params_on_meta(name) > LIGHT_PARAMS:
        pytest.skip(f"{name} is large: covered by its light twin (tiny variant) and -m slow")
    _forward_backward(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_forward_backward(name):
    _forward_backward(name)


def test_every_family_has_a_light_variant():
    for name in ("mobilefacenet_tiny", "iresnet_tiny", "mobilenet_v1_shallow"):
        assert _params_on_meta(name) <= LIGHT_PARAMS, name


def test_mobilenet_v1_options():
    m = build_backbone("mobilenet_v1", alpha=0.3, shallow=True, embedding_size=176, input_size=(160, 160))
    assert m(torch.randn(2, 3, 160, 160)).shape == (2, 176)
    widths = [mod.out_channels for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.groups == 1]
    assert widths == [10, 19, 38, 38, 77, 77, 154, 154, 307]  # 32->64->128x2->256x2->512x2->1024 at 0.3
    full = build_backbone("mobilenet_v1")
    assert sum(1 for mod in full.modules() if isinstance(mod, torch.nn.Conv2d)) == 27  # 1 + 13 x (dw + pw)
