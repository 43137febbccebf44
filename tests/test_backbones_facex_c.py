"""FaceX-Zoo model zoo, part C: EfficientNet-B0, TF-NAS-A, GhostNet, ReXNet 1.0, LightCNN-29, RepVGG, Swin.

Reference tests load the peers' deterministic ``reference_init`` weights (../shared/reference,
README sections 1 and 5) and compare with FaceX-Zoo's stored eval-mode embeddings; interface tests
run the ``*_tiny`` variants forward and backward.
"""

from __future__ import annotations

import json

import pytest
import torch

from faceforge.models import backbone_meta, build_backbone
from reference_init import (
    assert_close_to_reference,
    load_manifest,
    load_output,
    reference_init,
    reference_init_sha256,
    reference_input,
    require_reference,
)

# faceforge name -> peer fixture (None: counts only, README section 5)
FIXTURES = {
    "efficientnet_b0": "facex_efficientnet_b0",
    "ghostnet": "facex_ghostnet",
    "tf_nas_a": "facex_tf_nas_a",
    "rexnet_1_0": "facex_rexnet_1_0",
    "lightcnn29": "facex_lightcnn29",
    "repvgg_b1": "facex_repvgg_b1",
    "swin_s": "facex_swin_s",
}
COUNTS_ONLY = {"repvgg_a0": "facex_repvgg_a0", "repvgg_b0": "facex_repvgg_b0", "swin_t": "facex_swin_t"}
SLOW = {"repvgg_b1", "swin_s"}  # 107M / 68M params: seconds to init and run on 2 cores
TINY = ["efficientnet_tiny", "ghostnet_tiny", "tf_nas_tiny", "rexnet_tiny", "lightcnn_tiny", "repvgg_tiny",
        "swin_tiny"]
# FaceX-Zoo state_dict entries that never run (EfficientNet's ImageNet classifier)
NEVER_RUN = {"_fc.weight", "_fc.bias"}
# buffers the rule leaves as the model builds them (README section 5)
KEPT = ("relative_position_index", "attn_mask")


def _meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_backbone(name)


def _complexity() -> dict:
    ref = require_reference("facex_backbone_complexity.json")
    return json.loads((ref / "facex_backbone_complexity.json").read_text())["backbones"]


def _reference_weights(sd: dict) -> dict:
    init = reference_init({k: v for k, v in sd.items() if not k.endswith(KEPT)})
    return {k: (sd[k] if k.endswith(KEPT) else init[k]) for k in sd}


def _input_for(fixture: str) -> torch.Tensor:
    x = reference_input()
    if fixture == "facex_swin_s":  # FaceX-Zoo's Swin runs on 224x224: pixel repetition (README 5)
        x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return x


@pytest.mark.parametrize("name", list(FIXTURES))
def test_state_dict_layout_equals_manifest(name):
    manifest = load_manifest(FIXTURES[name])
    sd = _meta_model(name).state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [
        (e["key"], tuple(e["shape"])) for e in manifest["entries"]
    ]
    dtypes = [str(v.dtype).removeprefix("torch.") for v in sd.values()]
    assert dtypes == [e["dtype"] for e in manifest["entries"]]


@pytest.mark.parametrize("name", list(FIXTURES) + list(COUNTS_ONLY))
def test_parameter_count_equals_peer(name):
    model = _meta_model(name)
    n = sum(p.numel() for p in model.parameters())
    if name in FIXTURES:
        assert n == load_manifest(FIXTURES[name])["num_parameters"]
    fixture = FIXTURES.get(name) or COUNTS_ONLY[name]
    assert n == _complexity()[fixture]["params"]


def _check_fixture(name: str) -> None:
    fixture = FIXTURES[name]
    manifest = load_manifest(fixture)
    model = build_backbone(name)
    init = _reference_weights(model.state_dict())
    assert reference_init_sha256(init) == manifest["reference_init_sha256"]
    model.load_state_dict(init, strict=True)
    model.eval()
    with torch.no_grad():
        y = model(_input_for(fixture))
    assert_close_to_reference(y, load_output(fixture)["embeddings_fp32"])


@pytest.mark.parametrize("name", [n for n in FIXTURES if n not in SLOW])
def test_reference_init_output_matches_facex(name):
    _check_fixture(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_reference_init_output_matches_facex_large(name):
    _check_fixture(name)


def test_swin_fixed_buffers_match_manifest():
    """Light twin of the Swin-S fixture check: the kept buffers equal the peer's (by init_sum)."""
    from faceforge.models.backbones.swin import relative_position_index, shifted_window_mask

    entries = {e["key"]: e for e in load_manifest("facex_swin_s")["entries"]}
    index = relative_position_index(7)
    masks = {56: shifted_window_mask(56, 56, 7, 3), 28: shifted_window_mask(28, 28, 7, 3),
             14: shifted_window_mask(14, 14, 7, 3)}
    for key, e in entries.items():
        if key.endswith("relative_position_index"):
            assert index.sum().item() == pytest.approx(e["init_sum"]), key
        elif key.endswith("attn_mask"):
            res = {64: 56, 16: 28, 4: 14}[e["shape"][0]]
            assert masks[res].double().sum().item() == pytest.approx(e["init_sum"]), key
    # the last stage (7x7 = one window) has no shift, hence no mask
    assert not any(k.startswith("layers.3.") and k.endswith("attn_mask") for k in entries)


def test_registry_metadata():
    assert backbone_meta("swin_s")["input_size"] == (224, 224)
    assert backbone_meta("swin_t")["input_size"] == (224, 224)
    expected = {"efficientnet_b0": (33.44e6, 77.83e6), "tf_nas_a": (39.59e6, 534.41e6),
                "ghostnet": (26.76e6, 194.49e6), "rexnet_1_0": (15.20e6, 429.64e6)}
    for name, (params, macs) in expected.items():
        meta = backbone_meta(name)
        assert meta["input_size"] == (112, 112) and meta["template"] == "arcface"
        assert (meta["published_params"], meta["published_macs"]) == (params, macs)


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    model = build_backbone(name, embedding_size=16)
    assert model.embedding_size == 16 and model.meta["embedding_size"] == 16
    h, w = model.meta["input_size"]
    x = torch.randn(2, 3, h, w)
    y = model(x)
    assert y.shape == (2, 16) and torch.isfinite(y).all()
    y.square().sum().backward()
    for key, p in model.named_parameters():
        if key in NEVER_RUN:
            assert p.grad is None, key
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), key
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_repvgg_fuse_keeps_output():
    torch.manual_seed(0)
    model = build_backbone("repvgg_tiny")
    init = reference_init(model.state_dict())  # non-trivial BN statistics
    model.load_state_dict(init)
    model.eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    assert not any("rbr_1x1" in k or "rbr_identity" in k for k in model.state_dict())
    assert_close_to_reference(after, before, rel=1e-5)


def test_efficientnet_keeps_facex_padding_quirk():
    """Stage 6's stride-2 5x5 depthwise pads (2, 2): FaceX-Zoo sizes padding for a stride-2 stem."""
    model = _meta_model("efficientnet_b0")
    dw = model._blocks[11]._depthwise_conv
    assert dw.stride == (2, 2) and dw.kernel_size == (5, 5)
    assert dw.same_pad == (2, 2, 2, 2)
    assert model._blocks[1]._depthwise_conv.same_pad == (0, 1, 0, 1)


def test_swin_rejects_wrong_input_size():
    model = build_backbone("swin_tiny")
    with pytest.raises(ValueError, match="224x224"):
        model(torch.zeros(1, 3, 112, 112))
