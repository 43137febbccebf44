"""Landmark regression losses on points in crop pixels [B, 88, 2]; each returns a scalar tensor."""

from __future__ import annotations

import math

import torch

from faceforge.errors import UserError

LOSSES = ("mse", "wing", "l1")


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per coordinate (pixels^2), the practitioner's training loss."""
    return ((pred - target) ** 2).mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 10.0, eps: float = 2.0) -> torch.Tensor:
    """Wing loss (Feng et al., CVPR 2018, eq. 5): ``w ln(1 + |x|/eps)`` below ``w``, ``|x| - C`` above,
    with ``C = w - w ln(1 + w/eps)`` joining the pieces; defaults w=10, eps=2 px as in the paper."""
    x = (pred - target).abs()
    c = w - w * math.log1p(w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()


def landmark_loss(name: str, **options):
    """The loss ``name`` as ``fn(pred, target)``; options go to the wing loss (w, eps)."""
    if name == "mse":
        return mse_loss
    if name == "l1":
        return l1_loss
    if name == "wing":
        w, eps = float(options.get("w", 10.0)), float(options.get("eps", 2.0))
        if w <= 0 or eps <= 0:
            raise UserError(f"train.wing: w and eps must be > 0, got w={w}, eps={eps}")
        return lambda pred, target: wing_loss(pred, target, w, eps)
    raise UserError(f"train.loss: unknown loss '{name}' (valid: {', '.join(LOSSES)})")
