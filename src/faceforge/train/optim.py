"""Parameter groups (weight decay, learning-rate multipliers) and the optimiser."""

from __future__ import annotations

import torch
from torch import nn

from faceforge.errors import UserError


def param_groups(backbone: nn.Module, mode: nn.Module, cfg) -> list[dict]:
    """Weight decay off for 1-D parameters (BatchNorm/PReLU/bias) when ``no_decay_norm``."""
    groups: dict[tuple[str, bool], list] = {}
    for part, module in (("backbone", backbone), ("head", mode)):
        for _, p in module.named_parameters():
            if not p.requires_grad:
                continue
            decay = not (cfg.optim.no_decay_norm and p.ndim <= 1)
            groups.setdefault((part, decay), []).append(p)
    out = []
    for (part, decay), params in groups.items():
        mult = cfg.optim.backbone_lr_mult if part == "backbone" else 1.0
        out.append(
            {
                "params": params,
                "weight_decay": cfg.optim.weight_decay if decay else 0.0,
                "lr_mult": mult,
                "name": f"{part}{'' if decay else '_no_decay'}",
            }
        )
    return out


def build_optimizer(groups: list[dict], cfg, device: torch.device | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW; on CUDA the fused kernels (one launch for all parameters)."""
    o = cfg.optim
    kinds = {"sgd": (torch.optim.SGD, {"momentum": o.momentum}), "adamw": (torch.optim.AdamW, {})}
    if o.name not in kinds:
        raise UserError(f"optim.name: unknown optimizer '{o.name}' (valid: sgd, adamw)")
    cls, extra = kinds[o.name]
    if device is not None and device.type == "cuda":
        return cls(groups, lr=o.lr, fused=True, **extra)
    return cls(groups, lr=o.lr, **extra)  # torch's own choice (foreach where it has the kernels)
