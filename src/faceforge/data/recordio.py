"""MXNet RecordIO, natively: the ``train.rec`` + ``train.idx`` + ``property`` layout InsightFace ships.

Framing (dmlc-core ``recordio.cc``): every part is ``uint32 magic 0xced7230a``, ``uint32 lrec`` with
the continuation flag in the top 3 bits and the length in the low 29, the payload, and zero padding to
a multiple of 4. A payload that holds the magic at a 4-aligned offset is split there (the magic is
dropped; flags 1 = first, 2 = middle, 3 = last part) and the reader re-inserts it between parts.

Payload (``mxnet.recordio.pack``): ``IRHeader`` as struct ``IfQQ`` (flag, label, id, id2). When
``flag > 0`` the label is an array of ``flag`` float32 values that follows the header and the header's
own label field is 0. InsightFace's record 0 holds ``[first_identity_record, end]``; records
``1..first-1`` are images, ``first..end-1`` hold the ``[start, end)`` image range of each identity.

``.idx`` lines are ``key<TAB>byte offset``; ``property`` is ``num_classes,height,width``.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_open, atomic_write_text
from faceforge.errors import UserError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR = struct.Struct("<IfQQ")
IR_SIZE = _IR.size  # 24
_LEN_MASK = (1 << 29) - 1


@dataclass
class IRHeader:
    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0


def pack(header: IRHeader, payload: bytes = b"") -> bytes:
    """``mxnet.recordio.pack``: a scalar label gives flag 0, an array label its length as flag."""
    if isinstance(header.label, (int, float, np.integer, np.floating)):
        return _IR.pack(0, float(header.label), header.id, header.id2) + payload
    label = np.asarray(header.label, dtype="<f4").ravel()
    return _IR.pack(label.size, 0.0, header.id, header.id2) + label.tobytes() + payload


def unpack(record: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record payload into its IRHeader and the remaining bytes (the encoded image)."""
    if len(record) < IR_SIZE:
        raise UserError(f"{where}: record of {len(record)} bytes is shorter than its 24-byte header")
    flag, label, id_, id2 = _IR.unpack_from(record, 0)
    rest = record[IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise UserError(f"{where}: header announces {flag} labels but the record is too short")
        label = np.frombuffer(rest, dtype="<f4", count=flag).copy()
        rest = rest[4 * flag :]
    return IRHeader(flag, label, id_, id2), rest


def frame(payload: bytes) -> bytes:
    """One RecordIO record as dmlc-core writes it (split at 4-aligned magics, padded to 4)."""
    if len(payload) >= 1 << 29:
        raise UserError(f"record of {len(payload)} bytes exceeds RecordIO's 512 MiB limit")
    out = []
    start = 0
    pos = payload.find(_MAGIC_BYTES)
    while pos != -1 and pos + 4 <= len(payload):
        if pos % 4 == 0:
            flag = 1 if start == 0 else 2
            out += [_MAGIC_BYTES, struct.pack("<I", (flag << 29) | (pos - start)), payload[start:pos]]
            start = pos + 4
            pos = payload.find(_MAGIC_BYTES, start)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1)
    flag = 3 if start else 0
    tail = payload[start:]
    out += [_MAGIC_BYTES, struct.pack("<I", (flag << 29) | len(tail)), tail, b"\0" * (-len(tail) % 4)]
    return b"".join(out)


def read_record_at(buf, offset: int, where: str) -> tuple[bytes, int]:
    """The payload of the record starting at ``offset`` in ``buf`` and the offset after it."""
    size = len(buf)
    parts = []
    pos = offset
    while True:
        if pos + 8 > size:
            raise UserError(f"{where}: truncated record header at byte offset {pos} (file has {size} bytes)")
        magic, lrec = struct.unpack_from("<II", buf, pos)
        if magic != MAGIC:
            raise UserError(f"{where}: no RecordIO magic at byte offset {pos} (found 0x{magic:08x})")
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        begin = pos + 8
        if begin + length > size:
            raise UserError(
                f"{where}: record at byte offset {pos} needs {length} bytes but the file ends at {size}"
            )
        parts.append(bytes(buf[begin : begin + length]))
        pos = begin + length + (-length % 4)
        if cflag in (0, 3):
            break
        if cflag not in (1, 2) or (cflag == 1 and len(parts) > 1) or (cflag == 2 and len(parts) == 1):
            raise UserError(f"{where}: bad continuation flag {cflag} at byte offset {pos}")
    if len(parts) > 1 and (struct.unpack_from("<I", buf, offset + 4)[0] >> 29) != 1:
        raise UserError(f"{where}: record at byte offset {offset} continues a record that never started")
    return _MAGIC_BYTES.join(parts), min(pos, size)


def scan_offsets(buf, where: str) -> list[int]:
    """Byte offsets of every record, found by walking the file (for a ``.rec`` without ``.idx``)."""
    offsets = []
    pos = 0
    while pos < len(buf):
        offsets.append(pos)
        _, pos = read_record_at(buf, pos, where)
    return offsets


def read_idx(path: Path, rec_size: int) -> dict[int, int]:
    """Parse a ``.idx`` file (``key<TAB>offset`` lines) and check every offset lies in the ``.rec``."""
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a RecordIO index (non-ASCII byte at offset {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    index: dict[int, int] = {}
    byte = 0
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        fields = line.split()
        if fields:
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise UserError(
                    f"{path}:{lineno}: expected 'key<TAB>offset' at byte offset {byte}, got {line.strip()!r}"
                )
            key, off = int(fields[0]), int(fields[1])
            if off + 8 > rec_size:
                raise UserError(
                    f"{path}:{lineno}: record {key} at byte offset {off} lies beyond the end of the "
                    f".rec file ({rec_size} bytes): truncated .rec or mismatched index"
                )
            index[key] = off
        byte += len(line)
    return index


class RecordReader:
    """Random access to an indexed ``.rec`` file; memory-mapped lazily so it survives ``fork``/pickle."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise UserError(f"RecordIO file not found: {self.rec_path}")
        self.size = self.rec_path.stat().st_size
        self._buf = None
        self._pid = None
        if idx_path is not None and Path(idx_path).is_file():
            self.index = read_idx(Path(idx_path), self.size)
        else:
            self.index = dict(enumerate(scan_offsets(self.buffer, str(self.rec_path))))

    @property
    def buffer(self):
        if self._buf is None or self._pid != os.getpid():
            if self.size == 0:
                self._buf = b""
            else:
                with open(self.rec_path, "rb") as f:
                    self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._pid = os.getpid()
        return self._buf

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_buf"] = None
        state["_pid"] = None
        return state

    def keys(self) -> list[int]:
        return list(self.index)

    def offset(self, key: int) -> int:
        if key not in self.index:
            raise UserError(f"{self.rec_path}: no record with key {key} in the index")
        return self.index[key]

    def read(self, key: int) -> bytes:
        return read_record_at(self.buffer, self.offset(key), str(self.rec_path))[0]

    def peek_header(self, key: int) -> IRHeader:
        """The IRHeader of record ``key`` without copying its image bytes (used to read labels)."""
        off = self.offset(key)
        buf = self.buffer
        if off + 8 + IR_SIZE <= len(buf):
            magic, lrec = struct.unpack_from("<II", buf, off)
            length = lrec & _LEN_MASK
            if magic == MAGIC and length >= IR_SIZE and off + 8 + length <= len(buf):
                flag = struct.unpack_from("<I", buf, off + 8)[0]
                if IR_SIZE + 4 * flag <= length:
                    head = bytes(buf[off + 8 : off + 8 + IR_SIZE + 4 * flag])
                    return unpack(head, f"{self.rec_path} (record {key} at byte offset {off})")[0]
        return self.read_header(key)[0]

    def read_header(self, key: int) -> tuple[IRHeader, bytes]:
        off = self.offset(key)
        return unpack(self.read(key), f"{self.rec_path} (record {key} at byte offset {off})")


class RecordWriter:
    """Write ``.rec`` + ``.idx`` atomically: both appear only when :meth:`close` succeeds."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self._ctx = atomic_open(self.rec_path, "wb")
        self._f = self._ctx.__enter__()
        self._pos = 0
        self._idx: list[str] = []

    def write(self, key: int, payload: bytes) -> None:
        data = frame(payload)
        self._idx.append(f"{key}\t{self._pos}\n")
        self._f.write(data)
        self._pos += len(data)

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)
        atomic_write_text(self.idx_path, "".join(self._idx))

    def abort(self, exc: BaseException) -> None:
        try:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException:
            pass

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.close()
        else:
            self.abort(ev)


def write_insightface(
    out_dir: str | Path,
    items: Iterator[tuple[int, bytes]],
    num_classes: int,
    image_size: tuple[int, int] = (112, 112),
    prefix: str = "train",
) -> dict[str, int]:
    """Write ``train.rec``/``train.idx``/``property`` in InsightFace's layout.

    ``items`` yields ``(label, encoded_image)`` sorted by label. Record 0 (``[first_identity_record,
    end]``) is written first as a placeholder of fixed size and filled in once the count is known;
    one ``[start, end)`` range record per identity follows the images.
    """
    out = Path(out_dir)
    ranges = [(0, 0)] * num_classes
    count = 0
    with RecordWriter(out / f"{prefix}.rec", out / f"{prefix}.idx") as w:
        placeholder = frame(pack(IRHeader(0, [0.0, 0.0])))
        w.write(0, pack(IRHeader(0, [0.0, 0.0])))
        last = -1
        for label, data in items:
            if not 0 <= label < num_classes or label < last:
                raise ValueError("write_insightface needs labels in [0, num_classes) sorted ascending")
            count += 1
            if ranges[label] == (0, 0):
                ranges[label] = (count, count)
            ranges[label] = (ranges[label][0], count + 1)
            w.write(count, pack(IRHeader(0, float(label), count, 0), data))
            last = label
        first_id = count + 1
        for c, (a, b) in enumerate(ranges):
            w.write(first_id + c, pack(IRHeader(0, [float(a), float(b)])))
        header0 = frame(pack(IRHeader(0, [float(first_id), float(first_id + num_classes)])))
        assert len(header0) == len(placeholder)
        w._f.seek(0)
        w._f.write(header0)
        w._f.seek(0, os.SEEK_END)
    atomic_write_text(out / "property", f"{num_classes},{image_size[0]},{image_size[1]}\n")
    return {"images": count, "classes": num_classes}
