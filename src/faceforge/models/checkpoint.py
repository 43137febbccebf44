"""faceforge checkpoints: one ``torch.save`` dict that rebuilds its backbone with one call.

Layout (``format: faceforge-checkpoint``)::

    {"format": "faceforge-checkpoint", "version": 1,
     "backbone": {"name", "options", "meta", "state_dict"},   # meta: input_size, template, mean, std
     "head": {"name", "options", "weight": [C, D] or None},   # full classifier, un-sharded
     "train": {...}   # optimizer, scheduler, sampler and RNG state (training checkpoints only)
     "config": {...}, "metrics": {...}}

``load_backbone(path)`` returns the eval-mode backbone with ``model.meta`` set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceforge.atomic import atomic_torch_save
from faceforge.errors import UserError

FORMAT = "faceforge-checkpoint"


def backbone_record(model: nn.Module) -> dict[str, Any]:
    meta = dict(getattr(model, "meta", {}))
    return {
        "name": meta.get("backbone"),
        "options": dict(meta.get("options", {})),
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_checkpoint(path: str | Path, backbone: nn.Module, **extra: Any) -> None:
    obj = {"format": FORMAT, "version": 1, "backbone": backbone_record(backbone)}
    obj.update(extra)
    atomic_torch_save(obj, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(
            f"{path}: not a faceforge checkpoint (convert peer checkpoints with 'faceforge import')"
        )
    return obj


def load_backbone(path: str | Path, device: str = "cpu") -> nn.Module:
    from faceforge.models import build_backbone

    rec = read_checkpoint(path)["backbone"]
    model = build_backbone(rec["name"], **rec.get("options", {}))
    model.load_state_dict(rec["state_dict"])
    model.meta.update({k: v for k, v in rec.get("meta", {}).items() if k not in ("options",)})
    model.meta["checkpoint"] = str(path)
    return model.to(device).eval()
