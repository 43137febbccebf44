"""Files faceforge did not write itself: checkpoints and InsightFace ``.bin`` files never run code,
damaged checkpoints and evaluation caches are a one-line error or rebuilt (issue 13, sections 4-5)."""

from __future__ import annotations

import io
import pathlib
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch

from faceforge.cli.main import main
from faceforge.errors import UserError
from faceforge.eval.pairs import read_bin, write_bin
from faceforge.models import build_backbone
from faceforge.models.checkpoint import (
    FORMAT,
    content_hash,
    load_backbone,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_checkpoint,
)


class _Touch:
    """Unpickling this creates ``marker``: the payload of a malicious file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> pathlib.Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint(path, build_backbone("mobilefacenet_tiny"), metrics={"acc": np.float64(0.5)})
    return path


def test_checkpoint_round_trip_carries_a_hash(tiny_ckpt):
    obj = read_checkpoint(tiny_ckpt)
    assert obj["sha256"] == content_hash(obj)
    assert type(obj["metrics"]["acc"]) is float  # numpy scalars are stored as plain floats
    model = load_backbone(tiny_ckpt)
    assert model.meta["backbone"] == "mobilefacenet_tiny"


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    torch.save({"format": FORMAT, "version": 1, "backbone": _Touch(marker)}, bad)
    with pytest.raises(UserError, match="refused"):
        read_checkpoint(bad)
    assert not marker.exists()
    img = tmp_path / "x.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n")
    code = main(["embed", str(img), "--model", str(bad), "--aligned", "--out", str(tmp_path / "f.npz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("faceforge: error: ") and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def _flip_tensor_byte(path: pathlib.Path) -> None:
    """Flip one byte inside the largest tensor record of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = np.frombuffer(bytes(raw[info.header_offset + 26 : info.header_offset + 30]), "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len)
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def test_flipped_tensor_byte_is_detected(tiny_ckpt, tmp_path):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(tiny_ckpt.read_bytes())
    _flip_tensor_byte(damaged)
    with pytest.raises(UserError, match="content hash mismatch"):
        read_checkpoint(damaged)


def test_truncated_checkpoint_is_one_line(tiny_ckpt, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(tiny_ckpt.read_bytes()[:5000])
    with pytest.raises(UserError) as e:
        read_checkpoint(cut)
    assert "\n" not in str(e.value)


def test_write_checkpoint_refuses_objects_that_need_code(tmp_path):
    with pytest.raises(TypeError, match="checkpoint.extra"):
        write_checkpoint(tmp_path / "x.ckpt", {"format": FORMAT, "extra": object()})
    assert not (tmp_path / "x.ckpt").exists()


def test_rng_state_is_plain_and_exact(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in the numpy state
    state = rng_state()
    write_checkpoint(tmp_path / "r.ckpt", {"format": FORMAT, "rng": state})
    expected = (random.random(), np.random.normal(), np.random.random(), torch.rand(1).item())
    set_rng_state(read_checkpoint(tmp_path / "r.ckpt")["rng"])
    assert (random.random(), np.random.normal(), np.random.random(), torch.rand(1).item()) == expected


def test_checkpoint_with_numpy_rng_state_from_before_still_loads(tmp_path):
    """Files written before RNG state became tensors hold numpy arrays: data, so still allowed."""
    np.random.seed(5)
    old = {"format": FORMAT, "version": 1, "metrics": {"acc": np.float64(0.25)},
           "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                   "python": random.getstate()}}
    torch.save(old, tmp_path / "old.ckpt")
    expected = np.random.random()
    obj = read_checkpoint(tmp_path / "old.ckpt")
    set_rng_state(obj["rng"])
    assert np.random.random() == expected and float(obj["metrics"]["acc"]) == 0.25


# --------------------------------------------------------------------------------------------
# InsightFace .bin


def test_malicious_bin_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "lfw.bin"
    bad.write_bytes(pickle.dumps(([_Touch(marker), b"x"], [True]), protocol=2))
    with pytest.raises(UserError, match="refused to load"):
        read_bin(bad)
    assert not marker.exists()
    code = main(["eval", "verify", "--model", "nonexistent.ckpt", "--pairs", f"bin:{bad}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("faceforge: error: ") and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_bin_with_numpy_uint8_arrays_like_small_lfw(tmp_path):
    """InsightFace's own small_lfw.bin stores numpy uint8 arrays (protocol 2, Python 2 style)."""
    images = [np.frombuffer(bytes([i, 255 - i, 7]), np.uint8).copy() for i in range(4)]
    path = tmp_path / "small.bin"
    path.write_bytes(pickle.dumps((images, [True, np.bool_(False)]), protocol=2))
    pairs = read_bin(path)
    assert pairs.images[1] == bytes([1, 254, 7]) and pairs.issame.tolist() == [True, False]


def test_bin_round_trip_and_wrong_structure(tmp_path):
    write_bin(tmp_path / "a.bin", [b"a", b"b"], [True])
    assert read_bin(tmp_path / "a.bin").images == [b"a", b"b"]
    (tmp_path / "b.bin").write_bytes(pickle.dumps(([1.5, b"b"], [True])))
    with pytest.raises(UserError, match="image 0 is a float"):
        read_bin(tmp_path / "b.bin")
    (tmp_path / "c.bin").write_bytes(pickle.dumps(([b"a", b"b"], ["yes"])))
    with pytest.raises(UserError, match="booleans"):
        read_bin(tmp_path / "c.bin")


# --------------------------------------------------------------------------------------------
# evaluation cache


class _CountingEmbedder:
    """Just enough of the Embedder interface for the cache: fixed features per image."""

    class meta:  # noqa: N801 - mirrors Embedder.meta
        input_size = (8, 8)

    def __init__(self):
        self.calls = 0

    def fingerprint(self) -> str:
        return "counting"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-shape"])
def test_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch, damage):
    from faceforge.embed.extract import Embeddings
    from faceforge.eval import cache as cache_mod

    emb = _CountingEmbedder()

    def fake_embed(embedder, images, **kw):
        embedder.calls += 1
        return Embeddings(np.ones((len(images), 4), np.float32), np.ones(len(images), bool), [])

    monkeypatch.setattr(cache_mod, "embed_images", fake_embed)
    images = ["a", "b", "c"]
    first = cache_mod.cached_embeddings(emb, images, "spec", cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not a zip at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    else:
        buf = io.BytesIO()
        np.savez(buf, features=np.ones((2, 4), np.float32), valid=np.ones(2, bool), corrupt=np.array([], str))
        path.write_bytes(buf.getvalue())
    again = cache_mod.cached_embeddings(emb, images, "spec", cache_dir=tmp_path)
    assert emb.calls == 2 and np.array_equal(again.features, first.features)
    third = cache_mod.cached_embeddings(emb, images, "spec", cache_dir=tmp_path)  # the rebuilt file
    assert emb.calls == 2 and third.features.shape == (3, 4)
