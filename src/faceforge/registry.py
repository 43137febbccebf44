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
        if not entry.accepts_any_kwargs():
            valid = entry.parameters()
            for key in kwargs:
                if key not in valid:
                    loc = f"{where}." if where else ""
                    raise UserError(
                        f"{self.kind} '{name}' has no option '{loc}{key}': {closest(key, valid)}"
                    )
        return entry.fn(**kwargs)


BACKBONES = Registry("backbone", "faceforge.models.backbones")
MARGINS = Registry("head", "faceforge.models.heads")
DETECTORS = Registry("detector", "faceforge.align.detectors")
MODES = Registry("training mode", "faceforge.train.modes")
