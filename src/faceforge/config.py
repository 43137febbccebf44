"""Typed, strict configs: dataclasses loaded from YAML with ``--set a.b=c`` overrides.

An unknown key, a value of the wrong type or out of its range is a one-line :class:`UserError`
naming the key and, for unknown keys, the closest valid one. Ranges are declared beside the fields
(a ``RANGES`` class variable of :class:`Bound` per field) and checked when a config is loaded, so
``data.batch_size=-4`` never becomes a run of 0 steps; no float field takes NaN or infinity.
Sections that forward options to a registered component (``model``, ``head``) keep unknown keys in
``options``; the registry checks them against the component's signature when it is built.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceforge.errors import UserError, closest


@dataclass(frozen=True)
class Bound:
    """An allowed numeric range: ``low <= v`` (``low < v`` if ``open_low``) and ``v <= high``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def check(self, value: Any, where: str) -> None:
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.check(v, f"{where}[{i}]")
            return
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        lo_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        hi_ok = self.high is None or (value < self.high if self.open_high else value <= self.high)
        if not (lo_ok and hi_ok):
            raise UserError(f"{where}: must be {self}, got {value!r}")

    def __str__(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else str(x)

        if self.high is None:
            return f"{'>' if self.open_low else '>='} {num(self.low)}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {num(self.high)}"
        return (f"in {'(' if self.open_low else '['}{num(self.low)}, {num(self.high)}"
                f"{')' if self.open_high else ']'}")


def at_least(x: float) -> Bound:
    return Bound(low=x)


def above(x: float) -> Bound:
    return Bound(low=x, open_low=True)


POSITIVE, COUNT, NON_NEGATIVE = above(0), at_least(1), at_least(0)


@dataclass
class DataConfig:
    train: str = "synthetic:200x20"
    val: str | None = None  # a pairs source, e.g. "pairs:runs/demo/test/pairs.txt"
    batch_size: int = 64
    workers: int = 0
    flip: bool = True
    identities_min_images: int = 1
    verify_crc: bool = False  # packed sources: check every record's CRC at open (a full read)

    RANGES: typing.ClassVar[dict[str, Bound]] = {
        "batch_size": COUNT, "workers": NON_NEGATIVE, "identities_min_images": COUNT,
    }


@dataclass
class ModelConfig:
    backbone: str = "mobilefacenet"
    embedding_size: int = 512
    init: str | None = None  # fine-tune: start the backbone from this checkpoint
    options: dict[str, Any] = field(default_factory=dict)

    RANGES: typing.ClassVar[dict[str, Bound]] = {"embedding_size": COUNT}


@dataclass
class HeadConfig:
    name: str = "arcface"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"  # step | poly | cosine
    lr_steps: list[float] = field(default_factory=list)  # epochs at which lr *= gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    power: float = 2.0  # poly schedule exponent
    grad_clip: float = 0.0
    grad_clip_scope: str = "all"  # all | backbone (arcface_torch's train_v2 clips the backbone only)
    no_decay_norm: bool = True  # no weight decay on BatchNorm/PReLU weights and biases
    backbone_lr_mult: float = 1.0  # < 1 when fine-tuning an imported backbone with a new head
    head_warmup_epochs: float = 0.0  # fine-tuning: the backbone's learning rate is 0 for these epochs

    RANGES: typing.ClassVar[dict[str, Bound]] = {
        "lr": POSITIVE, "momentum": Bound(0, 1, open_high=True), "weight_decay": NON_NEGATIVE,
        "lr_steps": NON_NEGATIVE, "gamma": POSITIVE, "warmup_epochs": NON_NEGATIVE, "power": POSITIVE,
        "grad_clip": NON_NEGATIVE, "backbone_lr_mult": NON_NEGATIVE, "head_warmup_epochs": NON_NEGATIVE,
    }


@dataclass
class TrainConfig:
    mode: str = "conventional"
    epochs: int = 10
    max_minutes: float = 0.0  # 0 = no wall-clock budget
    max_steps: int = 0  # 0 = no step budget
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32) | fp32 | bf16 | fp16
    log_every: int = 10
    grad_accum: int = 1
    deterministic: bool = False
    channels_last: bool | None = None  # null = on for CUDA
    compile: bool | str = False  # true, or a torch.compile mode ("max-autotune", ...)
    cuda_graphs: bool = False  # replay the backbone's static-shape step as CUDA graphs (CUDA only)
    save_every_steps: int = 0  # extra mid-epoch checkpoints (0 = at epoch ends only)
    keep: str = "last"  # last | all | best (by validation accuracy)
    val_every_epochs: int = 1
    tensorboard: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    RANGES: typing.ClassVar[dict[str, Bound]] = {
        "epochs": COUNT, "max_minutes": NON_NEGATIVE, "max_steps": NON_NEGATIVE, "log_every": COUNT,
        "grad_accum": COUNT, "save_every_steps": NON_NEGATIVE, "val_every_epochs": COUNT,
    }


@dataclass
class ExperimentConfig:
    seed: int = 0
    output: str = "runs/experiment"
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow int->float. Raise UserError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except UserError as e:
                errors.append(e)
        raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: dict, where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key == "options" or key not in names:
            if "options" in names and key != "options":
                extra[key] = value  # forwarded to the component; checked against its signature
                continue
            if key not in names:
                raise UserError(f"unknown config key '{path}': {closest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], path)
        bound = getattr(cls, "RANGES", {}).get(key)
        if bound is not None:
            bound.check(kwargs[key], path)
    if extra:
        kwargs["options"] = {**kwargs.get("options", {}), **extra}
    return cls(**kwargs)


def from_dict(cls: type, data: dict) -> Any:
    return _from_dict(cls, data or {})


def to_dict(cfg: Any) -> dict:
    out = dataclasses.asdict(cfg)

    def flatten_options(d: dict) -> dict:
        res = {}
        for k, v in d.items():
            if k == "options" and isinstance(v, dict):
                res.update(v)
            elif isinstance(v, dict):
                res[k] = flatten_options(v)
            else:
                res[k] = v
        return res

    return flatten_options(out)


def parse_scalar(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as YAML (numbers, bools, lists)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"--set '{item}': expected key=value, e.g. head.m=0.45")
        key, _, raw = item.partition("=")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set '{item}': '{part}' is not a section")
        node[parts[-1]] = parse_scalar(raw)
    return data


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}{at}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at top level")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None, cls=ExperimentConfig):
    data = load_yaml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(cls, data)
    except UserError as e:
        if path:
            raise UserError(f"{path}: {e}") from None
        raise
