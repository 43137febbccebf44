"""``faceforge data pack SRC OUT``: decode any source once into the packed memmap format."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

from faceforge.data.dataset import FaceDataset
from faceforge.data.packed import PackedWriter
from faceforge.data.tools import open_any
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage

_WORKER: tuple[FaceDataset, tuple[int, int], str] | None = None


def _init(dataset: FaceDataset, size: tuple[int, int], encoding: str = "raw") -> None:
    global _WORKER
    _WORKER = (dataset, size, encoding)


def _decode(index: int) -> tuple[int, np.ndarray | bytes | None, bool, str]:
    """Image ``index`` fitted to the packed size; for JPEG records its stored JPEG bytes when they
    already have that size (no second lossy step)."""
    import cv2

    dataset, (h, w), encoding = _WORKER  # type: ignore[misc]
    try:
        if encoding == "jpeg":
            from faceforge.data.tools.convert import stored_jpeg

            data, shape = stored_jpeg(dataset, index)
            if data is not None and shape == (h, w):
                return index, data, False, ""
        img = dataset.read(index)
    except CorruptImage as e:
        return index, None, False, str(e)
    if img.shape[:2] == (h, w):
        return index, img, False, ""
    return index, cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), True, ""


def pack_dataset(
    dataset: FaceDataset,
    out: str | Path,
    size: tuple[int, int] = (112, 112),
    workers: int | None = None,
    progress: bool = True,
    encoding: str = "raw",
    quality: int = 95,
) -> dict:
    """Write ``dataset`` to ``out`` (``.ffpk``); images of another size are resized (INTER_AREA).
    ``encoding="jpeg"`` stores JPEGs of ``quality`` (about a fifth of the raw bytes).

    Returns a report: images written, corrupt images skipped (with up to 20 messages), resized count.
    """
    out = Path(out)
    workers = max(1, (os.cpu_count() or 1) if workers is None else int(workers))
    n = len(dataset)
    t0 = time.perf_counter()
    writer = PackedWriter(out, (size[0], size[1], 3), encoding=encoding, quality=quality)
    skipped: list[str] = []
    resized = 0
    try:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"pack {out.name}", unit="img", disable=not progress, file=sys.stderr)
        if workers == 1 or n < 256:
            _init(dataset, size, encoding)
            results = map(_decode, range(n))
            pool = None
        else:
            pool = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(
                workers, initializer=_init, initargs=(dataset, size, encoding)
            )
            results = pool.imap(_decode, range(n), chunksize=64)
        try:
            for index, img, was_resized, err in results:
                bar.update(1)
                if img is None:
                    skipped.append(err)
                    continue
                resized += was_resized
                if isinstance(img, bytes):
                    writer.add_encoded(img, int(dataset.labels[index]))
                else:
                    writer.add(np.ascontiguousarray(img, dtype=np.uint8), int(dataset.labels[index]))
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
        writer.close(names=dataset.names, num_classes=dataset.num_classes, description=dataset.description)
    except BaseException as e:
        writer.abort(e)
        raise
    written = len(writer.labels)
    if written == 0:
        out.unlink(missing_ok=True)
        raise UserError(f"{dataset.description}: no image could be decoded; nothing packed")
    return {
        "source": dataset.description,
        "output": str(out),
        "images": written,
        "classes": dataset.num_classes,
        "skipped": len(skipped),
        "skipped_examples": skipped[:20],
        "resized": resized,
        "shape": [size[0], size[1], 3],
        "encoding": encoding,
        "bytes": out.stat().st_size,
        "bytes_per_image": round(out.stat().st_size / written, 1),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def pack(src: str, out: str | Path, size: tuple[int, int] = (112, 112), workers: int | None = None,
         progress: bool = True, encoding: str = "raw", quality: int = 95) -> dict:
    """Pack a source string or path (``folder:``, ``rec:``, ``list:``, ``synthetic:``, ...)."""
    return pack_dataset(open_any(src), out, size=size, workers=workers, progress=progress,
                        encoding=encoding, quality=quality)
