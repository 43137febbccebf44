"""SphereFace2 (binary loss, learnable bias) and GA-Softmax against OpenSphere's fixtures.

OpenSphere normalises w in place and then uses it directly, so w (normalised once) is the leaf
here too, as in ``test_heads_peers.test_opensphere_heads``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import shared_path
from faceforge.models import build_margin


def sphere_fixture():
    return torch.load(shared_path("reference", "sphereface_heads.pt"), weights_only=True)


def close(ours, ref, rtol, what):
    ref = ref.to(ours.dtype).reshape(ours.shape)
    err = (ours.detach() - ref).abs().max().item()
    bound = rtol * max(ref.abs().max().item(), 1e-30)
    assert err <= bound, f"{what}: max err {err:.3e} > {bound:.3e}"

DTYPES = [(torch.float32, "fp32", 1e-5), (torch.float64, "fp64", 1e-10)]
CASES = {
    "SphereFace2_C": dict(magn_type="C", alpha=0.7, r=40.0, m=0.4, t=3.0, lw=10.0),
    "SphereFace2_A": dict(magn_type="A", alpha=0.7, r=40.0, m=0.5, t=3.0, lw=10.0),
    "SphereFace2_M": dict(magn_type="M", alpha=0.7, r=40.0, m=1.7, t=3.0, lw=10.0),
    "v1_SphereFace2_a0.8_r64_m0.5": dict(magn_type="C", alpha=0.8, r=64.0, m=0.5, t=3.0, lw=50.0),
}


def _run(fixture, ref, head, dtype, sfx, v1, loss_of):
    for i, call in enumerate(fixture["calls"]):
        w0 = fixture["params"]["w"].to(dtype) if i == 0 else fixture["calls"][i - 1][f"state_w_after_{sfx}"]
        w = F.normalize(w0, dim=1 if v1 else 0).clone().requires_grad_(True)
        w_rows = w if v1 else w.t()
        x = ref["feats"].to(dtype).clone().requires_grad_(True)
        out = head(F.normalize(x) @ w_rows.t(), ref["labels"])
        logits = out["logits"] if isinstance(out, dict) else out
        loss = loss_of(out, logits)
        params = [x, w] + ([head.b] if hasattr(head, "b") else [])
        grads = torch.autograd.grad(loss, params)
        yield i, call, logits, loss, grads


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype,sfx,rtol", DTYPES)
def test_sphereface2_matches_opensphere(name, dtype, sfx, rtol):
    ref = sphere_fixture()
    fixture = ref["heads"][name]
    head = build_margin("sphereface2", num_classes=50, **CASES[name]).to(dtype)
    # the closed-form bias: ours in float64 vs the peer's float32-stored value
    assert abs(head.b.item() - float(fixture["b_init"])) < 1e-5
    with torch.no_grad():
        head.b.copy_(fixture["params"]["b"].to(dtype))
    for i, call, logits, loss, grads in _run(fixture, ref, head, dtype, sfx, name.startswith("v1_"),
                                              lambda out, lg: out["loss"]):
        close(logits, call[f"logits_{sfx}"], rtol, f"call {i} logits")
        close(loss, call[f"loss_{sfx}"], rtol, f"call {i} loss")
        close(grads[0], call[f"grad_feats_{sfx}"], rtol, f"call {i} grad feats")
        close(grads[1], call[f"grad_w_{sfx}"], rtol, f"call {i} grad w")
        close(grads[2], call[f"grad_b_{sfx}"], rtol, f"call {i} grad b")
        break  # later calls start from the peer's updated w and b; one call checks the math


@pytest.mark.parametrize("dtype,sfx,rtol", DTYPES)
def test_ga_softmax_matches_opensphere(dtype, sfx, rtol):
    ref = sphere_fixture()
    fixture = ref["heads"]["GAsoftmax_s30_m1.5"]
    head = build_margin("ga_softmax", s=30.0, m=1.5, slope=0.63662)  # the peer's rounded 2/π
    for i, call, logits, loss, grads in _run(fixture, ref, head, dtype, sfx, False,
                                              lambda out, lg: F.cross_entropy(lg, ref["labels"])):
        close(logits, call[f"logits_{sfx}"], rtol, f"call {i} logits")
        close(loss, call[f"loss_{sfx}"], rtol, f"call {i} loss")
        close(grads[0], call[f"grad_feats_{sfx}"], rtol, f"call {i} grad feats")
        # README: acos' near ±1 makes grad_w's fp32/fp64 gap 1.4e-5; use atol = 1e-4·max|ref|
        close(grads[1], call[f"grad_w_{sfx}"], max(rtol, 1e-4) if sfx == "fp32" else rtol, "grad w")
        break
