"""Triplet loss with online mining, for fine-tuning embeddings (not a :class:`Margin`).

``triplet_loss(emb, labels, margin, mining)`` works on the embeddings it is given (normalise them
first for the usual hypersphere setting) with Euclidean distances d.

* ``"batch_hard"`` (Hermans et al. 2017): per anchor, the farthest positive and the nearest
  negative; mean over anchors that have both of [d_ap − d_an + margin]_+.
* ``"semi_hard"`` (FaceNet, Schroff et al. 2015): per positive pair (a, p), the nearest negative
  farther than p (d_an > d_ap); when there is none, the farthest negative. Mean over positive pairs.

A batch without a valid triplet gives 0 (still connected to ``emb`` so backward works).
"""

from __future__ import annotations

import torch

from faceforge.errors import UserError

MINING = ("batch_hard", "semi_hard")


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    sq = (emb * emb).sum(1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * emb @ emb.t()).clamp(min=0.0)
    eye = torch.eye(emb.shape[0], dtype=torch.bool, device=emb.device)
    # the floor keeps sqrt's gradient finite for coincident points; the diagonal is exactly 0
    return torch.where(eye, torch.zeros_like(d2), torch.sqrt(d2.clamp(min=1e-12)))


def triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, mining: str = "batch_hard"
) -> torch.Tensor:
    if mining not in MINING:
        raise UserError(f"mining: '{mining}' is not one of {', '.join(MINING)}")
    if emb.dim() != 2 or labels.reshape(-1).shape[0] != emb.shape[0]:
        shapes = f"{tuple(emb.shape)}, {tuple(labels.shape)}"
        raise UserError(f"emb/labels: need emb [B, D] and labels [B], got {shapes}")
    labels = labels.reshape(-1)
    d = pairwise_distances(emb)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos, neg = same & ~eye, ~same
    zero = emb.sum() * 0.0
    if mining == "batch_hard":
        valid = pos.any(1) & neg.any(1)
        if not bool(valid.any()):
            return zero
        d_ap = torch.where(pos, d, torch.full_like(d, -float("inf"))).max(1).values
        d_an = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
        return torch.relu(d_ap - d_an + margin)[valid].mean()
    a_idx, p_idx = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
    if a_idx.numel() == 0:
        return zero
    d_ap = d[a_idx, p_idx]
    d_an_all = d[a_idx]  # [P, B]
    negs = neg[a_idx]
    farther = negs & (d_an_all > d_ap.detach().unsqueeze(1))
    semi = torch.where(farther, d_an_all, torch.full_like(d_an_all, float("inf"))).min(1).values
    hardest = torch.where(negs, d_an_all, torch.full_like(d_an_all, -float("inf"))).max(1).values
    d_an = torch.where(farther.any(1), semi, hardest)
    return torch.relu(d_ap - d_an + margin).mean()
