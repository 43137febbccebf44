"""MobileFaceNet layouts against FaceX-Zoo and arcface_torch fixtures (../shared/reference)."""

from __future__ import annotations

import torch

from faceforge.models import build_backbone
from reference_init import (
    assert_close_to_reference,
    load_manifest,
    load_output,
    reference_init,
    reference_init_sha256,
    reference_input,
    require_reference,
)


def _check_layout(model, manifest):
    sd = model.state_dict()
    assert list(sd) == [e["key"] for e in manifest["entries"]]
    for e in manifest["entries"]:
        assert tuple(sd[e["key"]].shape) == tuple(e["shape"]), e["key"]
    init = reference_init(sd)
    assert reference_init_sha256(init) == manifest["reference_init_sha256"]
    return init


def _check_reference(name, fixture):
    model = build_backbone(name)
    init = _check_layout(model, load_manifest(fixture))
    model.load_state_dict(init, strict=True)
    model.eval()
    with torch.no_grad():
        y = model(reference_input())
    assert_close_to_reference(y, load_output(fixture)["embeddings_fp32"])


def test_facex_mobilefacenet_matches_reference():
    _check_reference("mobilefacenet", "facex_mobilefacenet")


def test_arcface_mbf_matches_reference():
    _check_reference("mbf", "arcface_mbf")


def test_arcface_mbf_random_init_loads_strict():
    ref = require_reference("arcface_mbf_random_init.pt") / "arcface_mbf_random_init.pt"
    blob = torch.load(ref, weights_only=True)
    model = build_backbone("mbf")
    model.load_state_dict(blob["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        y = model(reference_input())
    assert_close_to_reference(y, blob["embeddings_fp32"])


def test_mbf_grouped_second_conv_and_fixed_expansions():
    sd = build_backbone("mbf").state_dict()
    assert tuple(sd["layers.1.layers.0.weight"].shape) == (128, 2, 3, 3)  # 64 groups on 128 channels
    assert tuple(sd["layers.6.layers.0.layers.0.weight"].shape) == (512, 256, 1, 1)
    assert tuple(sd["features.layers.0.layers.0.weight"].shape) == (512, 1, 7, 7)


def test_mobilefacenet_tiny_is_small_and_trains():
    torch.manual_seed(0)
    model = build_backbone("mobilefacenet_tiny", embedding_size=32)
    assert sum(p.numel() for p in model.parameters()) < 100_000
    assert model.embedding_size == 32 and model.meta["input_size"] == (112, 112)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3, 112, 112)
    target = torch.randn(4, 32)
    losses = []
    for _ in range(5):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
