"""Random bytes, truncations and bit flips thrown at every reader: only clean errors come out.

A reader may accept a damaged file (a flipped bit inside a JPEG is still a JPEG), but it must never
raise anything except ``UserError`` (bad file) or ``CorruptImage`` (one bad image).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceforge.data.packed import PackedDataset, PackedWriter, verify
from faceforge.data.readers.lists import ListDataset
from faceforge.data.readers.recordio import RecordIODataset
from faceforge.data.recordio import write_insightface
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage

CLEAN = (UserError, CorruptImage)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _build(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    items = []
    for label in range(3):
        for _ in range(2):
            ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
            items.append((label, buf.tobytes()))
    (root / "rec").mkdir()
    write_insightface(root / "rec", iter(items), num_classes=3, image_size=(16, 16))
    (root / "img").mkdir()
    for i, (_, data) in enumerate(items):
        (root / "img" / f"{i}.jpg").write_bytes(data)
    (root / "train.lst").write_text("".join(f"1\timg/{i}.jpg\t{lab}\n" for i, (lab, _) in enumerate(items)))
    (root / "list.txt").write_text("".join(f"img/{i}.jpg {lab}\n" for i, (lab, _) in enumerate(items)))
    w = PackedWriter(root / "p.ffpk", (4, 4, 3))
    for i in range(6):
        w.add(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), i % 3)
    w.close(names=["a", "b", "c"])
    return {"rec": root / "rec" / "train.rec", "idx": root / "rec" / "train.idx",
            "property": root / "rec" / "property", "lst": root / "train.lst", "list": root / "list.txt",
            "packed": root / "p.ffpk"}


_ORIGINAL = Path(tempfile.mkdtemp(prefix="ff_fuzz_"))
FILES = _build(_ORIGINAL)


def _open_and_read_all(kind: str, root: Path) -> None:
    if kind in ("rec", "idx", "property"):
        ds = RecordIODataset(root / "rec")
    elif kind in ("lst", "list"):
        ds = ListDataset(root / FILES[kind].name)
    else:
        ds = PackedDataset(root / "p.ffpk")
        verify(root / "p.ffpk")
    for i in range(len(ds)):
        try:
            img = ds.read(i)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        except CorruptImage:
            pass


def _mutate(data: bytes, how: str, pos: float, payload: bytes) -> bytes:
    cut = int(pos * len(data))
    if how == "truncate":
        return data[:cut]
    if how == "flip":
        b = bytearray(data)
        for k, v in enumerate(payload[:8]):
            if b:
                b[(cut + 97 * k) % len(b)] ^= v or 1
        return bytes(b)
    if how == "insert":
        return data[:cut] + payload + data[cut:]
    return payload  # replace with random bytes


@pytest.mark.parametrize("kind", sorted(FILES))
@FUZZ
@given(how=st.sampled_from(["truncate", "flip", "insert", "replace"]),
       pos=st.floats(0, 1), payload=st.binary(min_size=0, max_size=64))
def test_reader_sees_only_clean_errors(kind, how, pos, payload):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(_ORIGINAL, root, dirs_exist_ok=True)
        target = root / FILES[kind].relative_to(_ORIGINAL)
        target.write_bytes(_mutate(target.read_bytes(), how, pos, payload))
        try:
            _open_and_read_all(kind, root)
        except CLEAN:
            pass


def test_unmutated_fixture_reads(tmp_path):
    shutil.copytree(_ORIGINAL, tmp_path, dirs_exist_ok=True)
    for kind in FILES:
        _open_and_read_all(kind, tmp_path)
