"""The peer fixtures' deterministic ``reference_init`` rule (../shared/reference/README.md, section 1).

Every state_dict entry gets its own CPU generator seeded with the unsigned CRC-32 of its key, so
the values depend only on the key names and shapes: two implementations with identical layouts get
identical weights, which lets a test compare a faceforge model with a peer's stored output.

Other tests import this module (``from reference_init import reference_init, reference_input``).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"


def reference_init(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Deterministic tensors for every entry of ``state_dict`` (same keys, shapes and dtypes)."""
    keys = set(state_dict)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, ref in state_dict.items():
        prefix, _, name = key.rpartition(".")
        shape = tuple(ref.shape)
        g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
        is_bn = f"{prefix}.running_mean" in keys
        if name == "num_batches_tracked":
            t = torch.zeros(shape, dtype=torch.int64)
        elif is_bn and name == "weight":
            t = torch.randn(shape, generator=g) * 0.1 + 1.0
        elif is_bn and name in ("bias", "running_mean"):
            t = torch.randn(shape, generator=g) * 0.1
        elif is_bn and name == "running_var":
            t = torch.rand(shape, generator=g) + 0.5
        elif name == "weight" and len(shape) >= 2:  # conv / linear: N(0,1)/sqrt(fan_in)
            t = torch.randn(shape, generator=g) * (1.0 / math.sqrt(math.prod(shape[1:])))
        elif name == "weight" and len(shape) == 1:  # PReLU slopes (and LayerNorm weights)
            t = torch.randn(shape, generator=g) * 0.05 + 0.25
        elif name == "bias":
            t = torch.randn(shape, generator=g) * 0.01
        elif name == "relative_position_bias_table":  # Swin (README section 5)
            t = torch.randn(shape, generator=g) * 0.02
        else:
            raise ValueError(f"reference_init has no rule for '{key}'")
        out[key] = t.to(ref.dtype)
    return out


def reference_init_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The manifests' ``reference_init_sha256``: key bytes + little-endian tensor bytes, in order."""
    import hashlib

    h = hashlib.sha256()
    for key, t in state_dict.items():
        h.update(key.encode("utf-8"))
        h.update(t.detach().cpu().contiguous().numpy().tobytes())  # x86/arm hosts are little-endian
    return h.hexdigest()


def require_reference(*names: str) -> Path:
    """The reference folder, or ``pytest.skip`` when it (or one of ``names``) is absent."""
    import pytest

    for name in names:
        if not (REFERENCE / name).is_file():
            pytest.skip(f"peer fixture {REFERENCE / name} not available")
    if not REFERENCE.is_dir():
        pytest.skip(f"peer fixtures folder {REFERENCE} not available")
    return REFERENCE


def reference_input() -> torch.Tensor:
    """``backbone_input.pt`` ``x``: (4,3,112,112) float32 in [-1, 1)."""
    return torch.load(require_reference("backbone_input.pt") / "backbone_input.pt", weights_only=True)["x"]


def load_output(name: str) -> dict:
    """``<name>_reference_init_output.pt`` as a dict of tensors."""
    file = f"{name}_reference_init_output.pt"
    return torch.load(require_reference(file) / file, weights_only=True)


def load_manifest(name: str) -> dict:
    file = f"{name}_manifest.json"
    return json.loads((require_reference(file) / file).read_text())


def assert_close_to_reference(y: torch.Tensor, ref: torch.Tensor, rel: float = 2e-5) -> None:
    """The README's backbone tolerance: ``max|y - ref| <= rel * max|ref|``."""
    assert y.shape == ref.shape, (tuple(y.shape), tuple(ref.shape))
    scale = ref.abs().max().item()
    err = (y.double() - ref.double()).abs().max().item()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel:g} * max|ref| ({scale:.3g})"


def build_with_reference_init(name: str, **options):
    """``build_backbone(name)`` with ``reference_init`` weights, in eval mode.

    The model is built on the meta device first, so the (expensive, discarded) default init of a
    large net is skipped.
    """
    from faceforge.models import build_backbone

    with torch.device("meta"):
        model = build_backbone(name, **options)
    init = reference_init(model.state_dict())
    model.to_empty(device="cpu")
    model.load_state_dict(init, strict=True)
    return model.eval(), init
