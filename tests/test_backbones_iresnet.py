"""IResNet in arcface_torch layout against the peer fixtures (../shared/reference)."""

from __future__ import annotations

import pytest
import torch

from faceforge.models import build_backbone
from reference_init import (
    assert_close_to_reference,
    build_with_reference_init,
    load_manifest,
    load_output,
    reference_init_sha256,
    reference_input,
)


def _check(name: str, fixture: str) -> None:
    manifest = load_manifest(fixture)
    model, init = build_with_reference_init(name)
    sd = model.state_dict()
    # identical keys, order and shapes: a faceforge state_dict loads into arcface_torch unchanged
    assert list(sd) == [e["key"] for e in manifest["entries"]]
    assert [tuple(t.shape) for t in sd.values()] == [tuple(e["shape"]) for e in manifest["entries"]]
    assert reference_init_sha256(init) == manifest["reference_init_sha256"]
    with torch.no_grad():
        y = model(reference_input())
    assert_close_to_reference(y, load_output(fixture)["embeddings_fp32"])


def test_iresnet18_matches_arcface_r18():
    _check("iresnet18", "arcface_r18")


def test_iresnet50_matches_arcface_r50():
    _check("iresnet50", "arcface_r50")


@pytest.mark.slow
def test_iresnet100_matches_arcface_r100():
    _check("iresnet100", "arcface_r100")


def test_iresnet100_layout_matches_manifest():
    """Light twin of the slow r100 test: layout only, built on the meta device."""
    manifest = load_manifest("arcface_r100")
    with torch.device("meta"):
        sd = build_backbone("iresnet100").state_dict()
    assert [(k, tuple(t.shape)) for k, t in sd.items()] == [
        (e["key"], tuple(e["shape"])) for e in manifest["entries"]
    ]


def test_iresnet_features_bn_weight_frozen():
    model = build_backbone("iresnet_tiny")
    assert not model.features.weight.requires_grad
    assert torch.all(model.features.weight == 1)


@pytest.mark.slow
def test_iresnet_fp64_matches_fp64_reference():
    manifest = load_manifest("arcface_r18")
    model, _ = build_with_reference_init("iresnet18")
    model.double()
    with torch.no_grad():
        y = model(reference_input().double())
    ref = load_output("arcface_r18")["embeddings_fp64"]
    assert manifest["num_entries"] == len(model.state_dict())
    assert (y - ref).abs().max().item() <= 1e-10 * ref.abs().max().item()
