"""``rec:DIR_OR_REC`` — InsightFace RecordIO (``train.rec`` + ``train.idx`` + ``property``), no MXNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.dataset import SOURCES, FaceDataset
from faceforge.data.recordio import RecordReader, unpack
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage, decode_image


def _resolve(path: str) -> tuple[Path, Path, Path | None]:
    p = Path(path)
    if p.is_dir():
        rec = p / "train.rec"
        if not rec.is_file():
            recs = sorted(p.glob("*.rec"))
            if len(recs) != 1:
                raise UserError(f"{p}: expected train.rec (or exactly one .rec file) in the folder")
            rec = recs[0]
    else:
        rec = p
    if not rec.is_file():
        raise UserError(f"RecordIO file not found: {rec}")
    prop = rec.parent / "property"
    return rec, rec.with_suffix(".idx"), prop if prop.is_file() else None


def read_property(path: Path) -> tuple[int, int, int]:
    """``num_classes,height,width`` from InsightFace's ``property`` file."""
    try:
        fields = path.read_text(encoding="ascii").strip().split(",")
        values = tuple(int(f) for f in fields)
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{path}: expected 'num_classes,height,width'") from None
    if len(values) != 3 or min(values) <= 0:
        raise UserError(f"{path}: expected three positive integers 'num_classes,height,width'")
    return values  # type: ignore[return-value]


class RecordIODataset(FaceDataset):
    """Images of an InsightFace ``.rec``: labels are read once from every record header at open."""

    def __init__(self, path: str | Path):
        rec, idx, prop = _resolve(str(path))
        self.reader = RecordReader(rec, idx)
        self.description = f"rec:{rec}"
        self.property = read_property(prop) if prop else None
        keys = self.reader.keys()
        if not keys:
            raise UserError(f"{rec}: holds no records")
        self.identity_ranges: list[tuple[int, int]] | None = None
        first = self.reader.peek_header(0) if 0 in self.reader.index else None
        if first is not None and first.flag > 0:
            lab = np.asarray(first.label)
            if lab.size < 2:
                raise UserError(f"{rec}: header record 0 has {lab.size} label(s); expected [first, end]")
            id_start, id_end = int(lab[0]), int(lab[1])
            if not 1 <= id_start <= id_end or id_start - 1 > len(keys) or id_end - id_start > len(keys):
                raise UserError(f"{rec}: header record 0 holds an impossible range [{id_start}, {id_end})")
            self.keys = np.arange(1, id_start, dtype=np.int64)
            self.identity_ranges = []
            for k in range(id_start, id_end):
                if k in self.reader.index:
                    r = np.asarray(self.reader.peek_header(k).label).ravel()
                    if r.size >= 2:
                        self.identity_ranges.append((int(r[0]), int(r[1])))
        else:
            self.keys = np.asarray(sorted(keys), dtype=np.int64)
        labels = np.empty(len(self.keys), dtype=np.int64)
        for i, k in enumerate(self.keys):
            labels[i] = self._label_of(int(k))
        self.labels = labels
        self.names = None  # RecordIO stores class indices only

    def _label_of(self, key: int) -> int:
        header = self.reader.peek_header(key)
        label = header.label
        value = float(np.asarray(label).ravel()[0]) if header.flag > 0 else float(label)
        if not np.isfinite(value) or not 0 <= value < 2**31:
            raise UserError(f"{self.reader.rec_path}: record {key} has an impossible label {value}")
        return int(value)

    def raw(self, index: int) -> bytes:
        """The encoded image bytes of image ``index`` (no decoding)."""
        key = int(self.keys[index])
        where = f"{self.reader.rec_path} (record {key} at byte offset {self.reader.offset(key)})"
        return unpack(self.reader.read(key), where)[1]

    def read(self, index: int) -> np.ndarray:
        key = int(self.keys[index])
        data = self.raw(index)
        try:
            return decode_image(data, f"{self.reader.rec_path} record {key} at byte offset "
                                      f"{self.reader.offset(key)}")
        except CorruptImage:
            raise
        except Exception as e:  # decoders may raise on hostile bytes; to the loader it is one bad image
            raise CorruptImage(f"{self.reader.rec_path} record {key}: {type(e).__name__}") from None


@SOURCES.register("rec")
def open_rec(path: str) -> RecordIODataset:
    return RecordIODataset(path)
