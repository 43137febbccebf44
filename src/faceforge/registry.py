"""Name -> builder registries.

A family file registers its variants where it defines them::

    @BACKBONES.register("mobilefacenet", input_size=(112, 112), template="arcface")
    def mobilefacenet(embedding_size=512): ...

Lookup imports every module of the registry's package once, so adding a model is one new
file and nothing else.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faceforge.errors import UserError, closest


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, inspect.Parameter]:
        params = inspect.signature(self.fn).parameters
        return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def accepts_any_kwargs(self) -> bool:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.fn).parameters.values())


class Registry:
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry] = {}
        self._loaded = package is None

    def register(self, name: str, **meta: Any) -> Callable:
        def deco(fn: Callable) -> Callable:
            if name in self._entries and self._entries[name].fn is not fn:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(name, fn, dict(meta))
            return fn

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        self._load()
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} '{name}': {closest(name, self._entries)}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def build(self, name: str, where: str | None = None, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs``; an unknown keyword is a UserError naming ``where``."""
        entry = self.entry(name)
        valid = entry.parameters()
        loc = f"{where}." if where else ""
        for key, value in kwargs.items():
            if key in valid:
                problem = option_problem(valid[key], value)
                if problem:
                    raise UserError(f"{self.kind} '{name}' option '{loc}{key}': {problem}")
            elif not entry.accepts_any_kwargs():
                raise UserError(f"{self.kind} '{name}' has no option '{loc}{key}': {closest(key, valid)}")
        return entry.fn(**kwargs)


_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


def _declared(param: inspect.Parameter) -> tuple[type | None, bool]:
    """(the scalar type or tuple/list a parameter declares, whether None is allowed), from its
    annotation (``int``, ``float | None``, ...) or, failing that, its default's type (an annotation
    wins: ``m: float = 4`` takes 1.5, ``det_size: int | str | None = 640`` takes None)."""
    default = param.default
    ann = param.annotation
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", "") if ann is not param.empty else ""
    parts = [t.strip() for t in text.split("|")] if text else []
    kinds = [_KINDS[t] for t in parts if t in _KINDS]
    if kinds or "None" in parts:
        return (kinds[0] if len(kinds) == 1 else None), ("None" in parts or default is None)
    if default is not param.empty and default is not None:
        return type(default), False
    return None, True


def option_problem(param: inspect.Parameter, value: Any) -> str | None:
    """Why ``value`` (typically parsed from ``--option``/``--set`` text) does not fit the type
    ``param`` declares, or None when it fits or nothing is declared."""
    kind, optional = _declared(param)
    if kind is None or (value is None and optional):
        return None
    if kind in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return f"expected a list such as {list(param.default)!r}, got {value!r}"
        sample = param.default[0] if param.default else None
        if type(sample) in (int, float, bool, str):
            for v in value:
                problem = _scalar_problem(type(sample), v)
                if problem:
                    return f"{problem} (inside {value!r})"
        return None
    return _scalar_problem(kind, value) if kind in (int, float, bool, str) else None


def _scalar_problem(kind: type, value: Any) -> str | None:
    import math

    if kind is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else (
            f"expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        return None if math.isfinite(value) else f"expected a finite number, got {value!r}"
    return None if isinstance(value, str) else f"expected a string, got {value!r}"


BACKBONES = Registry("backbone", "faceforge.models.backbones")
MARGINS = Registry("head", "faceforge.models.heads")
DETECTORS = Registry("detector", "faceforge.align.detectors")
MODES = Registry("training mode", "faceforge.train.modes")
