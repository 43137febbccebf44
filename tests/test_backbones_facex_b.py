"""FaceX-Zoo model zoo, part B: ResNet-IR/IRSE, HRNet, AttentionNet-56/92, ResNeSt50.

Reference tests against ``../shared/reference/facex_<name>_*`` (README sections 1 and 5): the
state_dict layout equals the peer's manifest, and after loading the deterministic
``reference_init`` weights the eval-mode output equals the peer's within ``2e-5 * max|ref|``.
Layout checks build on the meta device (no memory, no init) and always run; the two largest
forward checks are ``slow`` (``pytest -m slow``) and their families keep a default-run twin.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faceforge.models import backbone_meta, build_backbone
from reference_init import (
    assert_close_to_reference,
    load_manifest,
    load_output,
    reference_init,
    reference_init_sha256,
    reference_input,
)

# faceforge name -> (fixture, published params, published MACs)
MODELS = {
    "resnet50_ir": ("facex_resnet50_ir", 43.57e6, 6.31e9),
    "resnet152_irse": ("facex_resnet152_irse", 71.14e6, 12.33e9),
    "hrnet": ("facex_hrnet", 70.63e6, 4.35e9),
    "attention56": ("facex_attention56", 98.96e6, 6.34e9),
    "attention92": ("facex_attention92", 134.56e6, 10.62e9),
    "resnest50": ("facex_resnest50", 76.79e6, 5.55e9),
}
SLOW = {"resnet152_irse", "attention92"}  # twins in the default run: resnet50_ir, attention56
TINY = ["resnet_ir_tiny", "hrnet_tiny", "attention_tiny", "resnest_tiny"]


def _meta_model(name: str):
    with torch.device("meta"):
        return build_backbone(name)


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_layout_equals_manifest(name):
    manifest = load_manifest(MODELS[name][0])
    sd = _meta_model(name).state_dict()
    assert len(sd) == manifest["num_entries"]
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    want = [(e["key"], e["shape"], e["dtype"]) for e in manifest["entries"]]
    assert got == want


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_equals_manifest(name):
    model = _meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == load_manifest(MODELS[name][0])["num_parameters"]


@pytest.mark.parametrize("name", list(MODELS))
def test_registration_meta(name):
    _, params, macs = MODELS[name]
    meta = backbone_meta(name)
    assert meta["input_size"] == (112, 112) and meta["template"] == "arcface"
    assert meta["published_params"] == params and meta["published_macs"] == macs
    model = _meta_model(name)
    assert model.embedding_size == 512


def _check_fixture(name: str) -> None:
    fixture = MODELS[name][0]
    manifest = load_manifest(fixture)
    model = build_backbone(name)
    init = reference_init(model.state_dict())
    assert reference_init_sha256(init) == manifest["reference_init_sha256"]
    model.load_state_dict(init, strict=True)
    model.eval()
    with torch.no_grad():
        y = model(reference_input())
    ref = load_output(fixture)["embeddings_fp32"]
    if name == "resnest50":
        # FaceX-Zoo's ResNeSt.forward ends in l2_norm, so its stored output is unit-norm (unlike
        # every other fixture); faceforge backbones return the raw embedding.
        assert torch.allclose(ref.norm(dim=1), torch.ones(len(ref)), atol=1e-5)
        y = F.normalize(y, dim=1)
    assert_close_to_reference(y, ref)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODELS],
)
def test_reference_init_output_matches_peer(name):
    _check_fixture(name)


@pytest.mark.parametrize("name, unused", [("attention56", 29), ("attention92", 50)])
def test_attention_keeps_never_run_shortcuts(name, unused):
    # README section 5: every ResidualBlock owns conv4; 29/50 of them never run (identity shortcut)
    from faceforge.models.backbones.attention import ResidualBlock

    blocks = [m for m in _meta_model(name).modules() if isinstance(m, ResidualBlock)]
    assert sum(not b.project for b in blocks) == unused


def test_resnet_ir_depth_is_validated():
    from faceforge.errors import UserError
    from faceforge.models.backbones.resnet_ir import ResNetIR, _resnet

    with pytest.raises(UserError, match="model.depth"):
        _resnet(34, False, 512, 0.4)
    with pytest.raises(UserError, match="model.units"):
        ResNetIR((1, 1), (8, 16, 32))


@pytest.mark.parametrize("name", TINY)
def test_tiny_variant_forward_backward(name):
    torch.manual_seed(0)
    model = build_backbone(name, embedding_size=16)
    assert model.embedding_size == 16 and model.meta["input_size"] == (112, 112)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    model.train()
    y = model(torch.randn(2, 3, 112, 112))
    assert y.shape == (2, 16) and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).shape == (1, 16)


# THOP 0.0.31 MACs from facex_backbone_complexity.json; faceforge.models.complexity reproduces them
# exactly where no pooling/upsampling rule differs (docs/models_facex_b.md explains the others)
THOP_0031_MACS = {"resnet50_ir": 6_307_174_400, "resnet152_irse": 12_328_391_360, "hrnet": 4_348_472_900}


@pytest.mark.parametrize("name", list(MODELS))
def test_complexity_near_published(name):
    complexity = pytest.importorskip("faceforge.models.complexity")
    c = complexity.backbone_complexity(name)
    assert c.params == load_manifest(MODELS[name][0])["num_parameters"]
    _, params, macs = MODELS[name]
    assert abs(c.params - params) <= 0.02 * params
    assert abs(c.macs - macs) <= 0.02 * macs
    if name in THOP_0031_MACS:
        assert c.macs == THOP_0031_MACS[name]


@pytest.mark.slow  # lighter twin: the fp32 check above
@pytest.mark.parametrize("name", list(MODELS))
def test_reference_init_output_matches_peer_fp64(name):
    # README: our fp64 run against the peer's fp64 run within 1e-10 * max|ref| (observed: identical)
    fixture = MODELS[name][0]
    model = build_backbone(name)
    model.load_state_dict(reference_init(model.state_dict()), strict=True)
    model.eval().double()
    with torch.no_grad():
        y = model(reference_input().double())
    if name == "resnest50":
        y = F.normalize(y, dim=1)
    assert_close_to_reference(y, load_output(fixture)["embeddings_fp64"], rel=1e-10)
