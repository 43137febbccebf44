"""Backbones (``faceforge.models.backbones``) and margin heads (``faceforge.models.heads``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from faceforge.errors import UserError, clean_message
from faceforge.registry import BACKBONES, MARGINS

# defaults a backbone's registration may override
DEFAULT_META = {
    "input_size": (112, 112),  # (H, W)
    "template": "arcface",  # alignment template: arcface (112x112) | sphereface (112x96)
    "mean": 0.5,  # pixel' = (pixel/255 - mean) / std, RGB order
    "std": 0.5,
}


def backbone_meta(name: str) -> dict[str, Any]:
    meta = dict(DEFAULT_META)
    meta.update(BACKBONES.entry(name).meta)
    return meta


def build_backbone(name: str, **options: Any) -> nn.Module:
    """Build a registered backbone; ``model.meta`` records how its input must be prepared."""
    try:
        model = BACKBONES.build(name, where="model", **options)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError) as e:
        if not options:
            raise
        # options are user text (--option, --set, a config): a value the builder cannot use is
        # the user's mistake, said in one line (e.g. width=0, a negative size, 3 numbers for 2)
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise UserError(f"backbone '{name}' cannot be built with {shown}: {type(e).__name__}: "
                        f"{clean_message(str(e).splitlines()[0] if str(e) else '', 200)}") from None
    meta = backbone_meta(name)
    meta.update({"backbone": name, "options": dict(options)})
    if "input_size" in options:  # a backbone built for another input (e.g. the upper half face)
        meta["input_size"] = tuple(int(v) for v in options["input_size"])
    meta["embedding_size"] = int(getattr(model, "embedding_size", options.get("embedding_size", 512)))
    model.meta = meta
    return model


def build_margin(name: str, **options: Any) -> nn.Module:
    return MARGINS.build(name, where="head", **options)
