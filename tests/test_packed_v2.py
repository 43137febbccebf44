"""Packed format version 2: JPEG records, per-record CRCs, header fields checked against the file."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from faceforge.config import load_config
from faceforge.data.loader import build_train_loader
from faceforge.data.packed import DATA_OFFSET, HEAD_SIZE, HEADER, MAGIC, PackedDataset, PackedWriter, verify
from faceforge.errors import UserError


def _faces(n=12, size=(112, 112)):
    """Smooth images (JPEG-friendly, like faces), one identity per 3 images."""
    rng = np.random.default_rng(5)
    out = []
    for _ in range(n):
        small = rng.integers(0, 255, (7, 7, 3), dtype=np.uint8)
        out.append(cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC))
    return out


def _write(path, encoding, images):
    w = PackedWriter(path, (*images[0].shape[:2], 3), encoding=encoding, quality=95)
    for i, img in enumerate(images):
        w.add(img, i // 3)
    w.close(names=[f"id{k}" for k in range(len(images) // 3)])
    return PackedDataset(path)


def test_jpeg_records_decode_close_to_raw_at_a_fraction_of_the_bytes(tmp_path):
    images = _faces()
    raw = _write(tmp_path / "raw.ffpk", "raw", images)
    jpg = _write(tmp_path / "jpg.ffpk", "jpeg", images)
    assert jpg.encoding == "jpeg" and not hasattr(jpg, "image_shape")  # per-image loader path
    assert jpg.path.stat().st_size < raw.path.stat().st_size / 4
    for i, img in enumerate(images):
        np.testing.assert_array_equal(raw.read(i), img)
        assert np.abs(jpg.read(i).astype(int) - img).mean() < 3.0
    assert jpg.names == raw.names and list(jpg.labels) == list(raw.labels)
    assert verify(jpg) == {"records": 12, "bytes": jpg.data_end - jpg.data_offset}
    # the loader (and so the engine) reads both through the same plan: same labels, same order
    a = list(build_train_loader(raw, 4, seed=2).iter_from(1))
    b = list(build_train_loader(jpg, 4, seed=2).iter_from(1))
    for (xa, la), (xb, lb) in zip(a, b):
        sa, sb = la.argsort(), lb.argsort()
        assert la[sa].tolist() == lb[sb].tolist()
        assert (xa[sa] - xb[sb]).abs().mean() < 0.03


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_a_damaged_record_is_named_by_verify(tmp_path, encoding):
    ds = _write(tmp_path / "d.ffpk", encoding, _faces())
    off = int(ds.index["offset"][5]) + 7
    data = bytearray(ds.path.read_bytes())
    data[off] ^= 0x55
    ds.path.write_bytes(bytes(data))
    PackedDataset(ds.path)  # the data section is not read at open...
    with pytest.raises(UserError, match=r"d\.ffpk: record 5 checksum mismatch"):
        verify(ds.path)
    with pytest.raises(UserError, match="record 5"):  # ...unless asked
        PackedDataset(ds.path, verify_crc=True)


def test_header_fields_are_checked_against_the_file_size(tmp_path):
    ds = _write(tmp_path / "h.ffpk", "jpeg", _faces())
    data = ds.path.read_bytes()
    ds.path.write_bytes(data + b"junk")
    with pytest.raises(UserError, match=r"h\.ffpk: 4 unexpected bytes after byte offset"):
        PackedDataset(ds.path)
    head = bytearray(data)
    struct.pack_into("<Q", head, 8 + 16, 10**9)  # count: far more records than the file holds
    ds.path.write_bytes(bytes(head))
    with pytest.raises(UserError, match=r"h\.ffpk: header checksum mismatch"):  # version 3: caught first
        PackedDataset(ds.path)
    struct.pack_into("<I", head, HEAD_SIZE, zlib.crc32(bytes(head[:HEAD_SIZE])))  # re-stamped on purpose
    ds.path.write_bytes(bytes(head))
    with pytest.raises(UserError, match=r"h\.ffpk: inconsistent header"):  # the field checks still hold
        PackedDataset(ds.path)
    for cut in (10, DATA_OFFSET + 100, len(data) - 3):
        ds.path.write_bytes(data[:cut])
        with pytest.raises(UserError, match=r"h\.ffpk: (truncated|inconsistent)"):
            PackedDataset(ds.path)


def test_version_1_files_still_open_and_verify(tmp_path):
    images = _faces(6, (8, 6))
    body = b"".join(img.tobytes() for img in images)
    labels = np.arange(6, dtype="<i8").tobytes()
    meta = labels + json.dumps({"names": None, "description": ""}).encode()
    meta_off = DATA_OFFSET + len(body)
    head = HEADER.pack(MAGIC, 1, 8, 6, 3, 6, 6, DATA_OFFSET, meta_off, len(meta), len(labels),
                       zlib.crc32(meta), zlib.crc32(body))
    path = tmp_path / "v1.ffpk"
    path.write_bytes(head + b"\0" * (DATA_OFFSET - len(head)) + body + meta)
    ds = PackedDataset(path)
    assert ds.index is None and ds.encoding == "raw"
    np.testing.assert_array_equal(ds.read_batch([3])[0], images[3])
    assert verify(path)["records"] == 6


def test_stats_verify_and_train_verify_crc(tmp_path):
    ds = _write(tmp_path / "s.ffpk", "jpeg", _faces())
    cmd = [sys.executable, "-m", "faceforge", "data", "stats", f"packed:{ds.path}", "--verify", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["verified"]["records"] == 12
    data = bytearray(ds.path.read_bytes())
    data[int(ds.index["offset"][2]) + 3] ^= 1
    ds.path.write_bytes(bytes(data))
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and "record 2 checksum mismatch" in bad.stderr
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    from faceforge.train.engine import Trainer

    cfg = load_config(None, [f"data.train=packed:{ds.path}", "data.verify_crc=true",
                             "model.backbone=mobilefacenet_tiny", "data.batch_size=4",
                             f"output={tmp_path / 'o'}"])
    with pytest.raises(UserError, match="record 2 checksum mismatch"):
        Trainer(cfg, quiet=True)


def test_pack_jpeg_keeps_stored_jpegs_of_the_right_size(tmp_path):
    from faceforge.data.tools.pack import pack

    src = tmp_path / "src"
    for i, img in enumerate(_faces(6)):
        (src / f"id{i // 3}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / f"id{i // 3}" / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    small = cv2.resize(_faces(1)[0], (56, 56))
    cv2.imwrite(str(src / "id1" / "small.jpg"), small)  # resized, then encoded
    report = pack(f"folder:{src}", tmp_path / "j.ffpk", workers=1, progress=False, encoding="jpeg")
    assert report["images"] == 7 and report["resized"] == 1 and report["encoding"] == "jpeg"
    ds = PackedDataset(tmp_path / "j.ffpk")
    files = sorted(src.rglob("*.jpg"))
    stored = {ds.record(i) for i in range(len(ds))}
    kept = [f for f in files if f.name != "small.jpg"]
    assert all(f.read_bytes() in stored for f in kept)  # byte for byte: no second lossy step
    assert ds.read(0).shape == (112, 112, 3)
