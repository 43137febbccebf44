"""Batched feature extraction over an image set: fit each image to the model's input, skip
corrupt images, test-time flipping.

Fitting a 112x112 ArcFace-aligned crop to a 112x96 model (the SphereFace template) takes columns
8..104: the SphereFace template is the ArcFace one shifted 8 px left (arcface_torch's
``norm_crop`` adds 8.0 to the x of the 96-wide reference points), so the centre crop is exact,
not an approximation. Any other size mismatch is a bilinear resize (area when shrinking).

An image whose size is none of an aligned crop's (the model's input, 112x112, 112x96, 128x128 or a
small multiple of one) is counted in ``Embeddings.unaligned``: a raw 250x250 LFW photo resized
whole scores far below its aligned crop (66% for one model), so evaluation warns about it. A
model with its own alignment (``embedder.prepare_photo``, dlib's chips) is given such images to
align itself instead, and a card with explicit template points gets ArcFace crops re-aligned to
its points (:meth:`~faceforge.embed.card.ModelCard.rewarp`) rather than resized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from faceforge.align.transform import fit_to_input
from faceforge.embed.base import FLIPS, Embedder
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage, read_image


@dataclass
class Embeddings:
    """Features of an image set: ``features`` [N, D] float32 (zero rows where ``valid`` is False)."""

    features: np.ndarray
    valid: np.ndarray
    corrupt: list[str] = field(default_factory=list)
    unaligned: int = 0  # images not at an aligned crop's size (resized whole, or self-aligned)
    unaligned_example: str = ""  # e.g. "250x250"
    # a self-aligning model's routes to the face of each raw photo (dlib: hog / detector_box / whole_image)
    self_alignment: dict = field(default_factory=dict)

    @property
    def num_corrupt(self) -> int:
        return int((~self.valid).sum())


ALIGNED_SIZES = ((112, 112), (112, 96), (128, 128))


def looks_aligned(shape, input_size) -> bool:
    """Whether an image of ``shape`` (H, W, ...) has the size of an aligned crop for a model."""
    h, w = int(shape[0]), int(shape[1])
    for ah, aw in (tuple(int(v) for v in input_size), *ALIGNED_SIZES):
        if h % ah == 0 and w % aw == 0 and h // ah == w // aw and 1 <= h // ah <= 4:
            return True
    return False


class _ImageSet:
    """``torch.utils.data.Dataset`` over anything with ``read(i)`` (or a list of arrays / paths)."""

    def __init__(self, source, size, template: str = "arcface", prepare_photo=None, rewarp=None):
        self.source, self.size, self.template = source, size, template
        self.prepare_photo, self.rewarp = prepare_photo, rewarp

    def __len__(self) -> int:
        return len(self.source.images) if hasattr(self.source, "images") else len(self.source)

    def _read(self, i: int) -> np.ndarray:
        if hasattr(self.source, "read"):
            return self.source.read(i)
        item = self.source[i]
        return item if isinstance(item, np.ndarray) else read_image(item)

    def __getitem__(self, i: int):
        try:
            img = self._read(i)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise CorruptImage(f"image {i}: not an RGB uint8 image")
            # a self-aligning model (dlib) takes only its own crops as they are: it aligns the rest
            aligned = (tuple(img.shape[:2]) == tuple(self.size) if self.prepare_photo is not None
                       else looks_aligned(img.shape, self.size))
            unaligned, route = ("" if aligned else f"{img.shape[0]}x{img.shape[1]}"), ""
            if unaligned and self.prepare_photo is not None:
                img, route = self.prepare_photo(img)  # the model's own detection and alignment
            elif self.rewarp is not None and not unaligned and tuple(img.shape[:2]) != tuple(self.size):
                warped = self.rewarp(img)  # an ArcFace crop re-aligned to the card's own template points
                img = img if warped is None else warped
            return i, np.ascontiguousarray(fit_to_input(img, self.size, self.template)), unaligned, route
        except CorruptImage as e:
            return i, None, str(e), ""


def _collate(batch):
    idx = [i for i, img, _, _ in batch if img is not None]
    imgs = np.stack([img for _, img, _, _ in batch if img is not None]) if idx else None
    bad = [(i, msg) for i, img, msg, _ in batch if img is None]
    unaligned = [msg for _, img, msg, _ in batch if img is not None and msg]
    routes = [route for _, _, _, route in batch if route]
    return idx, imgs, bad, unaligned, routes


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
    card = getattr(embedder, "card", None)
    rewarp = card.rewarp if card is not None and isinstance(card.template, dict) else None
    dataset = _ImageSet(images, embedder.meta.input_size, embedder.meta.template,
                        getattr(embedder, "prepare_photo", None), rewarp)
    n = len(dataset)
    dim = embedder.meta.embedding_size * (2 if flip == "concat" else 1)
    feats = np.zeros((n, dim), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    corrupt: list[str] = []
    unaligned: list[str] = []
    routes: dict[str, int] = {}
    loader = DataLoader(
        dataset,
        batch_size=max(1, int(batch_size)),
        shuffle=False,
        num_workers=int(workers),
        collate_fn=_collate,
    )
    done = 0
    for idx, imgs, bad, odd, found in loader:
        corrupt.extend(msg for _, msg in bad)
        unaligned.extend(odd)
        for route in found:
            routes[route] = routes.get(route, 0) + 1
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
    return Embeddings(feats, valid, corrupt, len(unaligned), unaligned[0] if unaligned else "", routes)
