"""The class-weight owner: a normalised classifier with Partial FC sharding and sampling.

Following arcface_torch's PartialFC (An et al., 2022): the weight matrix [C, D] is split across
ranks by contiguous class ranges; each rank sees the embeddings of the *global* batch, keeps the
positive classes of its shard plus a random fraction ``sample_rate`` of its negatives, and the
softmax cross-entropy is computed across shards (all-reduce of the row max and of the sum of
exponentials). With one process and ``sample_rate=1`` this is a plain normalised classifier, by
the same code path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceforge import distributed as D
from faceforge.errors import UserError


def shard_range(num_classes: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous class range [start, end) of ``rank``: the first ``C % world`` ranks get one more."""
    base, extra = divmod(num_classes, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _DistSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of logits whose columns are spread over ranks.

    ``labels`` are shard-local (-1 where the target lives on another shard). The loss of a row is
    computed in log space, ``log(sum_j exp(l_j - max)) + max - l_target`` (the sum and the target
    logit all-reduced across shards), so a hard row reports its true value: taking ``-log`` of a
    clamped probability capped every row at ``-log(1e-30) = 69.08``. The backward pass is local:
    d(loss)/d(logits) = (softmax - onehot) / N, with the softmax normalised globally.
    """

    @staticmethod
    def forward(ctx, logits, labels):
        logits = logits.float()
        row_max = (
            logits.max(dim=1, keepdim=True).values
            if logits.shape[1]
            else torch.full((logits.shape[0], 1), -1e30, device=logits.device)
        )
        D.all_reduce_(row_max, op=torch.distributed.ReduceOp.MAX if D.is_distributed() else None)
        exp = torch.exp(logits - row_max)
        denom = exp.sum(dim=1, keepdim=True)
        D.all_reduce_(denom)
        prob = exp / denom
        # gather + mask instead of indexing the labelled rows: no data-dependent shape, so no
        # device->host sync on a GPU (an empty shard has no column to gather from)
        has = (labels >= 0).unsqueeze(1)
        target_logit = torch.zeros(logits.shape[0], 1, device=logits.device)
        if logits.shape[1]:
            target_logit = torch.where(has, logits.gather(1, labels.clamp(min=0).unsqueeze(1)), target_logit)
        D.all_reduce_(target_logit)  # each row's target lives on exactly one shard
        loss = (torch.log(denom) + row_max - target_logit).mean()
        ctx.save_for_backward(prob, labels)
        return loss

    @staticmethod
    def backward(ctx, grad):
        prob, labels = ctx.saved_tensors
        g = prob.clone()
        if g.shape[1]:
            onehot = (labels >= 0).to(g.dtype).unsqueeze(1)
            g.scatter_add_(1, labels.clamp(min=0).unsqueeze(1), -onehot)
        return g * (grad / prob.shape[0]), None


class PartialFC(nn.Module):
    """Normalised class weights (this rank's shard) + a margin + distributed cross-entropy.

    ``forward(embeddings[B, D], labels[B])`` takes this rank's local batch and returns
    ``{"loss": ..., **margin extras, "acc": ...}``.
    """

    def __init__(self, margin: nn.Module, embedding_size: int, num_classes: int, sample_rate: float = 1.0):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.margin = margin
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.rank, self.world = D.rank(), D.world_size()
        self.class_start, self.class_end = shard_range(num_classes, self.rank, self.world)
        num_local = self.class_end - self.class_start
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_local, embedding_size)))

    @property
    def num_local(self) -> int:
        return self.class_end - self.class_start

    def _sample(self, local_labels: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Columns to keep (every positive, then random negatives) and labels remapped into them.

        ``int(rate * C_local)`` columns, truncated as arcface_torch's ``PartialFC_V2`` does (so the
        same rate keeps the same count of columns); more when the batch holds more positives.
        """
        num_sample = int(self.sample_rate * self.num_local)
        if self.sample_rate >= 1.0 or num_sample >= self.num_local:
            return None, local_labels
        positive = torch.unique(local_labels[local_labels >= 0], sorted=True)
        if positive.numel() < num_sample:
            score = torch.rand(self.num_local, device=local_labels.device)
            score[positive] = 2.0  # positives are always kept
            index = torch.topk(score, k=num_sample)[1].sort()[0]
        else:
            index = positive
        remap = torch.full((self.num_local,), -1, dtype=torch.long, device=local_labels.device)
        remap[index] = torch.arange(index.numel(), device=local_labels.device)
        labels = torch.where(local_labels >= 0, remap[local_labels.clamp(min=0)], local_labels)
        return index, labels

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict:
        labels = labels.reshape(-1)
        all_emb = D.all_gather_with_grad(embeddings)
        all_labels = D.all_gather_cat(labels)
        on_shard = (all_labels >= self.class_start) & (all_labels < self.class_end)
        local = torch.where(on_shard, all_labels - self.class_start, torch.full_like(all_labels, -1))
        index, local = self._sample(local)
        weight = self.weight if index is None else self.weight[index]

        norms = all_emb.float().norm(dim=1)
        emb_n = F.normalize(all_emb.float(), dim=1)
        w_n = F.normalize(weight.float(), dim=1)
        # under autocast the matmul runs in bf16/fp16 (the [B, C] product is the head's cost);
        # the margin and the softmax statistics then run on its fp32 copy, as arcface_torch does
        cos = (emb_n @ w_n.t()).float().clamp(-1.0, 1.0)
        ctx = {}
        needs = getattr(self.margin, "needs", ())
        if "norms" in needs:
            ctx["norms"] = norms
        if "weight" in needs:
            ctx["weight"] = w_n
        if "embeddings" in needs:
            ctx["embeddings"] = emb_n
        out = self.margin(cos, local, **ctx)
        out = out if isinstance(out, dict) else {"logits": out}
        logits = out.pop("logits")
        if "loss" in out:  # a margin with its own loss (SphereFace2's binary one) replaces the CE
            if self.world > 1 or index is not None:
                raise UserError(f"head '{type(self.margin).__name__}' computes its own loss over every "
                                "class: train on one process with train.sample_rate=1")
            result = {"loss": out.pop("loss")}
        else:
            result = {"loss": _DistSoftmaxCE.apply(logits, local)}
        result.update(out)
        with torch.no_grad():
            result["acc"] = self._accuracy(cos, local)
        return result

    def _accuracy(self, cos: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Share of the global batch whose nearest class (by cosine) is its own."""
        best = cos.max(dim=1).values if cos.shape[1] else torch.full((cos.shape[0],), -2.0)
        best_all = best.clone()
        D.all_reduce_(best_all, op=torch.distributed.ReduceOp.MAX if D.is_distributed() else None)
        hit = torch.zeros(cos.shape[0], device=cos.device)
        if cos.shape[1]:
            own = cos.gather(1, local.clamp(min=0).unsqueeze(1)).squeeze(1)
            hit = ((local >= 0) & (own >= best_all)).float()
        D.all_reduce_(hit)
        return hit.mean()

    # -- checkpoints: the full, un-sharded classifier ------------------------------------------

    def full_weight(self) -> torch.Tensor:
        """The whole [C, D] weight matrix (gathered from every rank's shard)."""
        return gather_shards(self.weight.detach(), self.num_classes)

    def load_full_weight(self, weight: torch.Tensor) -> None:
        if tuple(weight.shape) != (self.num_classes, self.embedding_size):
            raise ValueError(
                f"classifier shape {tuple(weight.shape)} != ({self.num_classes}, {self.embedding_size})"
            )
        with torch.no_grad():
            self.weight.copy_(weight[self.class_start : self.class_end].to(self.weight))


def gather_shards(shard: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Reassemble rows sharded by :func:`shard_range` into the full matrix (on every rank)."""
    if not D.is_distributed():
        return shard.cpu()
    world = D.world_size()
    max_rows = shard_range(num_classes, 0, world)[1]
    padded = torch.zeros((max_rows, *shard.shape[1:]), dtype=shard.dtype, device=shard.device)
    padded[: shard.shape[0]] = shard
    parts = D.all_gather_cat(padded.unsqueeze(0))
    rows = [parts[r, : (lambda s: s[1] - s[0])(shard_range(num_classes, r, world))] for r in range(world)]
    return torch.cat(rows).cpu()
