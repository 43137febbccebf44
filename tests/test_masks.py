"""Synthetic masks on aligned faces: placement from the template, determinism, folder tool, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceforge.align.transform import template_points
from faceforge.data.masks import apply_mask, file_rng, load_textures, mask_folder
from faceforge.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _face(h=112, w=112, seed=0) -> np.ndarray:
    """A textured stand-in crop (noise over a gradient) so any overwritten pixel shows."""
    rng = np.random.default_rng(seed)
    grad = np.linspace(40, 220, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(grad + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _changed(a, b, x, y, r=1) -> bool:
    x, y = int(round(x)), int(round(y))
    win = (slice(y - r, y + r + 1), slice(x - r, x + r + 1))
    return bool(np.abs(a[win].astype(int) - b[win]).max() > 0)


@pytest.mark.parametrize("template,shape", [("arcface", (112, 112)), ("sphereface", (112, 96))])
def test_mask_covers_nose_mouth_chin_not_eyes(template, shape):
    img = _face(*shape)
    le, re, nose, ml, mr = template_points(template, shape)
    for seed in range(30):
        out = apply_mask(img, np.random.default_rng(seed), template=template)
        assert out.shape == img.shape and out.dtype == np.uint8
        for name, (x, y) in {"nose tip": nose, "mouth left": ml, "mouth right": mr,
                             "chin": ((ml[0] + mr[0]) / 2, shape[0] - 4)}.items():
            assert _changed(img, out, x, y), f"seed {seed}: {name} not covered"
        for name, (x, y) in {"left eye": le, "right eye": re, "forehead": (nose[0], 12)}.items():
            assert not _changed(img, out, x, y, r=2), f"seed {seed}: {name} covered"


def test_mask_is_deterministic_and_jittered():
    img = _face()
    a = apply_mask(img, np.random.default_rng(7))
    b = apply_mask(img, np.random.default_rng(7))
    c = apply_mask(img, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(file_rng(3, "id/x.jpg").random(4), file_rng(3, "id/x.jpg").random(4))
    assert not np.array_equal(file_rng(3, "id/x.jpg").random(4), file_rng(3, "id/y.jpg").random(4))
    assert not np.array_equal(file_rng(3, "id/x.jpg").random(4), file_rng(4, "id/x.jpg").random(4))


def test_texture_is_mapped_onto_the_mask():
    img = np.full((112, 112, 3), 128, np.uint8)
    red = np.zeros((40, 80, 3), np.uint8)
    red[..., 0] = 230
    out = apply_mask(img, np.random.default_rng(0), texture=[red])
    _, _, nose, ml, mr = template_points("arcface", (112, 112))
    y = int((nose[1] + ml[1]) / 2)
    pix = out[y, int(nose[0])].astype(int)
    assert pix[0] > 150 and pix[1] < 40 and pix[2] < 40


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="RGB uint8"):
        apply_mask(np.zeros((112, 112), np.uint8), np.random.default_rng(0))
    with pytest.raises(UserError, match="template"):
        apply_mask(_face(), np.random.default_rng(0), template="vgg")
    with pytest.raises(UserError, match="--textures"):
        load_textures("/nonexistent/textures")


def test_real_textures_and_aligned_photo():
    if not (SHARED / "masks").is_dir() or not (SHARED / "photos").is_dir():
        pytest.skip(f"shared data absent: {SHARED}")
    from faceforge.io.images import read_image

    textures = load_textures(SHARED / "masks")
    assert len(textures) == 4
    face = read_image(SHARED / "photos" / "Tom_Hanks_54745.png")  # already aligned 112x112
    out = apply_mask(face, np.random.default_rng(1), texture=textures)
    assert out.shape == face.shape
    lower = np.abs(out[80:108, 35:77].astype(int) - face[80:108, 35:77]).mean()
    upper = np.abs(out[30:50].astype(int) - face[30:50]).mean()
    assert lower > 20 and upper < 1


def _tree(root: Path) -> Path:
    import cv2

    for ident in ("a", "b"):
        (root / ident).mkdir(parents=True)
        for k in range(3):
            cv2.imwrite(str(root / ident / f"{k}.png"), _face(seed=k + 10 * ord(ident)))
    (root / "b" / "bad.jpg").write_bytes(b"\x00\x01broken")
    return root


def test_mask_folder_deterministic_resumable_and_safe(tmp_path):
    src = _tree(tmp_path / "src")
    c1 = mask_folder(src, tmp_path / "m1", seed=5)
    assert c1 == {"images": 7, "identities": 2, "masked": 6, "unmasked": 0, "skipped_existing": 0,
                  "corrupt": 1, "not_crops": 0, "no_face": 0}
    mask_folder(src, tmp_path / "m2", seed=5)
    mask_folder(src, tmp_path / "m3", seed=6)
    for f in sorted((tmp_path / "m1").rglob("*.png")):
        rel = f.relative_to(tmp_path / "m1")
        assert f.read_bytes() == (tmp_path / "m2" / rel).read_bytes()
        assert f.read_bytes() != (tmp_path / "m3" / rel).read_bytes()
    again = mask_folder(src, tmp_path / "m1", seed=5)
    assert again["skipped_existing"] == 6 and again["masked"] == 0
    with pytest.raises(UserError, match="inside the source"):
        mask_folder(src, src / "masked")


def test_mask_folder_fraction_mixes_masked_and_plain(tmp_path):
    src = _tree(tmp_path / "src")
    c = mask_folder(src, tmp_path / "half", seed=5, fraction=0.5)
    assert c["masked"] + c["unmasked"] == 6 and c["masked"] > 0 and c["unmasked"] > 0
    import cv2

    plain = sum(np.array_equal(cv2.imread(str(f)), cv2.imread(str(src / f.relative_to(tmp_path / "half"))))
                for f in (tmp_path / "half").rglob("*.png"))
    assert plain == c["unmasked"]  # PNG is lossless: the unmasked share is copied pixel for pixel
    with pytest.raises(UserError, match="--fraction"):
        mask_folder(src, tmp_path / "bad", fraction=1.5)


def test_cli_data_mask_paste(tmp_path, capsys):
    from faceforge.cli.main import main

    src = _tree(tmp_path / "src")
    assert main(["data", "mask", str(src), str(tmp_path / "out"), "--method", "paste", "--seed", "1",
                 "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["masked"] == 6
    assert main(["data", "mask", str(src), str(src), "--quiet"]) == 2
    assert "equals the source" in capsys.readouterr().err
