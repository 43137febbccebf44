"""``faceforge embed`` takes folders, list files and pair sources, and ``eval verify --embeddings``
scores its output without glue code; a pair source without the right ``root=`` says so (ORL faces)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from faceforge.cli.main import main
from faceforge.deploy.commands import expand_sources
from faceforge.errors import UserError
from faceforge.eval.pairs import open_pairs


@pytest.fixture
def tiny_ckpt(tiny_mfn_ckpt):
    return tiny_mfn_ckpt


@pytest.fixture(scope="module")
def orl_list(tmp_path_factory):
    d = tmp_path_factory.mktemp("orl")
    lines = []
    for i in range(1, 11):
        lines += [f"s{i}/1.pgm s{i}/2.pgm 1", f"s{i}/3.pgm s{i + 10}/3.pgm 0"]
    (d / "pairs.txt").write_text("\n".join(lines) + "\n")
    return d / "pairs.txt"


def test_sources_folders_lists_and_pairs(orl_list, tmp_path):
    orl = shared_path("data", "orl")
    assert len(expand_sources([orl / "s1"])) == 10
    (tmp_path / "few.txt").write_text("a.png\nsub/b.png\n")
    assert expand_sources([f"@{tmp_path / 'few.txt'}"]) == [tmp_path / "a.png", tmp_path / "sub" / "b.png"]
    images = expand_sources([f"facex:{orl_list},root={orl}"])
    assert len(images) == 40 and images[0] == orl / "s1" / "1.pgm"


def test_missing_root_is_a_clear_error(tiny_ckpt, orl_list, tmp_path, capsys):
    with pytest.raises(UserError, match=r"no image found, e\.g\. .*s1/1\.pgm.*add ',root=DIR'"):
        open_pairs(f"facex:{orl_list}", check_images=True)
    open_pairs(f"facex:{orl_list}")  # parsing alone does not look at the images
    lfw = shared_path("data", "protocols", "lfw_pairs.txt")
    assert main(["eval", "verify", "--model", str(tiny_ckpt), "--pairs", f"pairs:{lfw}"]) == 2
    err = capsys.readouterr().err
    assert "Abel_Pacheco/Abel_Pacheco_0001.jpg" in err and "root=DIR" in err
    assert "<name>/<name>_0001.jpg" in err


def test_embed_a_pair_source_then_score_it(tiny_ckpt, orl_list, tmp_path, capsys):
    source = f"facex:{orl_list},root={shared_path('data', 'orl')}"
    out = tmp_path / "emb.npz"
    assert main(["embed", source, "--model", str(tiny_ckpt), "--aligned", "--out", str(out), "--quiet"]) == 0
    with np.load(out) as z:
        assert z["embeddings"].shape[0] == 40 and str(z["flip"]) == "sum"
    assert main(["eval", "verify", "--embeddings", str(out), "--pairs", source, "--out", str(tmp_path / "e"),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "scored 20 of 20 pairs" in printed
    scored = json.loads((tmp_path / "e" / "verification.json").read_text())
    assert main(["eval", "verify", "--model", str(tiny_ckpt), "--pairs", source, "--out", str(tmp_path / "m"),
                 "--quiet"]) == 0
    direct = json.loads((tmp_path / "m" / "verification.json").read_text())
    assert scored["flip"] == direct["flip"] == "sum"
    assert scored["fold_accuracy"] == direct["fold_accuracy"]
    np.testing.assert_allclose(scored["best_threshold"], direct["best_threshold"], atol=1e-4)


def test_scoring_fewer_pairs_is_flagged(tiny_ckpt, orl_list, tmp_path, capsys):
    source = f"facex:{orl_list},root={shared_path('data', 'orl')}"
    out = tmp_path / "part.npz"
    # embed only 30 of the 40 images: pairs without both images are not silently gone
    images = [str(p) for p in expand_sources([source])][:30]
    assert main(["embed", *images, "--model", str(tiny_ckpt), "--aligned", "--out", str(out), "--quiet"]) == 0
    assert main(["eval", "verify", "--embeddings", str(out), "--pairs", source, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "WARNING: scored 15 of 20 pairs in the protocol" in printed and "not comparable" in printed
