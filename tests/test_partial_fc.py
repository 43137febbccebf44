"""Partial FC: sharded classifier + distributed cross-entropy against one full-softmax process.

Two gloo processes on CPU, each holding half the global batch and half of the classes (11 classes:
shards of 6 and 5). At sample_rate = 1 the loss, the backbone gradients (after DDP averaging) and
the class-weight gradients must equal a single process running the whole batch with the whole
weight matrix.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from faceforge.distributed import shutdown
from faceforge.models.heads.arcface import ArcFace
from faceforge.models.heads.circleloss import CircleLoss
from faceforge.models.heads.classifier import PartialFC, _DistSoftmaxCE, gather_shards, shard_range
from launch import spawn

C, D_EMB, B_GLOBAL = 11, 16, 8


def _backbone() -> nn.Module:
    # no BatchNorm: per-rank batch statistics would differ from the global batch by design
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.PReLU(), nn.Linear(32, D_EMB))


def _inputs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B_GLOBAL, 3, 8, 8, generator=g)
    y = torch.tensor([0, 3, 5, 6, 10, 6, 2, 9])
    w = torch.randn(C, D_EMB, generator=g) * 0.1
    return x, y, w


def _margin(name="arcface"):
    # circleloss at gamma 256 makes rows whose loss is far above the old cap of -log(1e-30) = 69.08
    return CircleLoss(m=0.25, gamma=256.0) if name == "circleloss" else ArcFace(s=16, m=0.3)


def _single(sample_rate=1.0, margin="arcface"):
    x, y, w = _inputs()
    net = _backbone()
    pfc = PartialFC(_margin(margin), D_EMB, C, sample_rate)
    with torch.no_grad():
        pfc.weight.copy_(w)
    out = pfc(net(x), y)
    out["loss"].backward()
    return out["loss"].item(), [p.grad.clone() for p in net.parameters()], pfc.weight.grad.clone()


def _worker(rank, world, init_file, result_file, margin="arcface"):
    # a file:// rendezvous in the test's own tmp_path: no port to collide with a concurrent run
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y, w = _inputs()
    net = nn.parallel.DistributedDataParallel(_backbone())
    pfc = PartialFC(_margin(margin), D_EMB, C, 1.0)
    assert (pfc.class_start, pfc.class_end) == shard_range(C, rank, world)
    with torch.no_grad():
        pfc.weight.copy_(w[pfc.class_start : pfc.class_end])
    per = B_GLOBAL // world
    out = pfc(net(x[rank * per : (rank + 1) * per]), y[rank * per : (rank + 1) * per])
    out["loss"].backward()
    wgrad = gather_shards(pfc.weight.grad, C)
    if rank == 0:
        torch.save(
            {
                "loss": out["loss"].item(),
                "grads": [p.grad for p in net.parameters()],
                "wgrad": wgrad,
                "acc": out["acc"].item(),
            },
            result_file,
        )
    del net, pfc, out
    shutdown()  # barrier, destroy, and collect what still held the group (see faceforge.distributed)


def test_shard_ranges_cover_all_classes():
    for c in (1, 7, 11, 100):
        for world in (1, 2, 3, 8):
            ranges = [shard_range(c, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == c
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_two_process_gloo_equals_single_process(tmp_path):
    loss1, grads1, wgrad1 = _single()
    result = tmp_path / "r.pt"
    spawn(_worker, 2, (2, str(tmp_path / "init"), str(result)))
    got = torch.load(result)
    assert abs(got["loss"] - loss1) < 1e-5
    for a, b in zip(got["grads"], grads1):
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
    assert torch.allclose(got["wgrad"], wgrad1, atol=1e-5, rtol=0)


def test_sampling_keeps_every_positive_and_loss_is_finite():
    torch.manual_seed(0)
    x, y, w = _inputs()
    pfc = PartialFC(ArcFace(s=16, m=0.3), D_EMB, C, sample_rate=0.3)
    index, local = pfc._sample(y)
    assert index is not None and set(y.tolist()) <= set(index.tolist())
    assert torch.equal(index[local], y)  # remapped labels point at the same classes
    out = pfc(torch.randn(B_GLOBAL, D_EMB), y)
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("rate", [1.0])
def test_single_process_matches_plain_cross_entropy(rate):
    x, y, w = _inputs()
    emb = torch.randn(B_GLOBAL, D_EMB, dtype=torch.float32)
    pfc = PartialFC(ArcFace(s=16, m=0.3), D_EMB, C, rate)
    with torch.no_grad():
        pfc.weight.copy_(w)
    cos = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(w).t()
    ref = torch.nn.functional.cross_entropy(ArcFace(s=16, m=0.3)(cos.clamp(-1, 1), y), y)
    assert abs(pfc(emb, y)["loss"].item() - ref.item()) < 1e-5


def _rowloop_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of log(sum_j exp(l_j)) - l_target, one row at a time in float64."""
    total = 0.0
    for row, y in zip(logits.double(), labels.tolist()):
        top = row.max()
        total += (top + torch.log(torch.exp(row - top).sum()) - row[y]).item()
    return total / len(labels)


def _hard_reference():
    """The float64 loss of :func:`_single` with circleloss, recomputed from the same tensors."""
    x, y, w = _inputs()
    emb = _backbone()(x).detach().double()
    cos = (torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(w.double()).t()).clamp(-1, 1)
    return _rowloop_loss(_margin("circleloss")(cos, y), y)


def test_hard_rows_report_their_true_loss():
    # a row whose target logit is 200 below the best other logit: the loss is ~200, not 69.08
    logits = torch.tensor([[0.0, 200.0, 3.0], [5.0, 1.0, 0.0], [-150.0, 0.0, 150.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 0])
    loss = _DistSoftmaxCE.apply(logits, labels)
    ref = _rowloop_loss(logits.detach(), labels)
    assert ref > 69.08 and abs(loss.item() - ref) <= 1e-5 * ref
    loss.backward()  # the gradient is the one of plain cross-entropy, as before
    plain = logits.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(plain, labels).backward()
    assert torch.allclose(logits.grad, plain.grad, atol=1e-7, rtol=0)


def test_circleloss_at_init_is_not_capped():
    loss, _, _ = _single(margin="circleloss")
    ref = _hard_reference()
    assert ref > 69.08, ref
    assert abs(loss - ref) <= 1e-5 * ref, (loss, ref)


def test_two_process_hard_rows_equal_the_float64_reference(tmp_path):
    result = tmp_path / "r.pt"
    spawn(_worker, 2, (2, str(tmp_path / "init"), str(result), "circleloss"))
    got = torch.load(result)
    ref = _hard_reference()
    assert ref > 69.08 and abs(got["loss"] - ref) <= 1e-5 * ref, (got["loss"], ref)
    loss1, grads1, wgrad1 = _single(margin="circleloss")
    for a, b in zip(got["grads"], grads1):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    assert torch.allclose(got["wgrad"], wgrad1, atol=1e-4, rtol=1e-4)


def test_sampling_keeps_int_of_rate_times_classes_like_arcface_torch():
    pfc = PartialFC(ArcFace(s=16, m=0.3), D_EMB, C, sample_rate=0.5)
    index, _ = pfc._sample(torch.tensor([1, 1, 4]))
    assert index.numel() == int(0.5 * C) == 5  # ceil would keep 6
