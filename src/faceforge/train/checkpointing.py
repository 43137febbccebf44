"""Saving and restoring sharded training state so a run can resume on another world size.

Parameters a mode shards by class (``mode.sharded()`` → ``{name: num_classes}``) are gathered into
their full [C, ...] form on save, together with their optimiser state (momentum, Adam moments),
and sliced to the new rank's class range on load.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from faceforge import distributed as D
from faceforge.errors import UserError
from faceforge.models.heads.classifier import gather_shards, shard_range


def _sharded(mode: nn.Module) -> dict[str, int]:
    return mode.sharded() if hasattr(mode, "sharded") else {}


def _optimizer_param_names(mode: nn.Module, optimizer: torch.optim.Optimizer) -> list[str | None]:
    names = {id(p): n for n, p in mode.named_parameters()}
    return [names.get(id(p)) for g in optimizer.param_groups for p in g["params"]]


def gather_sharded_state(mode: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sharded = _sharded(mode)
    mode_state = {k: v.detach().cpu() for k, v in mode.state_dict().items()}
    for name, rows in sharded.items():
        mode_state[name] = gather_shards(mode.state_dict()[name].detach(), rows)
    optim_state = _map_sharded_optimizer_state(mode, optimizer, optimizer.state_dict(), gather_shards)
    return mode_state, _to_cpu(optim_state)


def _map_sharded_optimizer_state(mode, optimizer, optim_state: dict, fn) -> dict:
    """``optim_state`` with ``fn(tensor, num_classes)`` applied to the per-class state (momentum,
    Adam moments) of every sharded parameter; other entries untouched."""
    sharded = _sharded(mode)
    if not sharded:
        return optim_state
    optim_state = copy.copy(optim_state)
    optim_state["state"] = dict(optim_state["state"])
    for idx, name in enumerate(_optimizer_param_names(mode, optimizer)):
        if name in sharded and idx in optim_state["state"]:
            entry = dict(optim_state["state"][idx])
            for k, v in entry.items():
                if torch.is_tensor(v) and v.ndim >= 1:
                    entry[k] = fn(v, sharded[name])
            optim_state["state"][idx] = entry
    return optim_state


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _local_rows(full: torch.Tensor, rows: int) -> torch.Tensor:
    start, end = shard_range(rows, D.rank(), D.world_size())
    return full[start:end]


def load_sharded_state(
    mode: nn.Module, optimizer: torch.optim.Optimizer, mode_state: dict, optim_state: dict
) -> None:
    sharded = _sharded(mode)
    state = dict(mode_state)
    for name, rows in sharded.items():
        state[name] = _local_rows(state[name], rows)
    mode.load_state_dict(state)
    optimizer.load_state_dict(_map_sharded_optimizer_state(mode, optimizer, optim_state, _local_rows))


# -- resume / init mismatches: one line naming the checkpoint's value and the config's -------------


def _mismatch(path, what: str, saved, wanted, key: str, init: bool = False) -> UserError:
    fix = "match the config to it" if init else "resume into a new output folder, or match the config to it"
    return UserError(f"{path}: {'model.init' if init else 'resume'}: the checkpoint's {what} is {saved!r}, "
                     f"the config's ({key}) is {wanted!r}; {fix}")


def _backbone_checks(path, rec: dict, cfg, init: bool) -> None:
    """Backbone name and embedding size of a checkpoint's record against ``cfg.model``."""
    name = rec.get("name")
    if name != cfg.model.backbone:
        raise _mismatch(path, "backbone", name, cfg.model.backbone, "model.backbone", init)
    meta = rec.get("meta") or {}
    size = meta.get("embedding_size", (rec.get("options") or {}).get("embedding_size"))
    if size is not None and size != cfg.model.embedding_size:
        raise _mismatch(path, "embedding size", size, cfg.model.embedding_size, "model.embedding_size", init)


def load_weights(backbone: nn.Module, path, rec: dict, cfg, init: bool = False) -> None:
    """``rec``'s state_dict into ``backbone``; a shape or key mismatch left after the name and size
    checks (other build options: width, input size, ...) is one line naming both option sets."""
    _backbone_checks(path, rec, cfg, init)
    try:
        backbone.load_state_dict(rec["state_dict"])
    except RuntimeError as e:
        saved = {k: v for k, v in (rec.get("options") or {}).items() if k != "embedding_size"}
        wanted = {k: v for k, v in cfg.model.options.items() if k != "embedding_size"}
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))[:160]
        verb = "model.init" if init else "resume"
        raise UserError(f"{path}: {verb}: the checkpoint's backbone options are {saved!r}, the config's "
                        f"(model.*) are {wanted!r}: the weights do not fit ({detail})") from None


def check_resume(path, ckpt: dict, cfg, num_classes: int) -> None:
    """Refuse, in one line, a training checkpoint that cannot continue this config: another
    backbone or embedding size, another head, another number of classes."""
    _backbone_checks(path, ckpt.get("backbone") or {}, cfg, init=False)
    head = ckpt.get("head") or {}
    if head.get("name") is not None and head["name"] != cfg.head.name:
        raise _mismatch(path, "head", head["name"], cfg.head.name, "head.name")
    weight = head.get("weight")
    if isinstance(weight, torch.Tensor) and weight.ndim == 2 and weight.shape[0] != num_classes:
        raise UserError(f"{path}: resume: the checkpoint's classifier has {weight.shape[0]} classes, the "
                        f"training data ({cfg.data.train}) has {num_classes}; resume with the same data")


def load_init(backbone: nn.Module, path: str, cfg) -> None:
    """``model.init``: start ``backbone`` from a checkpoint's weights, refusing in one line a
    checkpoint of another backbone, embedding size or build options."""
    from faceforge.models.checkpoint import read_checkpoint

    load_weights(backbone, path, read_checkpoint(path).get("backbone") or {}, cfg, init=True)
