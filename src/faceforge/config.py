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
    record_crc: bool = True  # packed sources: check each record's CRC as it is read (skip + count bad)

    RANGES: typing.ClassVar[dict[str, Bound]] = {
        "batch_size": COUNT, "workers": NON_NEGATIVE, "identities_min_images": COUNT,
    }
    HELP: typing.ClassVar[dict[str, str]] = {
        "train": "training images: folder:DIR, rec:DIR, packed:F.ffpk, list:F, synthetic:NxK or a path",
        "val": "verification pairs checked during training, e.g. pairs:FILE or bin:lfw.bin (null = none)",
        "batch_size": "images per step on each process",
        "workers": "DataLoader worker processes decoding images (0 = in the training process)",
        "flip": "random horizontal flips",
        "identities_min_images": "drop identities with fewer images than this",
        "verify_crc": "packed sources: check every record's CRC when opening (a full read)",
        "record_crc": "packed sources: check each record's CRC as read (damaged: skipped, counted)",
    }


@dataclass
class ModelConfig:
    backbone: str = "mobilefacenet"
    embedding_size: int = 512
    init: str | None = None  # fine-tune: start the backbone from this checkpoint
    options: dict[str, Any] = field(default_factory=dict)

    RANGES: typing.ClassVar[dict[str, Bound]] = {"embedding_size": COUNT}
    HELP: typing.ClassVar[dict[str, str]] = {
        "backbone": "registered backbone name (faceforge models lists them with input size and MACs)",
        "embedding_size": "width of the embedding the backbone outputs",
        "init": "fine-tune: start the backbone from this checkpoint (null = random init)",
        "options": "other keys are the backbone's build options (listed below)",
    }


@dataclass
class HeadConfig:
    name: str = "arcface"
    options: dict[str, Any] = field(default_factory=dict)

    HELP: typing.ClassVar[dict[str, str]] = {
        "name": "margin / loss head (its options are listed below)",
        "options": "other keys are the head's options (listed below), e.g. head.m=0.45",
    }


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
    HELP: typing.ClassVar[dict[str, str]] = {
        "name": "optimiser: sgd or adamw",
        "lr": "peak learning rate (after warm-up)",
        "momentum": "SGD momentum",
        "weight_decay": "L2 weight decay",
        "schedule": "learning-rate schedule: step | poly | cosine",
        "lr_steps": "step schedule: epochs at which lr *= gamma",
        "gamma": "step schedule: factor applied at each of lr_steps",
        "warmup_epochs": "linear warm-up length in epochs",
        "power": "poly schedule exponent",
        "grad_clip": "clip the gradient norm to this (0 = off)",
        "grad_clip_scope": "what grad_clip clips: all | backbone",
        "no_decay_norm": "no weight decay on BatchNorm/PReLU weights and biases",
        "backbone_lr_mult": "backbone lr multiplier (< 1 when fine-tuning with a new head)",
        "head_warmup_epochs": "fine-tuning: backbone lr is 0 for these epochs (the new head learns)",
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
    HELP: typing.ClassVar[dict[str, str]] = {
        "mode": "training mode (its options are listed below)",
        "epochs": "passes over the training data (the run stops at the first budget reached)",
        "max_minutes": "wall-clock budget in minutes (0 = none); a checkpoint is written when it ends",
        "max_steps": "optimiser-step budget (0 = none); the lr schedule ends there",
        "precision": "auto (bf16 on CUDA, else fp32) | fp32 | bf16 | fp16",
        "log_every": "steps between metrics.jsonl records and progress-bar updates",
        "grad_accum": "split each batch into this many chunks (same result, less memory)",
        "deterministic": "deterministic kernels (slower; for exact repeats)",
        "channels_last": "channels-last memory format (null = on for CUDA)",
        "compile": "torch.compile the backbone: true, or a mode such as max-autotune",
        "cuda_graphs": "replay the backbone's step as CUDA graphs (CUDA only)",
        "save_every_steps": "extra mid-epoch checkpoints every N steps (0 = at epoch ends only)",
        "keep": "checkpoints kept: last | all (one per epoch) | best (by validation accuracy)",
        "val_every_epochs": "validate every N epochs (needs data.val)",
        "tensorboard": "write TensorBoard scalars to OUTPUT/tensorboard",
        "options": "other keys are the training mode's options (listed below)",
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

    HELP: typing.ClassVar[dict[str, str]] = {
        "seed": "random seed (data order, init, augmentation)",
        "output": "folder for checkpoints, metrics.jsonl and config.yaml",
        "device": "cpu, cuda, cuda:N or auto",
    }


# ---------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (list, dict):
        return str(tp).replace("typing.", "")
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
                raise UnknownKey(path, f"unknown config key '{path}': {closest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], path)
        bound = getattr(cls, "RANGES", {}).get(key)
        if bound is not None:
            bound.check(kwargs[key], path)
    if extra:
        kwargs["options"] = {**kwargs.get("options", {}), **extra}
    return cls(**kwargs)


class UnknownKey(UserError):
    """A key no section has; :func:`from_dict` names the closest keys of the whole config."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def from_dict(cls: type, data: dict) -> Any:
    try:
        return _from_dict(cls, data or {})
    except UnknownKey as e:
        hint = closest_keys(e.key, config_keys(cls))
        raise UnknownKey(e.key, f"unknown config key '{e.key}': {hint}") from None


def config_keys(cls: type = ExperimentConfig, where: str = "") -> list[str]:
    """Every dotted key of a config class (``train.max_steps``, ...), ``options`` left out."""
    keys = []
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += config_keys(tp, path)
        elif f.name != "options":
            keys.append(path)
    return keys


def closest_keys(key: str, keys: list[str], n: int = 3) -> str:
    """``did you mean 'train.max_steps', ...?`` over the dotted ``keys`` of every section: the whole
    key and its last part are both compared (``train.steps`` -> ``train.max_steps``, ``steps`` ->
    ``train.max_steps``), a key in the same section wins a tie."""
    import difflib

    leaf, section = key.rpartition(".")[2], key.rpartition(".")[0]

    def score(k: str) -> float:
        k_section, _, k_leaf = k.rpartition(".")
        whole = difflib.SequenceMatcher(None, key, k).ratio()
        part = difflib.SequenceMatcher(None, leaf, k_leaf).ratio()
        if leaf and leaf in k_leaf:
            part = max(part, 0.8)
        return max(whole, part) + (0.05 if k_section == section else 0.0)

    ranked = sorted(keys, key=lambda k: -score(k))
    near = [k for k in ranked if score(k) >= 0.6][:n]
    if not near:
        return "see 'faceforge config' for every key"
    return "did you mean " + ", ".join(f"'{k}'" for k in near) + "? (every key: faceforge config)"


def describe(cfg: Any, where: str = "") -> list[dict[str, Any]]:
    """One row per key of a loaded config: ``key, value, type, range, help`` (sections recurse;
    a section's ``options`` are listed by the caller, who knows the component)."""
    rows = []
    cls = type(cfg)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe(value, path)
            continue
        if f.name == "options":
            continue
        bound = getattr(cls, "RANGES", {}).get(f.name)
        rows.append({"key": path, "value": value, "type": _type_name(hints[f.name]),
                     "range": str(bound) if bound else "", "help": getattr(cls, "HELP", {}).get(f.name, "")})
    return rows


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


def recipes() -> dict[str, Path]:
    """The recipes shipped inside the package (``faceforge/recipes/*.yaml``), by name."""
    folder = Path(__file__).resolve().parent / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config(path: str | Path) -> Path:
    """A config file: ``path`` itself when it exists, else the built-in recipe of that name
    (``mobilefacenet_arcface``, with or without ``.yaml``, or ``configs/NAME.yaml`` of a clone)."""
    p = Path(path)
    if p.is_file():
        return p
    known = recipes()
    name = p.name.removesuffix(".yaml").removesuffix(".yml")
    if name in known and (p.parent == Path(".") or p.parent.name == "configs"):
        return known[name]
    if p.exists():
        raise UserError(f"{path}: a config must be a YAML file, not a folder")
    raise UserError(f"config file not found: {path} (nor a built-in recipe of that name: "
                    f"{closest(name, known)}; see 'faceforge config --recipes')")


def load_yaml(path: str | Path) -> dict:
    import yaml

    from faceforge.io.text import read_text

    path = resolve_config(path)
    text = read_text(path)  # not UTF-8 or unreadable: one line naming the file (and line)
    try:
        data = yaml.safe_load(text) or {}
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
