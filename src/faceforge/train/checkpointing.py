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
