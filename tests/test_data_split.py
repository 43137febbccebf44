"""Own-data sets: ``data split``, ``data pairs``, ``data gallery-probe`` (data.tools.split/pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from faceforge.cli.main import main
from faceforge.data.tools.pairs import verification_pairs, write_pairs
from faceforge.data.tools.split import gallery_probe, split, split_identities
from faceforge.errors import UserError


def _folder(root: Path, counts: list[int]) -> Path:
    """Identity folders ``root/pN/k.jpg`` of (not decoded here) small files, ``counts[N]`` each."""
    for n, c in enumerate(counts):
        (root / f"p{n:02d}").mkdir(parents=True)
        for k in range(c):
            (root / f"p{n:02d}" / f"{k}.jpg").write_bytes(b"x")
    return root


def _snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def test_split_is_identity_disjoint_seeded_and_never_touches_the_photos(tmp_path):
    src = _folder(tmp_path / "src", [5] * 18 + [1, 1])
    before = _snapshot(src)
    r = split(src, tmp_path / "out", val=0.2, test=4, seed=3)
    assert _snapshot(src) == before
    assert r["too_few"] == ["p18", "p19"]
    parts = {p: set(r[p]) for p in ("train", "val", "test")}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [10, 4, 4]  # 18 kept, 0.2 -> round(3.6)
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert not (parts["val"] & parts["test"])
    for part, names in parts.items():
        folder = tmp_path / "out" / part
        assert {p.name for p in folder.iterdir()} == names
        link = next(folder.rglob("*.jpg"))
        assert link.is_symlink() and link.resolve().parent.parent == src.resolve()
    again = split_identities(src, val=0.2, test=4, seed=3)
    assert {p: set(again[p]) for p in parts} == parts
    assert split_identities(src, val=0.2, test=4, seed=4)["test"] != sorted(parts["test"])
    saved = json.loads((tmp_path / "out" / "split.json").read_text())
    assert saved["counts"]["train"]["images"] == 50


def test_split_lists_are_list_sources(tmp_path):
    from faceforge.data.tools import open_any

    src = _folder(tmp_path / "src", [3] * 10)
    r = split(src, tmp_path / "out", val=0, test=0.3, mode="list")
    ds = open_any(r["sources"]["test"])
    assert len(ds) == 9 and len(set(ds.labels.tolist())) == 3
    assert "val" not in r["sources"] and not (tmp_path / "out" / "val.txt").exists()


def test_split_refuses_what_cannot_work(tmp_path):
    src = _folder(tmp_path / "src", [3] * 4)
    with pytest.raises(UserError, match="keep one for training"):
        split_identities(src, val=2, test=2)
    with pytest.raises(UserError, match="whole number"):
        split_identities(src, val=1.5)
    with pytest.raises(UserError, match="outside the source"):
        split(src, src / "inside")


def test_pairs_are_balanced_identity_disjoint_folds_read_by_eval(tmp_path):
    from faceforge.eval.pairs import open_pairs
    from faceforge.eval.verification import kfold_ids

    src = _folder(tmp_path / "src", [4, 2, 6, 3] * 10)
    pairs = verification_pairs(src, n_folds=10, per_fold=5, seed=1)
    assert pairs == verification_pairs(src, n_folds=10, per_fold=5, seed=1)
    folds = np.array([p[3] for p in pairs])
    same = np.array([p[2] for p in pairs])
    for f in range(10):
        assert (same[folds == f]).sum() == (~same[folds == f]).sum() == 5
    people = [{a.parent.name for a, b, *_ in pairs if _[1] == f} | {b.parent.name for a, b, *_ in pairs
                                                                      if _[1] == f} for f in range(10)]
    assert all(not (people[i] & people[j]) for i in range(10) for j in range(i + 1, 10))
    assert all((a.parent == b.parent) == s for a, b, s, _ in pairs)
    assert len({(a, b) for a, b, *_ in pairs}) == len(pairs)
    r = write_pairs(src, tmp_path / "pairs.txt", per_fold=5, seed=1)
    ps = open_pairs(r["spec"], check_images=True)
    assert len(ps) == 100 and ps.issame.tolist() == same.tolist()
    assert (kfold_ids(len(ps), 10) == folds).all()  # the reader's default folds are these folds


def test_pairs_shrink_to_the_smallest_fold_and_refuse_too_few_identities(tmp_path):
    src = _folder(tmp_path / "src", [2] * 6)  # 3 folds of 2 identities: 2 same pairs per fold
    r = write_pairs(src, tmp_path / "p.txt", n_folds=3, per_fold=50)
    assert r["per_fold"] == 2 and r["short"] and r["same"] == r["different"] == 6
    with pytest.raises(UserError, match="fewer --folds"):
        verification_pairs(src, n_folds=4)


def test_gallery_probe_closed_and_open_set(tmp_path):
    src = _folder(tmp_path / "src", [4] * 10 + [1])
    closed = gallery_probe(src, tmp_path / "closed", gallery_images=2, seed=0)
    c = closed["counts"]
    assert (c["gallery_identities"], c["gallery_images"], c["probe_images"]) == (10, 20, 20)
    assert not closed["open_set"] and closed["too_few"] == ["p10"]
    opened = gallery_probe(src, tmp_path / "open", unknown=0.3, seed=0)
    o = opened["counts"]
    assert o["unknown_identities"] == 3 and o["gallery_identities"] == 7 and o["unknown_images"] == 12
    gallery = {p.name for p in (tmp_path / "open" / "gallery").iterdir()}
    assert not gallery & set(opened["unknown"])
    for name in gallery:  # an enrolled image is never also a probe
        g = {p.name for p in (tmp_path / "open" / "gallery" / name).iterdir()}
        assert not g & {p.name for p in (tmp_path / "open" / "probe" / name).iterdir()}


def test_cli_split_pairs_gallery_probe_on_real_photos(tmp_path, capsys):
    src = shared_path("data", "celeba299")
    assert main(["data", "split", str(src), str(tmp_path / "s"), "--val", "0.1", "--test", "30"]) == 0
    assert "test 30 identities" in capsys.readouterr().out
    test = tmp_path / "s" / "test"
    assert main(["data", "pairs", str(test), str(tmp_path / "pairs.txt"), "--per-fold", "20"]) == 0
    assert "200 same + 200 different" in capsys.readouterr().out
    assert main(["data", "gallery-probe", str(test), str(tmp_path / "gp"), "--unknown", "5"]) == 0
    assert "open set: 5 identities" in capsys.readouterr().out
    assert main(["data", "split", str(src), str(tmp_path / "x"), "--val", "1.5"]) == 2
