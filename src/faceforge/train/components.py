"""The config keys that belong to a component (``model.*``, ``head.*``, ``train.*`` options) and the
check that names the closest real key when one is misspelt.

The ``model``, ``head`` and ``train`` sections forward keys they do not declare to the registered
backbone, margin and training mode. Checked here, before anything is built, an unknown key is
compared with every key of the config (``train.steps`` -> ``train.max_steps``), not only with the
component's own options; an unknown backbone name lists the closest backbones with their input size
and MACs, so ``tiny`` does not silently point at a 224x224 transformer.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from faceforge.config import ExperimentConfig, closest_keys, config_keys
from faceforge.errors import UserError
from faceforge.registry import BACKBONES, MARGINS, MODES, Registry

# arguments the trainer passes itself, never config keys
_RESERVED = {"model": {"embedding_size"}, "head": set(), "train": {"backbone", "num_classes", "cfg"}}


def component_sections(cfg: ExperimentConfig) -> list[tuple[str, Registry, str, dict]]:
    """``(section, registry, chosen name, its options)`` of the model, head and training mode."""
    return [("model", BACKBONES, cfg.model.backbone, cfg.model.options),
            ("head", MARGINS, cfg.head.name, cfg.head.options),
            ("train", MODES, cfg.train.mode, cfg.train.options)]


def component_options(registry: Registry, name: str, section: str) -> list[dict[str, Any]]:
    """``key, value (default), type, help`` of a component's build options (its signature)."""
    entry = registry.entry(name)
    rows = []
    for key, p in entry.parameters().items():
        if key in _RESERVED[section] or key == "self":
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        kind = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        if not kind or kind == "_empty":
            kind = type(default).__name__ if default is not None else "any"
        rows.append({"key": f"{section}.{key}", "value": default, "type": kind, "range": "",
                     "help": f"option of {registry.kind} '{name}'"})
    return rows


def all_keys(cfg: ExperimentConfig) -> list[str]:
    """Every key this config can take: the declared ones and its components' options."""
    keys = config_keys(type(cfg))
    for section, registry, name, _ in component_sections(cfg):
        if name in registry:
            keys += [r["key"] for r in component_options(registry, name, section)]
    return keys


def backbone_suggestions(name: str, n: int = 4) -> str:
    """The backbones whose name is most like ``name``, each with input size and MACs. A name that is
    one part of backbone names (``tiny``) lists those first, the cheapest first — a word such as
    ``tiny`` asks for a small model — then the closest spellings."""
    from faceforge.models import backbone_meta
    from faceforge.models.complexity import backbone_complexity, human

    names = BACKBONES.names()
    word = name.lower()
    parts = [b for b in names if word in b.split("_") or (len(word) > 2 and word in b)]
    macs = {b: backbone_complexity(b).macs for b in parts}
    ranked = sorted(parts, key=lambda b: (word not in b.split("_"), macs[b]))
    ranked += [b for b in difflib.get_close_matches(word, names, n=n, cutoff=0.4) if b not in ranked]
    if not ranked:
        return "see 'faceforge models' for every backbone"
    shown = []
    for b in ranked[:n]:
        h, w = backbone_meta(b)["input_size"]
        shown.append(f"{b} ({h}x{w}, {human(macs.get(b) or backbone_complexity(b).macs)} MACs)")
    return "closest: " + ", ".join(shown) + " (every backbone: faceforge models)"


def check_components(cfg: ExperimentConfig) -> None:
    """An unknown component name or option is a one-line :class:`UserError` naming the closest real
    names/keys, before anything is built."""
    for section, registry, name, options in component_sections(cfg):
        field = {"model": "backbone", "head": "name", "train": "mode"}[section]
        if name not in registry:
            if registry is BACKBONES:
                raise UserError(f"model.backbone: unknown backbone '{name}'; {backbone_suggestions(name)}")
            try:
                registry.entry(name)
            except UserError as e:
                raise UserError(f"{section}.{field}: {e}") from None
        entry = registry.entry(name)
        if entry.accepts_any_kwargs():
            continue
        valid = {r["key"].partition(".")[2] for r in component_options(registry, name, section)}
        for key in options:
            if key not in valid:
                where = f"{section}.{key}"
                raise UserError(f"unknown config key '{where}' ({section}.{field} '{name}' has no option "
                                f"'{key}'): {closest_keys(where, all_keys(cfg))}")
