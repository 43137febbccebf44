"""Which embedder a ``--model`` names: a file picked by suffix (faceforge checkpoint by default,
``.onnx``, TorchScript) or a spec such as ``dlib:resnet``; several are concatenated.

Loaders register themselves where they are defined (``@register_loader(".onnx")``,
``@register_spec("dlib")``); :func:`load_embedder` imports those modules once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from faceforge.embed.base import ConcatEmbedder, Embedder
from faceforge.errors import UserError

LOADERS: dict[str, Callable[[Path, str], Embedder]] = {}


def register_loader(*suffixes: str) -> Callable:
    """Register ``fn(path, device) -> Embedder`` for files ending in ``suffixes`` (``.onnx``)."""

    def deco(fn):
        for s in suffixes:
            LOADERS[s.lower()] = fn
        return fn

    return deco


SPEC_LOADERS: dict[str, Callable[..., Embedder]] = {}


def register_spec(prefix: str) -> Callable:
    """Register ``fn(rest, device, card=None) -> Embedder`` for specs ``prefix:rest`` (``dlib:resnet``)."""

    def deco(fn):
        SPEC_LOADERS[prefix] = fn
        return fn

    return deco


def _load_plugins() -> None:
    """Every loader module registers itself on import (light imports)."""
    import faceforge.embed.dlib_embedder  # noqa: F401
    import faceforge.embed.onnx_embedder  # noqa: F401
    import faceforge.embed.torch_embedder  # noqa: F401
    import faceforge.embed.torchscript_embedder  # noqa: F401


def load_embedder(path_or_spec: str | Path | Embedder, device: str = "cpu", card=None) -> Embedder:
    """An :class:`Embedder` from a model file, picked by suffix (faceforge checkpoint by default),
    or a spec such as ``dlib:resnet``. ``card``: a model card (path or ``ModelCard``) saying how to
    feed the model (``--card``); without one, a card beside the model file is used when present."""
    if isinstance(path_or_spec, Embedder):
        return path_or_spec
    _load_plugins()
    spec = str(path_or_spec)
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SPEC_LOADERS and not Path(spec).exists():
        return SPEC_LOADERS[prefix](rest, device, card=card)
    path = Path(path_or_spec)
    if not path.exists():
        raise UserError(f"--model: file not found: {path}")
    loader = LOADERS.get(path.suffix.lower(), LOADERS[".ckpt"])
    return loader(path, device) if card is None else loader(path, device, card=card)


def load_embedders(
    models: Sequence[str | Path | Embedder], device: str = "cpu", cards: Sequence | None = None
) -> Embedder:
    """One model, or several concatenated (each normalised) when more than one is given.

    ``cards`` are matched to ``models`` by position (``--card`` after each ``--model``)."""
    cards = list(cards or [])
    if len(cards) > len(models):
        raise UserError(f"--card: {len(cards)} cards for {len(models)} models (matched by position)")
    cards += [None] * (len(models) - len(cards))
    embedders = [load_embedder(m, device, c) for m, c in zip(models, cards)]
    if not embedders:
        raise UserError("--model: at least one model is needed")
    return embedders[0] if len(embedders) == 1 else ConcatEmbedder(embedders)
