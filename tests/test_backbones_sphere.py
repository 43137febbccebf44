"""SphereFace nets (sphere20a) and OpenSphere SFNets against the peer fixtures."""

from __future__ import annotations

import pytest
import torch

from faceforge.models import build_backbone
from reference_init import (
    assert_close_to_reference,
    build_with_reference_init,
    load_manifest,
    load_output,
    reference_init,
    reference_init_sha256,
    reference_input,
)

# (faceforge name, output fixture, manifest holding its layout); the 50M-parameter no-BN SFNet-64s
# run under -m slow: their arithmetic is covered by the SFNet-20 of the same code variant.
SFNETS = [
    pytest.param("sfnet20_deprecated", "opensphere_sfnet20_deprecated", "opensphere_sfnet20_deprecated",
                 id="sfnet20_deprecated"),
    pytest.param("sfnet20", "opensphere_sfnet20", "opensphere_sfnet20_deprecated", id="sfnet20"),
    pytest.param("sfnet64_deprecated", "opensphere_sfnet64_deprecated", "opensphere_sfnet64_deprecated",
                 id="sfnet64_deprecated", marks=pytest.mark.slow),
    pytest.param("sfnet64", "opensphere_sfnet64", "opensphere_sfnet64_deprecated", id="sfnet64",
                 marks=pytest.mark.slow),
    pytest.param("sfnet64_bn", "opensphere_sfnet64_bn", "opensphere_sfnet64_bn", id="sfnet64_bn"),
]


@pytest.mark.parametrize("name,fixture,manifest", SFNETS)
def test_sfnet_matches_opensphere(name, fixture, manifest):
    man = load_manifest(manifest)
    model, init = build_with_reference_init(name)
    layout = [(e["key"], tuple(e["shape"])) for e in man["entries"]]
    assert [(k, tuple(t.shape)) for k, t in init.items()] == layout
    assert reference_init_sha256(init) == man["reference_init_sha256"]
    with torch.no_grad():
        y = model(reference_input())
    assert_close_to_reference(y, load_output(fixture)["embeddings_fp32"])


def test_sfnet_code_variants_differ():
    """Same keys, different arithmetic: the variant must be chosen by name, never guessed."""
    a, init = build_with_reference_init("sfnet20")
    b = build_backbone("sfnet20_deprecated")
    b.load_state_dict(init)
    x = reference_input()[:1]
    with torch.no_grad():
        assert (a.eval()(x) - b.eval()(x)).abs().max() > 1e-3


def test_sphere20a_matches_sphereface_pytorch():
    man = load_manifest("sphereface_sphere20a")
    model, init = build_with_reference_init("sphere20a")
    sd = model.state_dict()
    # the peer's state_dict also holds the AngleLinear classifier fc6, which is not backbone
    keys = [e["key"] for e in man["entries"]]
    assert keys[-1] == "fc6.weight" and list(sd) == keys[:-1]
    with_head = dict(sd)
    with_head["fc6.weight"] = torch.empty(man["entries"][-1]["shape"])
    assert reference_init_sha256(reference_init(with_head)) == man["reference_init_sha256"]
    assert model.meta["input_size"] == (112, 96) and model.meta["template"] == "sphereface"
    with torch.no_grad():
        y = model(reference_input()[:, :, :, 8:104])
    assert_close_to_reference(y, load_output("sphereface_sphere20a")["embeddings_fp32"])


def test_sphere64a_layout():
    with torch.device("meta"):
        sd = build_backbone("sphere64a").state_dict()
    convs = [k for k in sd if k.startswith("conv") and k.endswith(".weight")]
    assert len(convs) == 4 + 2 * sum((3, 8, 16, 3))  # SphereFace-64: 64 conv layers
    assert tuple(sd["fc5.weight"].shape) == (512, 512 * 7 * 6)
