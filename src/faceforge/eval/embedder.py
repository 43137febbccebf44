"""One embedder interface for every evaluation: aligned RGB images in, features out.

``Embedder.embed(images)`` takes ``uint8`` RGB ``[B, H, W, 3]`` already aligned at
``meta.input_size`` and returns ``float32 [B, D]`` (not normalised). :func:`embed_images` batches a
whole image set through a torch ``DataLoader``, fits each image to the model's input, skips
corrupt images and applies test-time flipping.

Fitting a 112x112 ArcFace-aligned crop to a 112x96 model (the SphereFace template) takes columns
8..104: the SphereFace template is the ArcFace one shifted 8 px left (arcface_torch's
``norm_crop`` adds 8.0 to the x of the 96-wide reference points), so the centre crop is exact,
not an approximation. Any other size mismatch is a bilinear resize (area when shrinking).

Loaders are picked by file suffix from :data:`LOADERS`; the deployment code adds ONNX and
TorchScript loaders with :func:`register_loader` (``@register_loader(".onnx")``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.align.transform import fit_batch, fit_to_input  # noqa: F401  (re-exported)
from faceforge.errors import UserError

FLIPS = ("none", "sum", "concat")


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
    """Base class: set ``meta``; implement :meth:`embed`; :meth:`fingerprint` keys caches."""

    meta: EmbedderMeta

    def embed(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# image fitting


# --------------------------------------------------------------------------------------------
# torch models


def _state_fingerprint(model) -> str:
    h = hashlib.sha1()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class TorchEmbedder(Embedder):
    """A backbone (``forward(x[B,3,H,W]) -> [B,D]``, ``model.meta`` as set by ``build_backbone``)."""

    def __init__(self, model, device: str = "cpu", name: str | None = None, source: str | None = None):
        import torch

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        meta = dict(getattr(model, "meta", {}) or {})
        if "embedding_size" not in meta and hasattr(model, "embedding_size"):
            meta["embedding_size"] = int(model.embedding_size)
        self.meta = EmbedderMeta.from_model_meta(meta, name)
        self.source = source or meta.get("checkpoint")
        # scalar or per-channel (RGB) normalisation, broadcast over [B, 3, H, W]
        self._mean = torch.as_tensor(self.meta.mean, dtype=torch.float32).reshape(1, -1, 1, 1).to(self.device)
        self._std = torch.as_tensor(self.meta.std, dtype=torch.float32).reshape(1, -1, 1, 1).to(self.device)

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        images = np.ascontiguousarray(images)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}")
        if self.meta.channel_order == "bgr":
            images = np.ascontiguousarray(images[..., ::-1])
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self._mean) / self._std
        with torch.inference_mode():
            out = self.model(x)
        if isinstance(out, dict):  # a model returning named outputs gives its embedding by name
            out = out["embedding"]
        return out.float().cpu().numpy()

    def fingerprint(self) -> str:
        if self.source and Path(self.source).is_file():
            st = Path(self.source).stat()
            return hashlib.sha1(
                f"{Path(self.source).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
            ).hexdigest()[:16]
        return _state_fingerprint(self.model)


class ConcatEmbedder(Embedder):
    """Several models, each L2-normalised, concatenated (FaceX-Zoo's feature concatenation).

    Images arrive at the first model's input size and are fitted to each model's own size.
    """

    def __init__(self, embedders: Sequence[Embedder]):
        if not embedders:
            raise UserError("--model: at least one model is needed")
        self.embedders = list(embedders)
        first = self.embedders[0].meta
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
        from faceforge.eval.verification import l2_normalize

        parts = [
            l2_normalize(e.embed(fit_batch(images, e.meta.input_size, e.meta.template)))
            for e in self.embedders
        ]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def fingerprint(self) -> str:
        return hashlib.sha1("+".join(e.fingerprint() for e in self.embedders).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# loading

LOADERS: dict[str, Callable[[Path, str], Embedder]] = {}


def register_loader(*suffixes: str) -> Callable:
    """Register ``fn(path, device) -> Embedder`` for files ending in ``suffixes`` (``.onnx``)."""

    def deco(fn):
        for s in suffixes:
            LOADERS[s.lower()] = fn
        return fn

    return deco


@register_loader(".ckpt", ".pt", ".pth")
def load_faceforge_checkpoint(path: Path, device: str = "cpu") -> Embedder:
    from faceforge.models.checkpoint import load_backbone

    model = load_backbone(path, device=device)
    return TorchEmbedder(model, device, name=Path(path).stem, source=str(path))


SPEC_LOADERS: dict[str, Callable[..., Embedder]] = {}


def register_spec(prefix: str) -> Callable:
    """Register ``fn(rest, device, card=None) -> Embedder`` for specs ``prefix:rest`` (``dlib:resnet``)."""

    def deco(fn):
        SPEC_LOADERS[prefix] = fn
        return fn

    return deco


def _load_plugins() -> None:
    """The deployment loaders (ONNX, TorchScript, dlib) register themselves on import (light imports)."""
    import faceforge.deploy.dlib_embedder  # noqa: F401
    import faceforge.deploy.onnx_embedder  # noqa: F401
    import faceforge.deploy.torchscript_embedder  # noqa: F401


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
    loader = LOADERS.get(path.suffix.lower(), LOADERS.get(".ckpt", load_faceforge_checkpoint))
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


# --------------------------------------------------------------------------------------------
# batched extraction


@dataclass
class Embeddings:
    """Features of an image set: ``features`` [N, D] float32 (zero rows where ``valid`` is False)."""

    features: np.ndarray
    valid: np.ndarray
    corrupt: list[str] = field(default_factory=list)

    @property
    def num_corrupt(self) -> int:
        return int((~self.valid).sum())


class _ImageSet:
    """``torch.utils.data.Dataset`` over anything with ``read(i)`` (or a list of arrays / paths)."""

    def __init__(self, source, size, template: str = "arcface"):
        self.source, self.size, self.template = source, size, template

    def __len__(self) -> int:
        return len(self.source.images) if hasattr(self.source, "images") else len(self.source)

    def _read(self, i: int) -> np.ndarray:
        from faceforge.data.dataset import read_image

        if hasattr(self.source, "read"):
            return self.source.read(i)
        item = self.source[i]
        return item if isinstance(item, np.ndarray) else read_image(item)

    def __getitem__(self, i: int):
        from faceforge.data.dataset import CorruptImage

        try:
            img = self._read(i)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise CorruptImage(f"image {i}: not an RGB uint8 image")
            return i, np.ascontiguousarray(fit_to_input(img, self.size, self.template)), ""
        except CorruptImage as e:
            return i, None, str(e)


def _collate(batch):
    idx = [i for i, img, _ in batch if img is not None]
    imgs = np.stack([img for _, img, _ in batch if img is not None]) if idx else None
    bad = [(i, msg) for i, img, msg in batch if img is None]
    return idx, imgs, bad


def _flip_features(embedder: Embedder, imgs: np.ndarray, flip: str) -> np.ndarray:
    feats = embedder.embed(imgs)
    if flip == "none":
        return feats
    flipped = embedder.embed(np.ascontiguousarray(imgs[:, :, ::-1]))
    return feats + flipped if flip == "sum" else np.concatenate([feats, flipped], axis=1)


def embed_images(
    embedder: Embedder,
    images,
    batch_size: int = 64,
    flip: str = "none",
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Embeddings:
    """Features of every image in ``images`` (a PairSet, a FaceDataset, a list of arrays or paths).

    ``flip``: ``none``; ``sum`` adds the horizontally flipped image's features (arcface_torch);
    ``concat`` appends them (doubles D). Corrupt images are skipped: their row is zero and
    ``valid`` is False.
    """
    from torch.utils.data import DataLoader

    if flip not in FLIPS:
        raise UserError(f"--flip '{flip}': expected one of {', '.join(FLIPS)}")
    dataset = _ImageSet(images, embedder.meta.input_size, embedder.meta.template)
    n = len(dataset)
    dim = embedder.meta.embedding_size * (2 if flip == "concat" else 1)
    feats = np.zeros((n, dim), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    corrupt: list[str] = []
    loader = DataLoader(
        dataset,
        batch_size=max(1, int(batch_size)),
        shuffle=False,
        num_workers=int(workers),
        collate_fn=_collate,
    )
    done = 0
    for idx, imgs, bad in loader:
        corrupt.extend(msg for _, msg in bad)
        if idx:
            out = _flip_features(embedder, imgs, flip)
            if out.shape[1] != dim:
                if valid.any():
                    raise RuntimeError(
                        f"model output width changed between batches ({dim} -> {out.shape[1]})"
                    )
                dim = out.shape[1]  # the meta's embedding_size was wrong: trust the model
                feats = np.zeros((n, dim), dtype=np.float32)
            feats[idx] = out
            valid[idx] = True
        done += len(idx) + len(bad)
        if progress:
            progress(done, n)
    return Embeddings(feats, valid, corrupt)
