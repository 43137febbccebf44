"""InsightFace RecordIO and image lists: framing, IRHeader, round trips, clean errors."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from faceforge.data.dataset import open_source
from faceforge.data.readers.lists import ListDataset, write_facex_list, write_lst
from faceforge.data.readers.recordio import RecordIODataset
from faceforge.data.recordio import (
    MAGIC,
    IRHeader,
    RecordReader,
    RecordWriter,
    frame,
    pack,
    read_record_at,
    unpack,
    write_insightface,
)
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage


def _jpeg(seed: int, size=(112, 112)) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = np.kron(rng.integers(0, 255, (size[0] // 8, size[1] // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)  # lossless so pixels can be compared after decoding
    assert ok
    return buf.tobytes(), cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_irheader_layout_matches_mxnet():
    # mxnet.recordio.pack(IRHeader(0, 3.0, 7, 0), b'x') == struct 'IfQQ' + payload
    assert pack(IRHeader(0, 3.0, 7, 0), b"x") == struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"x"
    rec = pack(IRHeader(0, [5.0, 9.0], 0, 0), b"img")
    assert rec[:24] == struct.pack("<IfQQ", 2, 0.0, 0, 0)
    header, rest = unpack(rec)
    assert header.flag == 2 and list(header.label) == [5.0, 9.0] and rest == b"img"


def test_framing_padding_and_magic_split():
    magic = struct.pack("<I", MAGIC)
    assert frame(b"abcde") == magic + struct.pack("<I", 5) + b"abcde" + b"\0\0\0"
    payload = b"ABCD" + magic + b"EFGH" + magic + b"xy"
    data = frame(payload)
    # split at the two aligned magics: flags 1, 2, 3 with lengths 4, 4, 2
    lrecs = [struct.unpack_from("<I", data, o)[0] for o in (4, 16, 28)]
    assert [(x >> 29, x & ((1 << 29) - 1)) for x in lrecs] == [(1, 4), (2, 4), (3, 2)]
    assert read_record_at(data, 0, "t")[0] == payload
    unaligned = b"A" + magic + b"B"
    assert read_record_at(frame(unaligned), 0, "t")[0] == unaligned
    assert read_record_at(frame(magic), 0, "t")[0] == magic


def test_writer_reader_roundtrip(tmp_path):
    payloads = [b"", b"a", magic_payload := struct.pack("<I", MAGIC) * 3, bytes(range(256)) * 5]
    with RecordWriter(tmp_path / "x.rec") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    r = RecordReader(tmp_path / "x.rec", tmp_path / "x.idx")
    assert [r.read(k) for k in range(4)] == payloads
    assert r.read(2) == magic_payload
    # without the .idx the reader walks the file
    r2 = RecordReader(tmp_path / "x.rec")
    assert [r2.read(k) for k in range(4)] == payloads


def _write_rec(tmp_path, n_per=(3, 1, 2)):
    items, expected = [], []
    for label, n in enumerate(n_per):
        for j in range(n):
            data, rgb = _jpeg(label * 10 + j)
            items.append((label, data))
            expected.append((rgb, label))
    write_insightface(tmp_path, iter(items), num_classes=len(n_per))
    return expected


def test_insightface_layout_roundtrip(tmp_path):
    expected = _write_rec(tmp_path)
    assert (tmp_path / "property").read_text().strip() == "3,112,112"
    r = RecordReader(tmp_path / "train.rec", tmp_path / "train.idx")
    h0, _ = r.read_header(0)
    assert h0.flag == 2 and list(h0.label) == [7.0, 10.0]  # 6 images -> identities at 7, 8, 9
    assert [tuple(r.read_header(k)[0].label) for k in (7, 8, 9)] == [(1, 4), (4, 5), (5, 7)]
    assert r.read_header(1)[0].id == 1
    ds = open_source(f"rec:{tmp_path}")
    assert isinstance(ds, RecordIODataset)
    assert len(ds) == 6 and ds.num_classes == 3
    assert ds.identity_ranges == [(1, 4), (4, 5), (5, 7)]
    for i, (rgb, label) in enumerate(expected):
        img, lab = ds[i]
        assert lab == label
        np.testing.assert_array_equal(img, rgb)
    assert len(open_source(f"rec:{tmp_path / 'train.rec'}")) == 6


def test_rec_without_header_record(tmp_path):
    # plain im2rec output: every record is an image with a scalar label (or a label array)
    with RecordWriter(tmp_path / "train.rec") as w:
        for k in range(4):
            lab = float(k % 2) if k < 2 else [float(k % 2), 0.5]
            w.write(k, pack(IRHeader(0, lab, k, 0), _jpeg(k)[0]))
    ds = RecordIODataset(tmp_path)
    assert list(ds.labels) == [0, 1, 0, 1]


def test_truncated_rec_names_file_and_offset(tmp_path):
    _write_rec(tmp_path)
    rec = tmp_path / "train.rec"
    data = rec.read_bytes()
    rec.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"train\.(rec|idx).*byte offset \d+"):
        RecordIODataset(tmp_path)


def test_corrupt_magic_and_bad_jpeg(tmp_path):
    expected = _write_rec(tmp_path)
    r = RecordReader(tmp_path / "train.rec", tmp_path / "train.idx")
    off = r.index[2]
    data = bytearray((tmp_path / "train.rec").read_bytes())
    data[off + 8 + 24 + 20 : off + 8 + 24 + 60] = b"\0" * 40  # damage the image bytes of record 2
    (tmp_path / "train.rec").write_bytes(bytes(data))
    ds = RecordIODataset(tmp_path)
    with pytest.raises(CorruptImage):
        ds.read(1)
    np.testing.assert_array_equal(ds.read(0), expected[0][0])
    data[off : off + 4] = b"XXXX"
    (tmp_path / "train.rec").write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"byte offset {off}"):  # labels are read at open
        RecordIODataset(tmp_path)


def test_lst_and_facex_list_roundtrip(tmp_path):
    files, labels = [], []
    for label in (3, 7):
        (tmp_path / f"id{label}").mkdir()
        for j in range(2):
            data, _ = _jpeg(label + j)
            p = tmp_path / f"id{label}" / f"{j} a.png"  # a space in the name
            p.write_bytes(data)
            files.append(p)
            labels.append(label)
    write_lst(tmp_path / "train.lst", files, labels)
    assert (tmp_path / "train.lst").read_text().splitlines()[0] == f"1\t{files[0]}\t3"
    ds = open_source(f"list:{tmp_path / 'train.lst'}")
    assert list(ds.labels) == [0, 0, 1, 1] and ds.names == ["3", "7"]
    assert ds.read(3).shape == (112, 112, 3)
    rel = [str(f.relative_to(tmp_path)) for f in files]
    write_facex_list(tmp_path / "sub" / "list.txt", rel, labels)
    ds2 = open_source(f"list:{tmp_path / 'sub' / 'list.txt'},root={tmp_path}")
    np.testing.assert_array_equal(ds2.read(2), ds.read(2))
    (tmp_path / "im2rec.lst").write_text(f"0\t5\t{files[0]}\n1\t6\t{files[2]}\n")
    assert list(ListDataset(tmp_path / "im2rec.lst").labels) == [0, 1]


def test_list_errors(tmp_path):
    (tmp_path / "bad.txt").write_text("only_a_path\n")
    with pytest.raises(UserError, match=r"bad\.txt:1"):
        open_source(f"list:{tmp_path / 'bad.txt'}")
    with pytest.raises(UserError, match="root=DIR"):
        open_source(f"list:{tmp_path / 'bad.txt'},rot=x")
    (tmp_path / "ok.txt").write_text("missing.jpg 0\nmissing2.jpg 1\n")
    with pytest.raises(CorruptImage):
        ListDataset(tmp_path / "ok.txt").read(0)
