"""Packed format round trips and the training loader (determinism, resume, normalisation, skips)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceforge.data.dataset import FaceDataset, open_source
from faceforge.data.loader import build_train_loader, epoch_plan
from faceforge.data.packed import PackedDataset, PackedWriter, verify
from faceforge.data.tools.pack import pack
from faceforge.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _folder(root: Path, ids=4, per=3, size=(112, 112), corrupt=True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {}
    for i in range(ids):
        (root / f"id{i}").mkdir(parents=True)
        for j in range(per):
            img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / f"id{i}" / f"{j}.png"), img)
            images[f"id{i}/{j}"] = img[..., ::-1]
    if corrupt:
        (root / "id0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return images


class _Plain(FaceDataset):
    """The same images without ``read_batch``: forces the per-image decode path."""

    def __init__(self, ds):
        self.ds, self.labels, self.names = ds, ds.labels, ds.names

    def read(self, i):
        return self.ds.read(i)


def _packed(tmp_path, n=20, size=(8, 6)) -> PackedDataset:
    rng = np.random.default_rng(1)
    w = PackedWriter(tmp_path / "t.ffpk", (*size, 3))
    for i in range(n):
        w.add(rng.integers(0, 255, (*size, 3), dtype=np.uint8), i)  # one image per identity
    w.close(names=[f"p{i}" for i in range(n)])
    return PackedDataset(tmp_path / "t.ffpk")


def test_pack_folder_roundtrip(tmp_path):
    images = _folder(tmp_path / "src")
    report = pack(f"folder:{tmp_path / 'src'}", tmp_path / "out.ffpk", workers=1, progress=False)
    assert report["images"] == 12 and report["skipped"] == 1 and report["resized"] == 0
    ds = open_source(f"packed:{tmp_path / 'out.ffpk'}")
    assert ds.names == ["id0", "id1", "id2", "id3"] and ds.num_classes == 4
    assert list(ds.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    np.testing.assert_array_equal(ds.read(4), images["id1/1"])
    np.testing.assert_array_equal(ds.read_batch([4, 0])[0], images["id1/1"])
    verify(tmp_path / "out.ffpk")
    assert not list(tmp_path.glob(".out.ffpk*"))  # no temp file left behind


def test_pack_orl(tmp_path):
    orl = SHARED / "data" / "orl"
    if not orl.is_dir():
        pytest.skip(f"shared ORL data not found at {orl}")
    report = pack(str(orl), tmp_path / "orl.ffpk", workers=2, progress=False)
    assert report["images"] == 400 and report["classes"] == 40 and report["skipped"] == 0
    assert report["resized"] == 400  # 92x112 PGM -> 112x112
    ds = PackedDataset(tmp_path / "orl.ffpk")
    assert np.bincount(ds.labels).tolist() == [10] * 40
    img = ds.read(0)
    assert img.shape == (112, 112, 3) and (img[..., 0] == img[..., 1]).all()  # gray expanded


def test_packed_corruption_is_a_user_error(tmp_path):
    ds = _packed(tmp_path)
    path = ds.path
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(UserError, match=r"t\.ffpk: truncated.*byte offset"):
        PackedDataset(path)
    path.write_bytes(b"XXXX" + data[4:])
    with pytest.raises(UserError, match="bad magic"):
        PackedDataset(path)
    bad = bytearray(data)
    bad[-3] ^= 0xFF
    path.write_bytes(bytes(bad))
    with pytest.raises(UserError, match="checksum"):
        PackedDataset(path)
    bad = bytearray(data)
    bad[5000] ^= 0xFF
    path.write_bytes(bytes(bad))
    PackedDataset(path)  # data damage is found by verify, not at open
    with pytest.raises(UserError, match="checksum"):
        verify(path)


def test_loader_normalises_and_flips_exactly(tmp_path):
    ds = _packed(tmp_path)
    loader = build_train_loader(ds, 5, flip=True, seed=3, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    order, flips = epoch_plan(len(ds), 3, 0, True)
    assert flips.any() and not flips.all()
    mean = np.array([0.1, 0.2, 0.3]).reshape(3, 1, 1)
    std = np.array([0.5, 0.25, 2.0]).reshape(3, 1, 1)
    seen = 0
    for images, labels in loader.iter_from(0):
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        for img, lab in zip(images, labels):
            pos = int(np.flatnonzero(order == int(lab))[0])  # label == dataset index here
            raw = ds.read(int(lab))
            if flips[pos]:
                raw = raw[:, ::-1]
            want = (raw.transpose(2, 0, 1) / 255.0 - mean) / std
            np.testing.assert_allclose(img.numpy(), want, rtol=0, atol=1e-5)
            seen += 1
    assert seen == 20


def test_loader_deterministic_resumable_and_same_on_both_paths(tmp_path):
    ds = _packed(tmp_path, n=23)
    loader = build_train_loader(ds, 4, seed=7)
    assert len(loader) == 5  # drop_last
    loader.set_epoch(2)
    full = list(loader)
    assert loader.state_dict()["batch"] == 5
    again = list(build_train_loader(ds, 4, seed=7).iter_from(2))
    for (a, la), (b, lb) in zip(full, again):
        assert torch.equal(a, b) and torch.equal(la, lb)
    other = list(loader.iter_from(3))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(full, other))
    # resume at batch 3 of epoch 2 reproduces the tail exactly
    resumed = build_train_loader(ds, 4, seed=7)
    resumed.load_state_dict({"epoch": 2, "batch": 3})
    tail = list(resumed)
    assert len(tail) == 2
    for (a, la), (b, lb) in zip(full[3:], tail):
        assert torch.equal(a, b) and torch.equal(la, lb)
    # the per-image path gives the same batches (up to the order inside a batch)
    plain = list(build_train_loader(_Plain(ds), 4, seed=7).iter_from(2))
    for (a, la), (b, lb) in zip(full, plain):
        sa, sb = torch.argsort(la), torch.argsort(lb)
        assert torch.equal(la[sa], lb[sb]) and torch.equal(a[sa], b[sb])
    assert set(torch.cat([lab for _, lab in full]).tolist()) <= set(range(23))


def test_loader_workers_match_in_process(tmp_path):
    ds = _packed(tmp_path, n=12)
    one = list(build_train_loader(ds, 4, seed=1).iter_from(0))
    two = list(build_train_loader(ds, 4, seed=1, workers=2).iter_from(0))
    assert len(one) == len(two) == 3
    for (a, la), (b, lb) in zip(one, two):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_loader_skips_and_counts_corrupt_images(tmp_path):
    _folder(tmp_path / "src", ids=3, per=2, size=(16, 16))
    ds = open_source(f"folder:{tmp_path / 'src'}")
    assert len(ds) == 7
    loader = build_train_loader(ds, 7, flip=False, drop_last=False)
    batches = list(loader)
    assert loader.skipped == 1
    assert sum(len(lab) for _, lab in batches) == 6
    assert batches[0][0].shape[1:] == (3, 16, 16)


def test_loader_rejects_bad_options(tmp_path):
    ds = _packed(tmp_path, n=3)
    with pytest.raises(UserError, match="batch_size"):
        build_train_loader(ds, 4)
    with pytest.raises(UserError, match="std"):
        build_train_loader(ds, 2, std=0)
    with pytest.raises(UserError, match="batch index"):
        next(build_train_loader(ds, 2).iter_from(0, 9))
