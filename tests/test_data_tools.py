"""Dataset tools (clean, balance, merge, shallow, stats, convert) and the ``faceforge data`` CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceforge.cli.main import main
from faceforge.data.dataset import open_source
from faceforge.data.tools.balance import BalancePolicy, balance, opening, salt_and_pepper, summary
from faceforge.data.tools.clean import clean, safe_name
from faceforge.data.tools.convert import convert
from faceforge.data.tools.merge import merge
from faceforge.data.tools.shallow import shallow
from faceforge.data.tools.stats import format_stats, stats
from faceforge.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _img(seed: int, size=32, color=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if color is not None:
        return np.clip(np.full((size, size, 3), color) + rng.integers(-3, 4, (size, size, 3)), 0, 255).astype(
            np.uint8
        )
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _messy(root: Path) -> None:
    from PIL import Image

    (root / "alice").mkdir(parents=True)
    (root / "José Ñúñez").mkdir()
    cv2.imwrite(str(root / "alice" / "a.jpg"), _img(1))
    cv2.imwrite(str(root / "alice" / "gray.png"), _img(2)[..., 0])
    rgba = np.dstack([_img(3), np.full((32, 32), 128, np.uint8)])
    cv2.imwrite(str(root / "alice" / "rgba.png"), rgba)
    Image.fromarray(_img(4)).convert("CMYK").save(root / "alice" / "cmyk.jpg")
    (root / "alice" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    cv2.imwrite(str(root / "José Ñúñez" / "fötö 1.jpg"), _img(5))
    (root / "José Ñúñez" / "dup.jpg").write_bytes((root / "alice" / "a.jpg").read_bytes())


def test_clean_messy_folder(tmp_path):
    src = tmp_path / "src"
    _messy(src)
    before = _tree_hash(src)
    r = clean(src, tmp_path / "dst")
    c = r["counts"]
    assert c["images_in"] == 7 and c["corrupt"] == 1 and c["duplicates"] == 1
    assert c["converted"] == 3 and c["copied"] == 2 and c["images_out"] == 5
    assert {x["was"] for x in r["changes"]["converted"]} == {"gray", "rgba", "cmyk"}
    assert _tree_hash(src) == before  # SRC untouched
    out = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*.jpg"))
    assert all(s.isascii() and " " not in s for s in out)
    assert "Jose_Nunez/foto_1.jpg" in out
    for p in (tmp_path / "dst").rglob("*.jpg"):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 3 and img.shape[2] == 3
    # identities are visited in sorted order, so the copy under José is kept and alice/a.jpg dropped
    assert r["changes"]["duplicates"] == [{"file": "alice/a.jpg", "same_as": "José Ñúñez/dup.jpg"}]
    kept = (tmp_path / "dst" / "Jose_Nunez" / "dup.jpg").read_bytes()
    assert kept == (src / "alice" / "a.jpg").read_bytes()
    report = json.loads((tmp_path / "dst" / "clean_report.json").read_text())
    assert report["counts"] == c
    ds = open_source(f"folder:{tmp_path / 'dst'}")
    assert len(ds) == 5 and ds.names == ["Jose_Nunez", "alice"]
    with pytest.raises(UserError, match="not empty"):
        clean(src, tmp_path / "dst")
    with pytest.raises(UserError, match="outside the source"):
        clean(src, src / "inner")


def test_safe_name():
    assert safe_name("Ñoño é/x") == "Nono_e_x"
    assert safe_name("日本") == "x" and safe_name("...") == "x"


def test_balance_policy_boundaries():
    p = BalancePolicy()
    got = {n: p.action(n) for n in (351, 350, 201, 200, 91, 90, 31, 30, 1)}
    assert got == {351: "sample", 350: "keep", 201: "keep", 200: "x2", 91: "x2", 90: "x4", 31: "x4",
                   30: "drop", 1: "drop"}


def test_augmentations():
    img = np.zeros((9, 9, 3), np.uint8)
    img[4, 4] = 255  # an isolated bright pixel is removed by an opening
    assert opening(img, 3).max() == 0
    sp = salt_and_pepper(np.full((50, 50, 3), 128, np.uint8), 0.2, np.random.default_rng(0))
    frac = ((sp == 0).all(2) | (sp == 255).all(2)).mean()
    assert 0.1 < frac < 0.3


def test_balance_small_policy_parallel_equals_serial(tmp_path):
    src = tmp_path / "src"
    for name, n in {"a": 8, "b": 6, "c": 4, "d": 2, "e": 1}.items():
        (src / name).mkdir(parents=True)
        for j in range(n):
            cv2.imwrite(str(src / name / f"{j}.jpg"), _img(ord(name) * 10 + j))
    policy = BalancePolicy(cap=6, keep_above=5, double_above=3, drop_at_most=1)
    r = balance(src, tmp_path / "one", policy, workers=1)
    assert r["before"] == {"identities": 5, "images": 21}
    per = {row["identity"]: (row["action"], row["after"]) for row in r["identities"]}
    assert per == {"a": ("sample", 6), "b": ("keep", 6), "c": ("x2", 8), "d": ("x4", 8), "e": ("drop", 0)}
    assert r["after"] == {"identities": 4, "images": 28}
    assert not (tmp_path / "one" / "e").exists()
    assert sorted(p.name for p in (tmp_path / "one" / "d").iterdir()) == [
        "0.jpg", "0_noise.jpg", "0_open.jpg", "0_sp.jpg", "1.jpg", "1_noise.jpg", "1_open.jpg", "1_sp.jpg"]
    balance(src, tmp_path / "two", policy, workers=2)
    one = {str(p.relative_to(tmp_path / "one")): p.read_bytes() for p in (tmp_path / "one").rglob("*.jpg")}
    two = {str(p.relative_to(tmp_path / "two")): p.read_bytes() for p in (tmp_path / "two").rglob("*.jpg")}
    assert one == two


def test_balance_never_silently_empties_a_set(tmp_path):
    src = tmp_path / "src"
    for name, n in {"a": 5, "b": 2, "c": 2, "d": 2}.items():
        (src / name).mkdir(parents=True)
        for j in range(n):
            cv2.imwrite(str(src / name / f"{j}.jpg"), _img(ord(name) * 10 + j))
    with pytest.raises(UserError, match="all 11 images would be dropped.*--drop-at-most"):
        balance(src, tmp_path / "none", BalancePolicy())  # the default cut-off: every identity <= 30
    assert not (tmp_path / "none").exists()
    assert main(["data", "balance", str(src), str(tmp_path / "none")]) == 2
    policy = BalancePolicy(cap=9, keep_above=8, double_above=7, drop_at_most=2)
    r = balance(src, tmp_path / "most", policy, workers=1)
    assert r["warning"].startswith("warning: --drop-at-most 2 drops 3 of 4 identities, 6 of 11 images")
    assert r["rules"] == {"x4": {"identities": 1, "before": 5, "after": 20},
                          "drop": {"identities": 3, "before": 6, "after": 0}}
    text = summary(r)
    assert "2 < n <= 7: x4 (opening, noise, salt-and-pepper): 1 identities, 5 -> 20 images" in text
    assert "n <= 2: dropped: 3 identities, 6 -> 0 images" in text and "warning:" in text
    r = balance(src, tmp_path / "fine", BalancePolicy(cap=9, keep_above=8, double_above=7, drop_at_most=1))
    assert r["warning"] is None and "warning" not in summary(r)


class _MeanColour(torch.nn.Module):
    """A stand-in embedder for the merge test: the mean colour, so equal colours mean equal people."""

    meta = {"input_size": (32, 32), "mean": 0.5, "std": 0.5}

    def forward(self, x):
        return x.mean(dim=(2, 3)) + torch.tensor([0.0, 0.0, 1.2])


def test_merge_by_name_and_embedding(tmp_path):
    colours = {"red": (0, 0, 220), "green": (0, 220, 0), "blue": (220, 0, 0), "gray": (90, 90, 90)}
    layout = {
        "s1": {"alice": "red", "bob": "green"},
        "s2": {"Alice": "blue", "robert": "green", "carol": "gray"},
    }
    for src, ids in layout.items():
        for name, col in ids.items():
            (tmp_path / src / name).mkdir(parents=True)
            for j in range(2):
                cv2.imwrite(str(tmp_path / src / name / f"{j}.png"), _img(j, color=colours[col]))
    r = merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "out", embedder=_MeanColour(), threshold=0.99)
    assert r["identities_in"] == 5 and r["identities_out"] == 3 and r["images"] == 10
    assert len(r["embedding_pairs"]) == 1 and r["embedding_pairs"][0]["b"].endswith(":robert")
    rows = list(csv.DictReader((tmp_path / "out" / "merge_mapping.csv").open()))
    mapping = {(Path(row["source"]).name, row["original_identity"]): row for row in rows}
    assert mapping["s2", "Alice"]["merged_identity"] == "alice"
    assert mapping["s2", "Alice"]["matched_by"] == "name"
    assert mapping["s2", "robert"]["merged_identity"] == "bob"
    assert mapping["s2", "robert"]["matched_by"] == "embedding"
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["alice", "bob", "carol"]
    assert len(list((tmp_path / "out" / "alice").iterdir())) == 4
    r2 = merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "out2", by_name=False)
    assert r2["identities_out"] == 5


def test_shallow_and_stats(tmp_path):
    src = tmp_path / "src"
    for name, n in {"a": 5, "b": 1, "c": 3}.items():
        (src / name).mkdir(parents=True)
        for j in range(n):
            cv2.imwrite(str(src / name / f"{j}.jpg"), _img(j))
    r = shallow(src, tmp_path / "sh", per_identity=2)
    assert r["images"] == 5 and r["identities"] == 3
    assert sorted(p.name for p in (tmp_path / "sh" / "a").iterdir()) == ["0.jpg", "1.jpg"]
    s = stats(str(src))
    assert s["identities"] == 3 and s["images"] == 9 and s["per_identity"]["max"] == 5
    assert sum(h["identities"] for h in s["histogram"]) == 3


def test_stats_orl():
    orl = SHARED / "data" / "orl"
    if not orl.is_dir():
        pytest.skip(f"shared ORL data not found at {orl}")
    s = stats(f"folder:{orl}")
    assert (s["identities"], s["images"]) == (40, 400)
    assert s["per_identity"] == {"min": 10, "median": 10.0, "mean": 10.0, "max": 10}
    assert "10" in format_stats(s)


def test_convert_roundtrips(tmp_path):
    src = tmp_path / "src"
    for name in ("p", "q", "r"):
        (src / name).mkdir(parents=True)
        for j in range(3):
            cv2.imwrite(str(src / name / f"{j}.jpg"), _img(ord(name) + j, size=112))
    (src / "q" / "bad.jpg").write_bytes(b"nope")
    r = convert(str(src), "rec", tmp_path / "rec")
    assert r["images"] == 9 and r["skipped"] == 1
    rec = open_source(f"rec:{tmp_path / 'rec'}")
    folder = open_source(f"folder:{src}")
    assert list(rec.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert rec.raw(3) == (src / "q" / "0.jpg").read_bytes()  # JPEG bytes copied, not re-encoded
    np.testing.assert_array_equal(rec.read(8), folder.read(9))
    convert(f"rec:{tmp_path / 'rec'}", "folder", tmp_path / "back")
    back = open_source(f"folder:{tmp_path / 'back'}")
    assert len(back) == 9 and back.num_classes == 3
    convert(str(src), "lst", tmp_path / "train.lst")
    lst = open_source(f"list:{tmp_path / 'train.lst'}")
    assert len(lst) == 10
    convert(f"rec:{tmp_path / 'rec'}", "packed", tmp_path / "x.ffpk")
    packed = open_source(f"packed:{tmp_path / 'x.ffpk'}")
    np.testing.assert_array_equal(packed.read(5), rec.read(5))
    with pytest.raises(UserError, match="--to"):
        convert(str(src), "tfrecord", tmp_path / "z")


def test_cli_data_commands(tmp_path, capsys):
    src = tmp_path / "src"
    for name in ("a", "b"):
        (src / name).mkdir(parents=True)
        for j in range(3):
            cv2.imwrite(str(src / name / f"{j}.jpg"), _img(j, size=112))
    assert main(["data", "stats", str(src)]) == 0
    assert "identities  2" in capsys.readouterr().out
    assert main(["data", "pack", f"folder:{src}", str(tmp_path / "p.ffpk"), "--quiet", "--workers", "1"]) == 0
    assert "6 images of 2 identities" in capsys.readouterr().out
    assert main(["data", "shallow", str(src), str(tmp_path / "sh"), "--per-identity", "1"]) == 0
    assert main(["data", "clean", str(src), str(tmp_path / "cl")]) == 0
    assert main(["data", "merge", str(src), str(tmp_path / "cl"), str(tmp_path / "m")]) == 0
    assert main(["data", "convert", str(src), "--to", "rec", str(tmp_path / "rec")]) == 0
    capsys.readouterr()
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["data", "pack", "nosuch:x", str(tmp_path / "q.ffpk")]) == 2
    for cmd in ("clean", "balance", "merge", "shallow", "stats", "pack", "convert"):
        with pytest.raises(SystemExit) as e:
            main(["data", cmd, "--help"])
        assert e.value.code == 0
