"""The margin contract.

A margin turns the cosines between embeddings and class weights into logits. It never owns the
class weights (:mod:`faceforge.models.heads.classifier` does, sharded under Partial FC), so it sees
only ``cos`` [B, C] and ``labels`` [B], where label ``-1`` means "this row's class is not among
these columns" and the row passes through untouched (apart from the scale).

``forward`` returns either the logits or a dict ``{"logits": ..., "loss_<name>": ...}``: every
``loss*`` entry is added to the cross-entropy by the engine, the rest is logged. A margin whose
method is not a softmax (SphereFace2's per-class binary loss) sets ``replaces_cross_entropy`` and
returns ``loss`` itself.

Margins that need more than cosines name it in ``needs``; the classifier then passes
``norms`` ([B] embedding norms before normalisation), ``weight`` ([C, D] normalised class weights
of these columns) and/or ``embeddings`` ([B, D] normalised embeddings) as keyword arguments.
"""

from __future__ import annotations

import torch
from torch import nn


class Margin(nn.Module):
    needs: tuple[str, ...] = ()
    replaces_cross_entropy: bool = False

    def forward(self, cos: torch.Tensor, labels: torch.Tensor, **ctx) -> torch.Tensor | dict:
        raise NotImplementedError


def target_mask(cos: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that have a target in these columns, and the (row, column) one-hot mask."""
    labels = labels.reshape(-1)
    has = labels >= 0
    onehot = torch.zeros_like(cos, dtype=torch.bool)
    rows = torch.nonzero(has, as_tuple=True)[0]
    onehot[rows, labels[rows]] = True
    return has, onehot


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``logits`` with each labelled row's target column replaced by ``target`` [B]."""
    _, onehot = target_mask(logits, labels)
    return torch.where(onehot, target.unsqueeze(1).to(logits.dtype), logits)


def target_cos(cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The target cosine of each row (0 for rows without a target)."""
    labels = labels.reshape(-1)
    idx = labels.clamp(min=0).unsqueeze(1)
    return cos.gather(1, idx).squeeze(1) * (labels >= 0).to(cos.dtype)
