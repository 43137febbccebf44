"""Parameter and MAC counts of registered backbones, at their declared input size.

Convention (stated with every figure faceforge prints):

* **params** — every parameter of the module (``requires_grad`` or not), i.e. the true size of the
  checkpoint's weights. Buffers (BN running stats) are not parameters.
* **MACs** — one forward pass of a single image of the backbone's ``input_size``, counted with
  forward hooks using THOP's rules (FaceX-Zoo's published table used THOP 0.0.31), so our figures
  compare with published ones. Two rules differ from 0.0.31 and explain the few rows that do not
  equal its counts exactly: average pools count ``prod(kernel) + 1`` per output (later THOP
  versions; 0.0.31 counts 1), and upsampling counts 0 (0.0.31 counts 11 per bilinear output):

  =====================  =====================================================================
  Conv1d/2d/3d           ``out.numel() * (cin/groups * prod(kernel) + bias)``
  ConvTranspose*         same, with the weight's fan-in
  Linear                 ``in_features * out.numel()`` (bias not counted, as THOP)
  BatchNorm*             ``2 * in.numel()``
  Avg/AdaptiveAvgPool    ``out.numel() * (prod(kernel) + 1)``
  everything else        0 (activations, PReLU, LayerNorm, max pools, adds, functional matmuls)
  =====================  =====================================================================

  Unlike THOP 0.0.31, subclasses count (``isinstance``): a ``Conv2d`` subclass such as
  EfficientNet's ``Conv2dStaticSamePadding`` is a convolution here, and parameters of modules THOP
  has no rule for (PReLU, LayerNorm) are still parameters. Operations done with functional calls
  (attention matmuls) are invisible to module hooks and are not counted.

Models are built on the ``meta`` device, so even a 100M-parameter net is counted in a fraction of a
second without allocating its weights (CPU fallback for a model that cannot be built on meta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from faceforge.registry import BACKBONES

CONVENTION = "params: all parameters; MACs: THOP-0.0.31 rules (conv+bias, linear, 2/elem BN, avg pool)"


@dataclass
class Complexity:
    name: str
    input_size: tuple[int, int]
    params: int
    macs: int
    published_params: float | None = None
    published_macs: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _conv_macs(m, inputs, out) -> int:
    w = m.weight
    fan_in = w.shape[1] * math.prod(w.shape[2:])  # cin/groups * kernel for Conv; cout/groups for ConvT
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        fan_in = (w.shape[0] // m.groups) * math.prod(w.shape[2:])
    return out.numel() * (fan_in + (1 if m.bias is not None else 0))


def _macs_of(m: nn.Module, inputs, out) -> int:
    if not isinstance(out, torch.Tensor):
        return 0
    if isinstance(m, nn.modules.conv._ConvNd):
        return _conv_macs(m, inputs, out)
    if isinstance(m, nn.Linear):
        return m.in_features * out.numel()
    if isinstance(m, nn.modules.batchnorm._NormBase):  # BatchNorm/InstanceNorm: THOP has no LayerNorm rule
        return 2 * inputs[0].numel()
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (out.dim() - 2)
        return out.numel() * (math.prod(k) + 1)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        in_sp, out_sp = inputs[0].shape[2:], out.shape[2:]
        k = math.prod(-(-i // o) for i, o in zip(in_sp, out_sp))
        return out.numel() * (k + 1)
    return 0


def count_macs(model: nn.Module, input_size: tuple[int, int], device: str | torch.device = "cpu") -> int:
    """MACs of one forward pass of a (1, 3, H, W) input (module docstring: convention)."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        total += int(_macs_of(m, inputs, out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def backbone_complexity(name: str, **options: Any) -> Complexity:
    """Params and MACs of registered backbone ``name`` at its declared input size."""
    from faceforge.models import backbone_meta, build_backbone

    meta = backbone_meta(name)
    input_size = tuple(options.get("input_size", meta["input_size"]))
    try:
        with torch.device("meta"):
            model = build_backbone(name, **options)
        device: str = "meta"
        macs = count_macs(model, input_size, device)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on CPU
        model = build_backbone(name, **options)
        macs = count_macs(model, input_size, "cpu")
    return Complexity(
        name, input_size, count_params(model), macs, meta.get("published_params"), meta.get("published_macs")
    )


def registry_table(names: list[str] | None = None, progress=None) -> list[Complexity]:
    """One :class:`Complexity` per backbone; ``progress(done, total)`` after each."""
    names = names or BACKBONES.names()
    rows = []
    for n in names:
        rows.append(backbone_complexity(n))
        if progress is not None:
            progress(len(rows), len(names))
    return rows


def human(n: float | None) -> str:
    """1234567 -> '1.23M' (the precision publication tables print)."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


# Why a published FaceX-Zoo figure differs from the true count by more than 2% (the formulas are
# checked against FaceX-Zoo's own THOP 0.0.31 counts in tests and docs/models_facex_c.md).
PUBLISHED_NOTES = {
    "efficientnet_b0": "published omits every conv (THOP 0.0.31 has no rule for its Conv2d subclass) "
    "and counts the final Linear twice",
    "tf_nas_a": "published MACs count the final Linear twice",
    "ghostnet": "published MACs count the final Linear twice",
    "rexnet_1_0": "published MACs count the final Linear twice",
}


def _off(true: float | None, published: float | None) -> bool:
    return bool(true and published and abs(true - published) / published > 0.02)


def format_table(rows: list[Complexity]) -> str:
    header = ("backbone", "input", "params", "MACs", "published params", "published MACs", "note")
    lines = [header]
    for r in rows:
        off = _off(r.params, r.published_params) or _off(r.macs, r.published_macs)
        note = PUBLISHED_NOTES.get(r.name, "differs by > 2%") if off else ""
        lines.append(
            (
                r.name,
                f"{r.input_size[0]}x{r.input_size[1]}",
                human(r.params),
                human(r.macs),
                human(r.published_params),
                human(r.published_macs),
                note,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out) + f"\n({CONVENTION})"
