"""Pair list parsers, .bin round trip and pair source strings."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.errors import UserError
from faceforge.eval.pairs import (
    balanced_folds,
    open_pairs,
    parse_calfw,
    parse_facex,
    parse_lfw_pairs,
    read_bin,
    write_bin,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def test_real_lfw_pairs_file():
    path = SHARED / "data" / "protocols" / "lfw_pairs.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared/data)")
    p = open_pairs(f"pairs:{path},root=/lfw")
    assert len(p) == 6000 and len(p.images) == 7701  # LFW View 2 uses 7,701 distinct images
    assert p.issame.reshape(10, 600)[:, :300].all() and not p.issame.reshape(10, 600)[:, 300:].any()
    assert np.bincount(p.folds).tolist() == [600] * 10
    assert str(p.images[p.pairs[0, 0]]) == "/lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert str(p.images[p.pairs[0, 1]]) == "/lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg"


def test_lfw_single_set_header_and_ext(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("2\nA 1 2\nB 3 4\nA 1 B 2\nC 1 D 10\n")
    p = parse_lfw_pairs(f, ext="png")
    assert p.folds is None and p.issame.tolist() == [True, True, False, False]
    assert p.images[p.pairs[3, 1]] == tmp_path / "D" / "D_0010.png"
    assert len(p.images) == 7  # A_1 appears twice and is listed once


@pytest.mark.parametrize(
    "text,where,what",
    [
        ("2 1\nA 1 2\nA 1 B x\nA 1 2\nB 1 C 1\n", ":3:", "not an integer"),
        ("1 1\nA 1\nA 1 B 2\n", ":2:", "expected 'name n1 n2'"),
        ("1 2\nA 1 2\nA 1 B 2\n", "header says", "pairs"),
        ("a b c\n", ":1:", "header"),
    ],
)
def test_lfw_malformed(tmp_path, text, where, what):
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(UserError, match=what) as e:
        parse_lfw_pairs(f)
    assert str(f) in str(e.value) and where in str(e.value)


def test_calfw_regroups_into_balanced_folds(tmp_path):
    lines = []
    for i in range(30):  # 30 same pairs, then 30 different ones, as the official lists
        lines += [f"id{i}/a.jpg {i + 1}", f"id{i}/b.jpg {i + 1}"]
    for i in range(30):
        lines += [f"x{i}/a.jpg 0", f"y{i}/a.jpg 0"]
    f = tmp_path / "pairs_CALFW.txt"
    f.write_text("\n".join(lines) + "\n")
    p = open_pairs(f"calfw:{f},root={tmp_path / 'imgs'}")
    assert len(p) == 60
    assert np.bincount(p.folds).tolist() == [6] * 10
    for k in range(10):  # fold k = same pairs 3k..3k+2 then different pairs 3k..3k+2, contiguous
        sel = np.nonzero(p.folds == k)[0]
        assert np.array_equal(sel, np.arange(6 * k, 6 * k + 6))
        assert p.issame[sel].tolist() == [True] * 3 + [False] * 3
    assert p.images[p.pairs[1, 0]] == tmp_path / "imgs" / "id1" / "a.jpg"
    assert p.images[p.pairs[3, 0]] == tmp_path / "imgs" / "x0" / "a.jpg"


def test_balanced_folds_uneven_sizes():
    issame = np.array([True] * 13 + [False] * 7)
    folds = balanced_folds(issame, 5)
    assert np.bincount(folds[issame]).tolist() == [3, 3, 3, 2, 2]
    assert np.bincount(folds[~issame]).tolist() == [2, 2, 1, 1, 1]


@pytest.mark.parametrize(
    "text,line,what",
    [
        ("a.jpg 1\nb.jpg 1\nc.jpg 0\n", 3, "odd number"),
        ("a.jpg 1\nb.jpg\n", 2, "expected 'path label'"),
        ("a.jpg 1\nb.jpg one\n", 2, "not an integer"),
        ("a.jpg 1\nb.jpg 0\n", 2, "disagree"),
    ],
)
def test_calfw_malformed(tmp_path, text, line, what):
    f = tmp_path / "list.txt"
    f.write_text(text)
    with pytest.raises(UserError, match=what) as e:
        parse_calfw(f)
    assert f"{f}:{line}:" in str(e.value)


def test_facex_list(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("a/1.jpg a/2.jpg 1\na/1.jpg b/1.jpg 0\n")
    p = parse_facex(f)
    assert p.issame.tolist() == [True, False] and len(p.images) == 3
    f.write_text("a/1.jpg a/2.jpg 1\na/1.jpg b/1.jpg 2\n")
    with pytest.raises(UserError, match=r"list.txt:2: label must be 0 or 1"):
        parse_facex(f)
    f.write_text("a/1.jpg 1\n")
    with pytest.raises(UserError, match=r"list.txt:1: expected 'path1 path2 label'"):
        parse_facex(f)


def _jpeg(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_bin_round_trip(tmp_path):
    images = [_jpeg(i) for i in range(6)]
    path = tmp_path / "lfw.bin"
    write_bin(path, images, [True, False, True])
    p = open_pairs(f"bin:{path}")
    assert p.images == images and p.issame.tolist() == [True, False, True]
    assert p.pairs.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert p.read(2).shape == (112, 112, 3)
    assert open_pairs(str(path)).issame.tolist() == [True, False, True]  # bare *.bin path


def test_bin_written_by_python2_layout(tmp_path):
    # InsightFace's .bin files were pickled by Python 2: bytes come back via encoding="bytes"
    path = tmp_path / "old.bin"
    with open(path, "wb") as f:
        pickle.dump(([bytearray(_jpeg(0)), _jpeg(1)], [1]), f, protocol=2)
    p = read_bin(path)
    assert isinstance(p.images[0], bytes) and p.issame.tolist() == [True]


def test_bin_corrupt(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="not an InsightFace verification .bin"):
        read_bin(path)
    with open(path, "wb") as f:
        pickle.dump(([_jpeg(0)], [True, False]), f)
    with pytest.raises(UserError, match="1 images for 2 pairs"):
        read_bin(path)


def test_source_strings(tmp_path):
    with pytest.raises(UserError, match="unknown prefix"):
        open_pairs("pair:/x.txt")
    with pytest.raises(UserError, match="valid: pairs:"):
        open_pairs("/x.txt")
    f = tmp_path / "p.txt"
    f.write_text("1\nA 1 2\nA 1 B 2\n")
    with pytest.raises(UserError, match="option 'rot=/x'"):
        open_pairs(f"pairs:{f},rot=/x")
    with pytest.raises(UserError, match="not found"):
        open_pairs("facex:/does/not/exist.txt")
