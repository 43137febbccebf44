"""The packed training format (``.ffpk``): decoded uint8 images in one memory-mappable file.

Layout (little-endian)::

    0      header  struct HEADER (magic, version, H, W, C, count, num_classes, data_offset,
                   meta_offset, meta_length, labels_length, meta_crc32, data_crc32)
    4096   data    count x H x W x C uint8, image i at data_offset + i*H*W*C (RGB)
    meta   labels  count int64, then UTF-8 JSON {"names": [...], "description": ...}

No JPEG decoding happens at train time: a batch is one fancy-index into the memmap. ``meta_crc32``
is checked at open; ``data_crc32`` (zlib.crc32 over the data section) by :func:`verify`.
The file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_open
from faceforge.data.dataset import FaceDataset
from faceforge.errors import UserError

MAGIC = b"\x89FFPACK\n"
VERSION = 1
HEADER = struct.Struct("<8sIIIIQQQQQQII")
DATA_OFFSET = 4096
SUFFIX = ".ffpk"


class PackedWriter:
    """Append images (H x W x C uint8) and labels; the file appears only after :meth:`close`."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int] = (112, 112, 3)):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.labels: list[int] = []
        self._crc = 0
        self._ctx = atomic_open(self.path, "wb")
        self._f = self._ctx.__enter__()
        self._f.write(b"\0" * DATA_OFFSET)

    def add(self, image: np.ndarray, label: int) -> None:
        if image.shape != self.shape or image.dtype != np.uint8:
            raise ValueError(f"packed image must be uint8 {self.shape}, got {image.dtype} {image.shape}")
        data = np.ascontiguousarray(image).tobytes()
        self._crc = zlib.crc32(data, self._crc)
        self._f.write(data)
        self.labels.append(int(label))

    def close(self, names: list[str] | None = None, num_classes: int | None = None, description: str = ""):
        labels = np.asarray(self.labels, dtype="<i8")
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 0
        meta = labels.tobytes() + json.dumps(
            {"names": list(names) if names is not None else None, "description": description}
        ).encode("utf-8")
        h, w, c = self.shape
        meta_offset = DATA_OFFSET + labels.size * h * w * c
        self._f.write(meta)
        header = HEADER.pack(
            MAGIC, VERSION, h, w, c, labels.size, num_classes, DATA_OFFSET, meta_offset, len(meta),
            labels.nbytes, zlib.crc32(meta), self._crc,
        )
        self._f.seek(0)
        self._f.write(header)
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        try:
            err = exc or RuntimeError("aborted")
            self._ctx.__exit__(type(err), err, None)
        except BaseException:
            pass


class PackedDataset(FaceDataset):
    """A ``.ffpk`` file; ``read_batch(indices)`` returns ``[B, H, W, C]`` uint8 straight from the memmap."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        where = str(self.path)
        if not self.path.is_file():
            raise UserError(f"packed file not found: {self.path}")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                raise UserError(f"{where}: truncated header ({len(head)} of {HEADER.size} bytes at offset 0)")
            (magic, version, h, w, c, count, num_classes, data_off, meta_off, meta_len, labels_len,
             meta_crc, data_crc) = HEADER.unpack(head)
            if magic != MAGIC:
                raise UserError(f"{where}: not a faceforge packed file (bad magic at byte offset 0)")
            if version != VERSION:
                raise UserError(f"{where}: packed format version {version}; this faceforge reads {VERSION}")
            if min(h, w, c) == 0 or h * w > 1 << 26 or c > 4:
                raise UserError(f"{where}: impossible image shape {h}x{w}x{c} in the header")
            if data_off + count * h * w * c != meta_off or labels_len != 8 * count or meta_len < labels_len:
                raise UserError(f"{where}: inconsistent header (data/meta offsets do not match the count)")
            if meta_off + meta_len > size:
                raise UserError(
                    f"{where}: truncated: metadata at byte offset {meta_off} needs {meta_len} bytes, "
                    f"file has {size}"
                )
            f.seek(meta_off)
            meta = f.read(meta_len)
        if zlib.crc32(meta) != meta_crc:
            raise UserError(f"{where}: metadata checksum mismatch at byte offset {meta_off} (corrupt file)")
        labels = np.frombuffer(meta[:labels_len], dtype="<i8").astype(np.int64)
        try:
            info = json.loads(meta[labels_len:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UserError(f"{where}: unreadable metadata at byte offset {meta_off + labels_len}") from None
        if labels.size and (labels.min() < 0 or labels.max() >= max(num_classes, 1)):
            raise UserError(f"{where}: labels outside [0, {num_classes}) in the metadata")
        self.labels = labels
        self.shape = (h, w, c)
        self.image_shape = self.shape
        self.count = count
        self._num_classes = int(num_classes)
        self.data_offset = data_off
        self.data_crc = data_crc
        names = info.get("names") if isinstance(info, dict) else None
        self.names = [str(n) for n in names] if isinstance(names, list) else None
        self.description = f"packed:{self.path}"
        self._mm = None
        self._pid = None

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def images(self) -> np.ndarray:
        """The ``[N, H, W, C]`` uint8 memmap (opened lazily, once per process)."""
        if self._mm is None or self._pid != os.getpid():
            if self.count == 0:
                self._mm = np.zeros((0, *self.shape), dtype=np.uint8)
            else:
                self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.data_offset,
                                     shape=(self.count, *self.shape))
            self._pid = os.getpid()
        return self._mm

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mm"] = None
        state["_pid"] = None
        return state

    def read(self, index: int) -> np.ndarray:
        img = np.array(self.images[index])
        return img if self.shape[2] == 3 else np.repeat(img[..., :1], 3, axis=2)

    def read_batch(self, indices) -> np.ndarray:
        """Images ``indices`` (sorted indices read the file sequentially) as one ``[B,H,W,C]`` array."""
        return self.images[np.asarray(indices, dtype=np.int64)]


def verify(path: str | Path, chunk: int = 1 << 24) -> None:
    """Recompute the data checksum; UserError naming the file if it does not match."""
    ds = PackedDataset(path)
    crc = 0
    end = ds.data_offset + ds.count * int(np.prod(ds.shape))
    with open(ds.path, "rb") as f:
        f.seek(ds.data_offset)
        pos = ds.data_offset
        while pos < end:
            block = f.read(min(chunk, end - pos))
            if not block:
                raise UserError(f"{path}: truncated data at byte offset {pos}")
            crc = zlib.crc32(block, crc)
            pos += len(block)
    if crc != ds.data_crc:
        raise UserError(f"{path}: image data checksum mismatch (corrupt file)")
