"""The embedder interface: aligned RGB images in, features out.

``Embedder.embed(images)`` takes ``uint8`` RGB ``[B, H, W, 3]`` already aligned at
``meta.input_size`` and returns ``float32 [B, D]`` (not normalised); ``meta`` says how the model
is fed (:class:`EmbedderMeta`). Implementations: :mod:`faceforge.embed.torch_embedder` (faceforge
checkpoints), :mod:`~faceforge.embed.onnx_embedder`, :mod:`~faceforge.embed.torchscript_embedder`,
:mod:`~faceforge.embed.dlib_embedder`; :mod:`~faceforge.embed.loading` picks one for a file or spec,
:mod:`~faceforge.embed.extract` runs one over an image set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceforge.align.transform import fit_batch
from faceforge.errors import UserError

FLIPS = ("none", "sum", "concat")  # test-time flip fusion: none, add the mirror's features, append them


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero), in the input's float dtype."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.finfo(x.dtype).tiny)

@dataclass
class EmbedderMeta:
    input_size: tuple[int, int] = (112, 112)  # (H, W)
    template: str = "arcface"
    mean: float | tuple[float, ...] = 0.5
    std: float | tuple[float, ...] = 0.5
    channel_order: str = "rgb"
    embedding_size: int = 512
    name: str = "model"

    @classmethod
    def from_model_meta(cls, meta: dict[str, Any], name: str | None = None) -> EmbedderMeta:
        return cls(
            input_size=tuple(int(v) for v in meta.get("input_size", (112, 112))),
            template=str(meta.get("template", "arcface")),
            mean=meta.get("mean", 0.5),
            std=meta.get("std", 0.5),
            channel_order=str(meta.get("channel_order", "rgb")).lower(),
            embedding_size=int(meta.get("embedding_size", 512)),
            name=name or str(meta.get("backbone") or "model"),
        )


class Embedder:
    """Base class: set ``meta``; implement :meth:`embed`; :meth:`fingerprint` keys caches.

    ``card`` is the model card in use (None for a bare module) and ``card_origin`` says where it
    came from (``--card X``, beside the model, ONNX metadata, inferred ...), for ``faceforge card``
    and the one line said when no card was found (``card_note``).
    """

    meta: EmbedderMeta
    card = None
    card_origin: str = ""
    card_note: str = ""

    def embed(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError


class ConcatEmbedder(Embedder):
    """Several models, each L2-normalised, concatenated (FaceX-Zoo's feature concatenation).

    Images arrive at the largest input of the models (the first of equals) and are fitted to each
    model's own size, so an upper-half-face model gets the top half of the full crop wherever it
    is listed (it used to set the input when first, and the full-face model got a stretched half).
    """

    def __init__(self, embedders: Sequence[Embedder]):
        if not embedders:
            raise UserError("--model: at least one model is needed")
        self.embedders = list(embedders)
        first = max(self.embedders, key=lambda e: e.meta.input_size[0] * e.meta.input_size[1]).meta
        self.meta = EmbedderMeta(
            input_size=first.input_size,
            template=first.template,
            mean=first.mean,
            std=first.std,
            channel_order=first.channel_order,
            embedding_size=sum(e.meta.embedding_size for e in self.embedders),
            name="+".join(e.meta.name for e in self.embedders),
        )

    def embed(self, images: np.ndarray) -> np.ndarray:
        parts = [
            l2_normalize(e.embed(fit_batch(images, e.meta.input_size, e.meta.template)))
            for e in self.embedders
        ]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def fingerprint(self) -> str:
        return hashlib.sha1("+".join(e.fingerprint() for e in self.embedders).encode()).hexdigest()[:16]
