"""Unaligned input is detected and warned about; dlib's model aligns raw photos itself in eval."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from faceforge.cli.main import main
from faceforge.embed.extract import embed_images, looks_aligned


def test_looks_aligned_sizes():
    for shape in ((112, 112, 3), (112, 96, 3), (224, 224, 3), (128, 128, 3), (150, 150, 3)):
        assert looks_aligned(shape, (150, 150) if shape[0] == 150 else (112, 112))
    for shape in ((250, 250, 3), (320, 249, 3), (112, 92, 3)):
        assert not looks_aligned(shape, (112, 112))


@pytest.fixture
def photo_pairs(tmp_path):
    """12 pairs of raw, uncropped photos (obama x3 same person, biden different)."""
    photos = shared_path("data", "photos")
    same = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama2.jpg", "obama3.jpg")]
    diff = [("obama.jpg", "biden.jpg"), ("obama2.jpg", "biden.jpg"), ("obama3.jpg", "biden.jpg")]
    lines = [f"{a} {b} {label}" for _ in range(2)
             for pairs, label in ((same, 1), (diff, 0)) for a, b in pairs]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return f"facex:{tmp_path / 'pairs.txt'},root={photos}"


def test_raw_photos_are_warned_about(tiny_mfn_ckpt, photo_pairs, capsys):
    assert main(["eval", "verify", "--model", str(tiny_mfn_ckpt), "--pairs", photo_pairs, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: 4 of 4 images are not aligned face crops" in err and "faceforge align" in err


def test_dlib_aligns_raw_photos_in_eval(photo_pairs, capsys):
    from faceforge.embed.dlib_embedder import dlib_available

    if not dlib_available():
        pytest.skip("dlib extra not installed")
    from faceforge.embed.loading import load_embedder
    from faceforge.eval.pairs import open_pairs
    from faceforge.io.images import read_image

    dlib = load_embedder("dlib:resnet")
    pairs = open_pairs(photo_pairs)
    got = embed_images(dlib, pairs)
    want, found = dlib.embed_raw([read_image(p) for p in pairs.images])
    assert found.all() and got.unaligned == len(pairs.images)
    np.testing.assert_allclose(got.features, want, atol=1e-5)  # dlib's own detection and chip, not a resize
    assert main(["eval", "verify", "--model", "dlib:resnet", "--pairs", photo_pairs, "--quiet",
                 "--protocol", "facex"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" not in captured.err and "accuracy 1.0000" in captured.out
