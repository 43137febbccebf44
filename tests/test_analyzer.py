"""FaceAnalyzer on real photos: detect, align, embed, compare; backends agree; calibration is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _photos() -> Path:
    p = SHARED / "data" / "photos"
    if not p.is_dir():
        pytest.skip(f"{p} not present (../shared is expected beside the checkout)")
    return p


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    import torch

    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("an") / "tiny.ckpt"
    save_checkpoint(path, build_backbone("mobilefacenet_tiny"))
    return path


@pytest.fixture(scope="module")
def analyzer(tiny_ckpt):
    from faceforge import FaceAnalyzer

    return FaceAnalyzer(model=str(tiny_ckpt), threshold=0.5)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, faceforge; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_one_face_per_portrait(analyzer):
    photos = _photos()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        faces = analyzer.embed(str(photos / name))
        assert len(faces) == 1, name
        f = faces[0]
        assert f.box.shape == (4,) and f.landmarks.shape == (5, 2) and 0 < f.score <= 1
        assert f.embedding.shape == (64,)
        assert abs(float(np.linalg.norm(f.embedding)) - 1.0) < 1e-5


def test_align_gives_model_input(analyzer):
    from faceforge.io.images import read_image

    img = read_image(_photos() / "obama.jpg")
    face = analyzer.detect(img)[0]
    crop = analyzer.align(img, face)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # the eyes land on the ArcFace template: the crop's left half is not black padding
    assert crop[40:60, 30:50].mean() > 20


def test_path_array_and_rgba_agree(analyzer):
    from faceforge.io.images import read_image

    photos = _photos()
    a = analyzer.embed(str(photos / "obama2.jpg"))[0].embedding
    b = analyzer.embed(read_image(photos / "obama2.jpg"))[0].embedding
    c = analyzer.embed(str(photos / "32bit.png"))[0].embedding  # RGBA PNG of obama2
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(a @ c) > 0.99


def test_compare_returns_similarity_and_decision(analyzer):
    photos = _photos()
    sim, same = analyzer.compare(str(photos / "obama.jpg"), str(photos / "biden.jpg"))
    assert -1.0 <= sim <= 1.0 and same == (sim >= 0.5)
    faces = analyzer.embed(str(photos / "obama.jpg"))
    assert analyzer.compare(faces[0], faces[0].embedding)[0] == pytest.approx(1.0, abs=1e-5)


def test_torch_and_onnx_backends_agree(tiny_ckpt, tmp_path):
    from faceforge import FaceAnalyzer
    from faceforge.deploy.export import export_onnx

    img = str(_photos() / "biden.jpg")
    torch_fa = FaceAnalyzer(model=str(tiny_ckpt), backend="torch", threshold=0.5)
    mem_fa = FaceAnalyzer(model=str(tiny_ckpt), backend="onnx", threshold=0.5)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(tiny_ckpt, onnx_path, log=lambda *_: None)
    file_fa = FaceAnalyzer(model=str(onnx_path), threshold=0.5)
    assert mem_fa.backend == file_fa.backend == "onnx" and torch_fa.backend == "torch"
    e = [fa.embed(img)[0].embedding for fa in (torch_fa, mem_fa, file_fa)]
    assert float(e[0] @ e[1]) > 0.9999 and float(e[0] @ e[2]) > 0.9999


def test_calibrated_threshold_travels_with_the_model(tiny_ckpt, tmp_path):
    import shutil

    from faceforge import FaceAnalyzer
    from faceforge.cli.main import main
    from faceforge.data.synthetic import write_dataset, write_pairs
    from faceforge.errors import UserError

    ckpt = tmp_path / "cal.ckpt"
    shutil.copyfile(tiny_ckpt, ckpt)
    with pytest.raises(UserError, match="calibrate"):
        FaceAnalyzer(model=str(ckpt)).compare(np.ones(64), np.ones(64))
    root = tmp_path / "syn"
    write_dataset(root, 40, 4)
    write_pairs(root, 40, 4, folds=10, per_fold=20)  # 200 impostor pairs: FARs down to 10/200 = 0.05
    pairs = f"pairs:{root / 'pairs.txt'}"
    # honest thresholds (issue 23): a FAR the impostor pairs cannot measure is refused, nothing stored
    assert main(["calibrate", str(ckpt), "--pairs", pairs, "--far", "0.01", "--device", "cpu"]) == 2
    with pytest.raises(UserError, match="calibrate"):
        FaceAnalyzer(model=str(ckpt)).compare(np.ones(64), np.ones(64))
    assert main(["calibrate", str(ckpt), "--pairs", pairs, "--far", "0.1", "--device", "cpu"]) == 0
    fa = FaceAnalyzer(model=str(ckpt))
    assert fa.calibration["far"] == 0.1 and fa.threshold == fa.calibration["threshold"]
    assert fa.calibration["measured_far"] <= 0.1
    out = tmp_path / "cal.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out)]) == 0  # the checkpoint's calibration is kept
    assert FaceAnalyzer(model=str(out)).threshold == pytest.approx(fa.threshold)
    assert main(["export", str(ckpt), "--onnx", str(out), "--pairs", pairs, "--far", "0.05"]) == 0
    onnx_fa = FaceAnalyzer(model=str(out))
    assert onnx_fa.card.far == 0.05 and onnx_fa.threshold is not None


def test_bad_inputs(analyzer, tiny_ckpt, tmp_path):
    from faceforge import FaceAnalyzer
    from faceforge.errors import UserError

    with pytest.raises(UserError, match="not found"):
        analyzer.embed(str(tmp_path / "missing.jpg"))
    with pytest.raises(UserError, match="no face"):
        analyzer.compare(np.zeros((64, 64, 3), np.uint8), np.ones(64))
    with pytest.raises(UserError, match="backend"):
        FaceAnalyzer(model=str(tiny_ckpt), backend="tensorrt")
