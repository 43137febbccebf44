"""The FAISS side of a gallery: the index kind for a size, and crash-safe, owner-only index files."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from pathlib import Path

import numpy as np

from faceforge.errors import UserError


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise UserError("the gallery needs faiss: pip install faiss-cpu (extra faceforge[serve])") from None
    return faiss


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ivf_lists(n: int) -> int:
    """IVF lists for ``n`` vectors: sqrt(n) rounded to a power of two, at least 16."""
    return int(2 ** round(math.log2(max(16.0, math.sqrt(n)))))


def new_index(dim: int, n: int, ivf_threshold: int, train: np.ndarray | None = None):
    """An exact ``IDMap2,Flat`` index up to ``ivf_threshold`` vectors, else ``IVF<nlist>,Flat``
    trained on ``train``."""
    faiss = faiss_module()
    if n <= ivf_threshold or train is None:
        return faiss.index_factory(dim, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    nlist = ivf_lists(n)
    index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.min_points_per_centroid = 1  # small galleries: no warning
    index.train(train[: 40 * nlist])
    return index


def write_index_file(index, tmp: Path, final: Path) -> str:
    """Write ``index`` to ``tmp`` (mode 0600), fsync, rename to ``final``, fsync the folder; the
    SHA-1 of the file. A failed write leaves no temp file."""
    try:
        faiss_module().write_index(index, str(tmp))
        os.chmod(tmp, 0o600)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        sha = sha1_file(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return sha
