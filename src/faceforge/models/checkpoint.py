"""faceforge checkpoints: one ``torch.save`` dict that rebuilds its backbone with one call.

Layout (``format: faceforge-checkpoint``)::

    {"format": "faceforge-checkpoint", "version": 2,
     "backbone": {"name", "options", "meta", "state_dict"},   # meta: input_size, template, mean, std
     "head": {"name", "options", "weight": [C, D] or None},   # full classifier, un-sharded
     "train": {...}   # optimizer, scheduler, sampler and RNG state (training checkpoints only)
     "config": {...}, "metrics": {...},
     "sha256": "..."}  # content hash of everything else (see content_hash)

Only tensors and plain Python types are stored, so checkpoints load with
``torch.load(weights_only=True)``: a received file cannot run code. The content hash covers every
tensor's bytes, dtype and shape and every plain value; it is checked on load, so flipped bytes
inside a tensor are an error instead of a silently different model.

What the hash protects: integrity (disk or transfer damage, truncation, an edit made without
re-hashing, a deleted ``sha256`` entry: version 2 files must carry it). What it does not: authenticity.
Anyone can edit a file and recompute the hash (``write_checkpoint`` does), so it says nothing about
who wrote the weights; trust a checkpoint only as far as you trust where it came from. Version 1
files (written before the hash was required) load with a one-line warning when they have none.

``load_backbone(path)`` returns the eval-mode backbone with ``model.meta`` set.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceforge.atomic import atomic_torch_save
from faceforge.errors import UserError, clean_message, warn_once

FORMAT = "faceforge-checkpoint"
VERSION = 2  # 2: the sha256 content hash is required; 1: it may be absent (older files)


def backbone_record(model: nn.Module) -> dict[str, Any]:
    meta = dict(getattr(model, "meta", {}))
    return {
        "name": meta.get("backbone"),
        "options": dict(meta.get("options", {})),
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


_PLAIN = (type(None), bool, int, float, str, bytes)


def _feed(h, obj: Any, where: str) -> None:
    """Hash ``obj`` deterministically; TypeError for anything but tensors and plain types (what
    ``weights_only`` loading accepts), naming where it sits."""
    if type(obj) in _PLAIN:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)};".encode())
        for k, v in obj.items():
            _feed(h, k, where)
            _feed(h, v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'list' if isinstance(obj, list) else 'tuple'}:{len(obj)};".encode())
        for i, v in enumerate(obj):
            _feed(h, v, f"{where}[{i}]")
    else:
        raise TypeError(f"checkpoint field {where}: {type(obj).__name__} is not a tensor or plain type")


def content_hash(obj: dict[str, Any]) -> str:
    """SHA-256 over a checkpoint's content (all keys but ``sha256``), independent of pickling."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in obj.items() if k != "sha256"}, "checkpoint")
    return h.hexdigest()


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with numpy scalars/arrays and paths turned into Python values/tensors, so that
    ``weights_only`` loading accepts it; TypeError (naming the field) for anything else."""
    if type(obj) in _PLAIN or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        out = (OrderedDict if isinstance(obj, OrderedDict) else dict)(
            (plain(k, where), plain(v, f"{where}.{k}")) for k, v in obj.items()
        )
        if hasattr(obj, "_metadata"):  # a state_dict's per-module versions
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where}: {type(obj).__name__} is not a tensor or plain type")


def write_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically with its content hash (recomputed: ``obj`` may be a loaded
    checkpoint that was changed)."""
    obj = plain({k: v for k, v in obj.items() if k != "sha256"})
    obj["version"] = VERSION  # written with its hash, so it is the current format
    obj["sha256"] = content_hash(obj)
    atomic_torch_save(obj, path)


def save_checkpoint(path: str | Path, backbone: nn.Module, **extra: Any) -> None:
    obj = {"format": FORMAT, "version": VERSION, "backbone": backbone_record(backbone)}
    obj.update(extra)
    write_checkpoint(path, obj)


def rng_state() -> dict[str, Any]:
    """torch, numpy and Python RNG states as tensors and plain types (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)  # older files: ndarray
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return clean_message(text.splitlines()[0], 200) if text else type(e).__name__


def _numpy_data_globals() -> list:
    """numpy's array/scalar reconstructors and dtypes: pure data, found in checkpoints written before
    RNG state was stored as tensors (``np.random.get_state()``, ``np.float64`` metrics). Allowing
    them keeps those files loadable under ``weights_only`` without allowing any code."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtypes = [type(np.dtype(t)) for t in (np.uint8, np.uint32, np.int32, np.int64, np.float32, np.float64,
                                          np.bool_)]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, or holding code (refused by weights_only)
        raise UserError(
            f"{path}: not a readable checkpoint, refused ({type(e).__name__}: {_first_line(e)})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(
            f"{path}: not a faceforge checkpoint (convert peer checkpoints with 'faceforge import')"
        )
    version = obj.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise UserError(f"{path}: checkpoint format version {version!r}; this faceforge reads 1 to {VERSION}")
    stored = obj.get("sha256")
    if stored is None:
        if version >= 2:
            raise UserError(f"{path}: damaged checkpoint: its sha256 content hash is missing "
                            f"(required in format version {version}); refusing unchecked weights")
        warn_once(f"{path}: format version 1 checkpoint without a content hash: loaded unchecked "
                  "(re-save it to add one)")
        return obj
    try:
        actual = content_hash(obj)
    except TypeError as e:
        raise UserError(f"{path}: damaged checkpoint ({e})") from None
    if actual != stored:
        raise UserError(f"{path}: damaged checkpoint: content hash mismatch (the file was altered)")
    return obj


def load_backbone(path: str | Path, device: str = "cpu") -> nn.Module:
    from faceforge.models import build_backbone

    rec = read_checkpoint(path)["backbone"]
    model = build_backbone(rec["name"], **rec.get("options", {}))
    model.load_state_dict(rec["state_dict"])
    model.meta.update({k: v for k, v in rec.get("meta", {}).items() if k not in ("options",)})
    model.meta["checkpoint"] = str(path)
    return model.to(device).eval()
