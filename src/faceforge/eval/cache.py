"""Embedding cache: features of one image set by one model, stored as ``.npz`` under a folder.

The key is (model fingerprint: checkpoint path + size + mtime, or a hash of in-memory weights;
dataset spec; flip; image count; input size; the model card in use), so a re-run of a suite only reads files.
``STATS`` counts computations and hits (tests check it rather than timing).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_bytes
from faceforge.embed.base import Embedder
from faceforge.embed.extract import Embeddings, embed_images

STATS = {"computed": 0, "hits": 0}


def cache_key(embedder: Embedder, spec: str, flip: str, count: int) -> str:
    card = getattr(embedder, "card", None)  # a card beside a checkpoint changes how it is fed
    text = "|".join(
        [embedder.fingerprint(), spec, flip, str(count), "x".join(map(str, embedder.meta.input_size)),
         str(card.to_dict()) if card is not None else ""]
    )
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _read_cached(path: Path, count: int) -> Embeddings | None:
    """A cache file's embeddings, or None when it is damaged in any way (truncated zip, bad
    CRC, missing array, wrong shapes): the caller recomputes and replaces it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            features, valid, corrupt = z["features"], z["valid"], [str(s) for s in z["corrupt"]]
            unaligned, example = int(z["unaligned"]), str(z["unaligned_example"])
            routes = json.loads(str(z["self_alignment"])) if "self_alignment" in z else {}
    except Exception:  # zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, OSError
        return None
    if features.ndim != 2 or features.shape[0] != count or valid.shape != (count,):
        return None
    if not np.isfinite(features[valid.astype(bool)]).all():
        return None
    return Embeddings(features, valid.astype(bool), corrupt, unaligned, example, routes)


def cached_embeddings(
    embedder: Embedder,
    images,
    spec: str,
    flip: str = "none",
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress=None,
) -> Embeddings:
    """:func:`embed_images`, read from / written to ``cache_dir`` when one is given
    (``progress(done, total)`` is called while computing)."""
    count = len(images.images) if hasattr(images, "images") else len(images)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{cache_key(embedder, spec, flip, count)}.npz"
        if path.is_file():
            result = _read_cached(path, count)
            if result is not None:
                STATS["hits"] += 1
                return result
    result = embed_images(
        embedder, images, batch_size=batch_size, flip=flip, workers=workers, progress=progress
    )
    STATS["computed"] += 1
    if path is not None:
        buf = io.BytesIO()
        np.savez(
            buf, features=result.features, valid=result.valid, corrupt=np.array(result.corrupt, dtype=str),
            unaligned=np.array(result.unaligned), unaligned_example=np.array(result.unaligned_example),
            self_alignment=np.array(json.dumps(result.self_alignment)),
        )
        atomic_write_bytes(path, buf.getvalue())
    return result
