"""Every registered margin: contract (shapes, dicts, −1 rows, gradients), state, eval, triplet loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faceforge.errors import UserError
from faceforge.models import build_margin
from faceforge.models.heads.base import Margin
from faceforge.models.heads.triplet import triplet_loss
from faceforge.registry import MARGINS

B, C, D = 6, 5, 4
NEEDS_CLASSES = {"adam_softmax", "adacos", "sphereface2"}
# heads whose −1 rows are more than scaled cosines (all their columns are negatives / use ‖x‖)
NOT_PLAIN_SCALE = {"circleloss", "sphereface", "sphereface_plus", "sphereface_r", "adacos",
                   "ga_softmax", "sphereface2"}  # linear in θ; a learned bias


def build(name, **kw):
    if name in NEEDS_CLASSES:
        kw.setdefault("num_classes", C)
    return build_margin(name, **kw)


def ctx_for(head, emb, weight):
    ctx = {}
    if "norms" in head.needs:
        ctx["norms"] = emb.norm(dim=1)
    if "weight" in head.needs:
        ctx["weight"] = F.normalize(weight, dim=1)
    if "embeddings" in head.needs:
        ctx["embeddings"] = F.normalize(emb, dim=1)
    return ctx


def test_registry_lists_the_zoo():
    expected = {
        "softmax", "sphereface", "sphereface_plus", "cosface", "adam_softmax", "adacos", "arcface",
        "combined", "mv_softmax", "curricularface", "circleloss", "npcface", "magface", "arcnegface",
        "sphereface_r",
    }
    assert expected <= set(MARGINS.names())


@pytest.mark.parametrize("name", MARGINS.names())
def test_contract(name):
    torch.manual_seed(0)
    head = build(name).train()
    assert isinstance(head, Margin)
    emb = (torch.randn(B, D) * 10).requires_grad_(True)
    weight = torch.randn(C, D, requires_grad=True)
    labels = torch.tensor([0, 1, -1, 3, 4, 1])
    cos = F.normalize(emb) @ F.normalize(weight, dim=1).t()
    out = head(cos, labels, **ctx_for(head, emb, weight))
    logits = out["logits"] if isinstance(out, dict) else out
    assert logits.shape == (B, C)
    assert torch.isfinite(logits).all()
    loss = F.cross_entropy(logits, labels.clamp(min=0))
    if getattr(head, "replaces_cross_entropy", False):  # SphereFace2: its own binary loss
        loss = out.pop("loss")
    if isinstance(out, dict):
        extras = [k for k in out if k != "logits"]
        assert all(k.startswith("loss_") for k in extras), extras
        loss = loss + sum(out[k] for k in extras)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(weight.grad).all()
    if name not in NOT_PLAIN_SCALE:
        row = logits[2].detach()
        ratio = row / cos[2].detach()
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5), "−1 row must be a scaled copy"


@pytest.mark.parametrize("name", MARGINS.names())
def test_unknown_option_is_a_user_error(name):
    with pytest.raises(UserError, match="no option"):
        MARGINS.build(name, where="head", not_an_option=1)


def test_label_shape_n1_accepted():
    cos = torch.rand(4, C) * 2 - 1
    labels = torch.tensor([1, 2, -1, 0])
    head = build_margin("arcface")
    assert torch.equal(head(cos, labels), head(cos, labels.view(-1, 1)))


def test_arcface_gradient_finite_at_cos_one():
    cos = torch.tensor([[1.0, 0.0], [-1.0, 0.2]], requires_grad=True)
    out = build_margin("arcface")(cos, torch.tensor([0, 0]))
    out.sum().backward()
    assert torch.isfinite(cos.grad).all()
    assert out[0, 0].item() == pytest.approx(64 * torch.cos(torch.tensor(0.5)).item(), rel=1e-6)


# --- state: registered buffers survive a state_dict round trip; eval() leaves them alone.
# FaceX-Zoo's AdaCos keeps its scale as a plain attribute, which resets on resume; ours is a buffer.
STATEFUL = [("adacos", "scale"), ("curricularface", "t"), ("sphereface", "it"), ("sphereface_r", "iter")]


@pytest.mark.parametrize("name,attr", STATEFUL)
def test_state_is_a_buffer_saved_and_frozen_in_eval(name, attr):
    torch.manual_seed(1)
    head = build(name).train()
    cos = torch.rand(B, C) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    norms = torch.rand(B) * 20 + 5
    for _ in range(3):
        head(cos, labels, norms=norms)
    state = head.state_dict()
    assert attr in state
    fresh = build(name)
    fresh.load_state_dict(state)
    assert torch.equal(getattr(fresh, attr), getattr(head, attr))
    before = getattr(head, attr).clone()
    head.eval()
    with torch.no_grad():
        head(cos, labels, norms=norms)
    head(cos, labels, norms=norms)
    assert torch.equal(getattr(head, attr), before), "eval() must not advance the head's state"


def test_adam_softmax_margins_are_a_parameter_and_need_all_columns():
    head = build_margin("adam_softmax", num_classes=C)
    assert "margins" in dict(head.named_parameters())
    with pytest.raises(UserError, match="num_classes"):
        head(torch.zeros(2, C + 1), torch.tensor([0, 1]))


def test_sphereface_rejects_fractional_m_and_needs_norms():
    with pytest.raises(UserError, match="integer"):
        build_margin("sphereface", m=1.5)
    with pytest.raises(UserError, match="norms"):
        build_margin("sphereface")(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_sphereface_plus_needs_weight():
    with pytest.raises(UserError, match="weight"):
        build_margin("sphereface_plus")(torch.zeros(2, 3), torch.tensor([0, 1]), norms=torch.ones(2))


def test_combined_compat_refuses_what_the_peer_cannot_do():
    with pytest.raises(UserError, match="arcface_torch_compat"):
        build_margin("combined", m1=0.9, m3=0.0, arcface_torch_compat=True)
    # m1 = 1 with m3 < 0 fits neither of the peer's branches: it used to run and drop m3 silently
    with pytest.raises(UserError, match="arcface_torch_compat"):
        build_margin("combined", m1=1.0, m2=0.5, m3=-0.1, arcface_torch_compat=True)


# --- triplet loss, against brute force over all triplets
def brute(emb, labels, margin, mining):
    d = torch.cdist(emb.double(), emb.double())
    n = len(labels)
    losses = []
    if mining == "batch_hard":
        for a in range(n):
            pos = [d[a, p] for p in range(n) if p != a and labels[p] == labels[a]]
            neg = [d[a, q] for q in range(n) if labels[q] != labels[a]]
            if pos and neg:
                losses.append(max(float(max(pos) - min(neg)) + margin, 0.0))
    else:
        for a in range(n):
            neg = [float(d[a, q]) for q in range(n) if labels[q] != labels[a]]
            for p in range(n):
                if p == a or labels[p] != labels[a] or not neg:
                    continue
                dap = float(d[a, p])
                farther = [x for x in neg if x > dap]
                dan = min(farther) if farther else max(neg)
                losses.append(max(dap - dan + margin, 0.0))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_matches_brute_force(mining, seed):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(10, 3, generator=g), dim=1).requires_grad_(True)
    labels = torch.randint(0, 3, (10,), generator=g)
    loss = triplet_loss(emb, labels, 0.3, mining)
    assert float(loss.detach()) == pytest.approx(brute(emb.detach(), labels, 0.3, mining), rel=1e-5, abs=1e-6)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_triplet_no_valid_triplet_is_zero_with_grad():
    emb = torch.randn(3, 4, requires_grad=True)
    loss = triplet_loss(emb, torch.tensor([0, 1, 2]), 0.2, "batch_hard")
    assert float(loss.detach()) == 0.0
    loss.backward()
    with pytest.raises(UserError, match="mining"):
        triplet_loss(emb, torch.tensor([0, 1, 2]), 0.2, "hardest")
