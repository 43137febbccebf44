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


def test_explicit_template_points_rewarp_arcface_crops_in_eval(tiny_mfn_ckpt, tmp_path):
    """A card with its own template points gets an aligned ArcFace crop re-aligned, not resized."""
    import shutil

    import cv2

    from faceforge.align.transform import estimate_similarity, template_points
    from faceforge.embed.loading import load_embedder
    from faceforge.io.images import read_image

    pts = (template_points("arcface") - 56.0) * 0.8 + np.array([56.0, 62.0])  # a smaller, lower face
    model = tmp_path / "m.ckpt"
    shutil.copy(tiny_mfn_ckpt, model)
    (tmp_path / "m.yaml").write_text(
        "template: {points: " + json_points(pts) + ", size: [112, 112]}\n")
    emb = load_embedder(model)
    assert emb.meta.input_size == (112, 112) and isinstance(emb.card.template, dict)
    face = tmp_path / "crop.png"  # an ArcFace crop at twice the size (224x224)
    cv2.imwrite(str(face), cv2.resize(cv2.imread(str(shared_path("data", "photos", "Tom_Hanks_54745.png"))),
                                      (224, 224)))
    img = read_image(face)
    got = embed_images(emb, [face]).features[0]
    m = estimate_similarity(template_points("arcface", (224, 224)), emb.card.template_points())
    want = emb.embed(cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_LINEAR)[None])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    resized = emb.embed(cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA)[None])[0]
    assert got @ resized / np.linalg.norm(got) / np.linalg.norm(resized) < 0.99  # not the old resize


def json_points(pts) -> str:
    return "[" + ", ".join(f"[{x:.4f}, {y:.4f}]" for x, y in pts) + "]"


def test_embed_aligned_warns_about_raw_photos(tiny_mfn_ckpt, tmp_path, capsys):
    photo = shared_path("data", "photos", "biden.jpg")
    assert main(["embed", str(photo), "--model", str(tiny_mfn_ckpt), "--aligned", "--quiet",
                 "--out", str(tmp_path / "e.npz")]) == 0
    assert "WARNING: 1 images given as --aligned are not aligned crops" in capsys.readouterr().err
