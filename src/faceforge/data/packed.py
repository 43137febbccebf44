"""The packed training format (``.ffpk``): one file, memory-mapped, with a CRC per record.

Layout (little-endian)::

    0      header  struct HEADER (magic, version, H, W, C, count, num_classes, data_offset,
                   meta_offset, meta_length, labels_length, meta_crc32, data_crc32), then (version 2)
                   struct EXTRA (encoding, quality, index_offset, index_length, index_crc32), then
                   (version 3) header_crc32: zlib.crc32 of the HEADER and EXTRA bytes before it
    4096   data    raw:  count x H x W x C uint8, image i at data_offset + i*H*W*C (RGB)
                   jpeg: the records' JPEG streams one after the other (~7 KB per 112x112 face
                   instead of 37 KB raw, so a 42M-image set fits an ordinary disk)
    meta   labels  count int64, then UTF-8 JSON {"names": [...], "description": ...}
    index  count x (offset uint64, length uint32, crc32 uint32) (version 2)

A raw batch is one fancy-index into the memmap, no decoding; a JPEG record is decoded by the one
image gate (:func:`faceforge.io.images.decode_image`) in the loader's workers. At open, the header
checksum (version 3: a flipped bit in the class count or shape is an error, not a 262-class head),
every header field against the file size, and ``meta_crc32``/``index_crc32``. As records are read
(``read``, ``read_batch`` + :meth:`PackedDataset.bad_records`, the loader's two paths), each one's
CRC is checked by default (``check_records``; ``data.record_crc: false`` turns it off): a damaged
record is skipped and counted like a corrupt image. :func:`verify` checks every record and
``data_crc32`` up front (``faceforge data stats --verify``, or ``data.verify_crc``). Version 1 (raw,
no index, no record CRCs) and version 2 (no header checksum) files still open, with one warning line.
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
from faceforge.errors import UserError, warn_once

MAGIC = b"\x89FFPACK\n"
VERSION = 3
HEADER = struct.Struct("<8sIIIIQQQQQQII")
EXTRA = struct.Struct("<IIQQI")  # encoding, quality, index_offset, index_length, index_crc32
HEADER_CRC = struct.Struct("<I")  # version 3: crc32 of the HEADER + EXTRA bytes
HEAD_SIZE = HEADER.size + EXTRA.size
INDEX = np.dtype([("offset", "<u8"), ("length", "<u4"), ("crc", "<u4")])
ENCODINGS = ("raw", "jpeg")
DATA_OFFSET = 4096
SUFFIX = ".ffpk"


class PackedWriter:
    """Append images (H x W x C uint8) and labels; the file appears only after :meth:`close`.

    ``encoding="jpeg"`` stores each image as a JPEG of ``quality`` (or :meth:`add_encoded` stores
    given JPEG bytes as they are, e.g. already aligned crops: no second lossy step).
    """

    def __init__(
        self,
        path: str | Path,
        shape: tuple[int, int, int] = (112, 112, 3),
        encoding: str = "raw",
        quality: int = 95,
    ):
        if encoding not in ENCODINGS:
            raise UserError(f"packed encoding '{encoding}': expected one of {', '.join(ENCODINGS)}")
        if not 1 <= int(quality) <= 100:
            raise UserError(f"packed quality {quality}: expected 1..100")
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.encoding, self.quality = encoding, int(quality)
        self.labels: list[int] = []
        self._index: list[tuple[int, int, int]] = []
        self._pos = DATA_OFFSET
        self._crc = 0
        self._ctx = atomic_open(self.path, "wb")
        self._f = self._ctx.__enter__()
        self._f.write(b"\0" * DATA_OFFSET)

    def add(self, image: np.ndarray, label: int) -> None:
        if image.shape != self.shape or image.dtype != np.uint8:
            raise ValueError(f"packed image must be uint8 {self.shape}, got {image.dtype} {image.shape}")
        if self.encoding == "raw":
            self._record(np.ascontiguousarray(image).tobytes(), label)
            return
        import cv2

        bgr = image[..., ::-1] if image.shape[2] == 3 else image
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("OpenCV could not encode the image as JPEG")
        self._record(buf.tobytes(), label)

    def add_encoded(self, data: bytes, label: int) -> None:
        """Store JPEG bytes as they are (the caller vouches they decode to ``shape``)."""
        if self.encoding != "jpeg":
            raise ValueError("add_encoded needs encoding='jpeg'")
        self._record(bytes(data), label)

    def _record(self, data: bytes, label: int) -> None:
        crc = zlib.crc32(data)
        self._crc = zlib.crc32(data, self._crc)
        self._f.write(data)
        self._index.append((self._pos, len(data), crc))
        self._pos += len(data)
        self.labels.append(int(label))

    def close(self, names: list[str] | None = None, num_classes: int | None = None, description: str = ""):
        labels = np.asarray(self.labels, dtype="<i8")
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 0
        meta = labels.tobytes() + json.dumps(
            {"names": list(names) if names is not None else None, "description": description}
        ).encode("utf-8")
        h, w, c = self.shape
        meta_offset = self._pos
        index = np.array(self._index, dtype=INDEX).tobytes()
        self._f.write(meta)
        self._f.write(index)
        header = HEADER.pack(
            MAGIC, VERSION, h, w, c, labels.size, num_classes, DATA_OFFSET, meta_offset, len(meta),
            labels.nbytes, zlib.crc32(meta), self._crc,
        ) + EXTRA.pack(
            ENCODINGS.index(self.encoding), self.quality, meta_offset + len(meta), len(index),
            zlib.crc32(index),
        )
        header += HEADER_CRC.pack(zlib.crc32(header))
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
    """A ``.ffpk`` file. Raw: ``read_batch(indices)`` returns ``[B, H, W, C]`` uint8 straight from
    the memmap. JPEG: ``read(i)`` decodes record ``i`` (the loader's per-image path, in workers)."""

    def __init__(self, path: str | Path, verify_crc: bool = False, check_records: bool = True):
        self.path = Path(path)
        self.check_records = check_records
        where = str(self.path)
        if not self.path.is_file():
            raise UserError(f"packed file not found: {self.path}")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(HEAD_SIZE + HEADER_CRC.size)
            if len(head) < HEADER.size:
                raise UserError(f"{where}: truncated header ({len(head)} of {HEADER.size} bytes at offset 0)")
            (magic, version, h, w, c, count, num_classes, data_off, meta_off, meta_len, labels_len,
             meta_crc, data_crc) = HEADER.unpack(head[: HEADER.size])
            if magic != MAGIC:
                raise UserError(f"{where}: not a faceforge packed file (bad magic at byte offset 0)")
            if version not in (1, 2, VERSION):
                raise UserError(
                    f"{where}: packed format version {version}; this faceforge reads 1 to {VERSION}"
                )
            if version >= 3:
                if len(head) < HEAD_SIZE + HEADER_CRC.size:
                    raise UserError(f"{where}: truncated header ({len(head)} bytes at offset 0)")
                if zlib.crc32(head[:HEAD_SIZE]) != HEADER_CRC.unpack(head[HEAD_SIZE:])[0]:
                    raise UserError(f"{where}: header checksum mismatch at byte offset 0 (corrupt file: "
                                    "the shape, count or class count cannot be trusted)")
            else:
                warn_once(f"{where}: packed format version {version} has no header checksum"
                          f"{' and no record checksums' if version == 1 else ''}: its header is trusted "
                          "as read (re-pack with 'faceforge data pack' to protect it)")
            encoding, quality, index_off, index_len, index_crc = 0, 0, meta_off + meta_len, 0, 0
            if version >= 2:
                if len(head) < HEADER.size + EXTRA.size:
                    raise UserError(f"{where}: truncated header ({len(head)} bytes at offset 0)")
                encoding, quality, index_off, index_len, index_crc = EXTRA.unpack(head[HEADER.size:HEAD_SIZE])
            if min(h, w, c) == 0 or h * w > 1 << 26 or c > 4:
                raise UserError(f"{where}: impossible image shape {h}x{w}x{c} in the header")
            if encoding >= len(ENCODINGS):
                raise UserError(f"{where}: unknown image encoding {encoding} in the header")
            self.encoding = ENCODINGS[encoding]
            raw = self.encoding == "raw"
            if (
                data_off < HEADER.size + EXTRA.size * (version >= 2)
                or (raw and data_off + count * h * w * c != meta_off)
                or meta_off < data_off
                or labels_len != 8 * count
                or meta_len < labels_len
                or (version >= 2 and index_off != meta_off + meta_len)
                or (version >= 2 and index_len != INDEX.itemsize * count)
            ):
                raise UserError(
                    f"{where}: inconsistent header (data/meta/index offsets do not match the count)"
                )
            for name, off, length in (("metadata", meta_off, meta_len), ("index", index_off, index_len)):
                if off + length > size:
                    raise UserError(
                        f"{where}: truncated: {name} at byte offset {off} needs {length} bytes, "
                        f"file has {size}"
                    )
            if index_off + index_len != size:
                raise UserError(
                    f"{where}: {size - index_off - index_len} unexpected bytes after byte offset "
                    f"{index_off + index_len} (the header says the file ends there)"
                )
            f.seek(meta_off)
            meta = f.read(meta_len)
            index = f.read(index_len)
        if zlib.crc32(meta) != meta_crc:
            raise UserError(f"{where}: metadata checksum mismatch at byte offset {meta_off} (corrupt file)")
        if zlib.crc32(index) != index_crc:
            raise UserError(f"{where}: index checksum mismatch at byte offset {index_off} (corrupt file)")
        labels = np.frombuffer(meta[:labels_len], dtype="<i8").astype(np.int64)
        try:
            info = json.loads(meta[labels_len:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UserError(f"{where}: unreadable metadata at byte offset {meta_off + labels_len}") from None
        if labels.size and (labels.min() < 0 or labels.max() >= max(num_classes, 1)):
            raise UserError(f"{where}: labels outside [0, {num_classes}) in the metadata")
        self.index = np.frombuffer(index, dtype=INDEX) if version >= 2 else None
        if self.index is not None and count and (
            self.index["offset"][0] != data_off
            or np.any(self.index["offset"][1:] != self.index["offset"][:-1] + self.index["length"][:-1])
            or int(self.index["offset"][-1]) + int(self.index["length"][-1]) != meta_off
        ):
            raise UserError(f"{where}: index records do not tile the data section (corrupt file)")
        self.labels = labels
        self.shape = (h, w, c)
        if raw:
            self.image_shape = self.shape  # what enables the loader's one-slice batch path
        self.quality = quality
        self.count = count
        self._num_classes = int(num_classes)
        self.data_offset = data_off
        self.data_end = meta_off
        self.data_crc = data_crc
        names = info.get("names") if isinstance(info, dict) else None
        self.names = [str(n) for n in names] if isinstance(names, list) else None
        if self.names is not None and len(self.names) != num_classes:  # the names are CRC-checked
            raise UserError(f"{where}: the header says {num_classes} classes but the metadata names "
                            f"{len(self.names)} (corrupt header)")
        self.description = f"packed:{self.path}"
        self._mm = None
        self._pid = None
        if verify_crc:
            verify(self)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _map(self) -> np.ndarray:
        if self._mm is None or self._pid != os.getpid():
            if self.count == 0:
                self._mm = np.zeros((0, *self.shape), dtype=np.uint8)
            elif self.encoding == "raw":
                self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.data_offset,
                                     shape=(self.count, *self.shape))
            else:
                self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", offset=0, shape=(self.data_end,))
            self._pid = os.getpid()
        return self._mm

    @property
    def images(self) -> np.ndarray:
        """The ``[N, H, W, C]`` uint8 memmap of a raw file (opened lazily, once per process)."""
        if self.encoding != "raw":
            raise ValueError(f"{self.path}: JPEG records have no [N, H, W, C] view; use read()")
        return self._map()

    def record(self, index: int) -> bytes:
        """Record ``index`` as stored (raw pixels or JPEG bytes)."""
        if self.index is None:
            return self.images[index].tobytes()
        off, length = int(self.index["offset"][index]), int(self.index["length"][index])
        return self._map()[off : off + length].tobytes()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mm"] = None
        state["_pid"] = None
        return state

    def _check(self, index: int, data) -> None:
        checked = self.check_records and self.index is not None
        if checked and zlib.crc32(data) != int(self.index["crc"][index]):
            from faceforge.io.images import CorruptImage

            raise CorruptImage(f"{self.path} record {index}: checksum mismatch (damaged record)")

    def bad_records(self, indices, images: np.ndarray) -> np.ndarray:
        """Which rows of ``images = read_batch(indices)`` fail their record CRC (all False when
        ``check_records`` is off or the file has no index): the loader drops and counts them."""
        bad = np.zeros(len(images), dtype=bool)
        if self.check_records and self.index is not None and self.encoding == "raw":
            want = self.index["crc"][np.asarray(indices, dtype=np.int64)]
            for k in range(len(images)):
                bad[k] = zlib.crc32(np.ascontiguousarray(images[k])) != int(want[k])
        return bad

    def read(self, index: int) -> np.ndarray:
        if self.encoding == "jpeg":
            from faceforge.io.images import CorruptImage, decode_image

            data = self.record(index)
            self._check(index, data)
            img = decode_image(data, f"{self.path} record {index}")
            if img.shape != (*self.shape[:2], 3):
                raise CorruptImage(f"{self.path} record {index}: decodes to {img.shape}, not {self.shape}")
            return img
        img = np.array(self.images[index])
        self._check(index, img)
        return img if self.shape[2] == 3 else np.repeat(img[..., :1], 3, axis=2)

    def read_batch(self, indices) -> np.ndarray:
        """Images ``indices`` (sorted indices read the file sequentially) as one ``[B,H,W,C]`` array."""
        if self.encoding != "raw":
            return np.stack([self.read(int(i)) for i in np.asarray(indices, dtype=np.int64)])
        return self.images[np.asarray(indices, dtype=np.int64)]


def verify(path: str | Path | PackedDataset, chunk: int = 1 << 24) -> dict:
    """Check every record's CRC (version 2) and the data section's; UserError naming the file and
    the first bad record. Returns ``{"records": n, "bytes": data bytes checked}``."""
    ds = path if isinstance(path, PackedDataset) else PackedDataset(path)
    where = str(ds.path)
    crc = 0
    with open(ds.path, "rb") as f:
        if ds.index is not None:
            f.seek(ds.data_offset)
            for i, (_, length, want) in enumerate(ds.index.tolist()):
                block = f.read(length)
                if len(block) != length:
                    raise UserError(f"{where}: truncated data in record {i}")
                if zlib.crc32(block) != want:
                    raise UserError(f"{where}: record {i} checksum mismatch (corrupt file)")
                crc = zlib.crc32(block, crc)
        else:
            f.seek(ds.data_offset)
            pos = ds.data_offset
            while pos < ds.data_end:
                block = f.read(min(chunk, ds.data_end - pos))
                if not block:
                    raise UserError(f"{where}: truncated data at byte offset {pos}")
                crc = zlib.crc32(block, crc)
                pos += len(block)
    if crc != ds.data_crc:
        raise UserError(f"{where}: image data checksum mismatch (corrupt file)")
    return {"records": ds.count, "bytes": ds.data_end - ds.data_offset}


def apply_crc_options(dataset: FaceDataset, verify_crc: bool, record_crc: bool, source: str) -> None:
    """The training config's ``data.verify_crc`` (check every record up front) and
    ``data.record_crc`` (check each record as it is read; on by default) on an opened source."""
    if not isinstance(dataset, PackedDataset):
        if verify_crc:
            raise UserError(f"data.verify_crc: {source} is not a packed source (no CRCs)")
        return
    dataset.check_records = bool(record_crc)
    if verify_crc:
        verify(dataset)
