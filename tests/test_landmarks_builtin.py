"""The landmark model shipped in the package: draw, FaceAnalyzer(landmarks=True) and align --landmarks
work with no training and no dlib, and its points sit on real faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from faceforge.cli.main import main
from test_landmarks_cli import _need_detector


def test_builtin_model_ships_with_its_card():
    from faceforge.landmarks.predict import builtin_model

    path = builtin_model()
    assert path.stat().st_size <= 3 * 1024 * 1024
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["teacher"].startswith("dlib") and card["points"] == 88
    assert card["heldout"]["nme_percent_88"] > 0 and card["heldout"]["nme_percent_68"] > 0


def test_builtin_predictor_records_detector_boxes():
    from faceforge.landmarks.predict import LandmarkPredictor

    pred = LandmarkPredictor.load("builtin")
    assert (pred.box_shift, pred.box_scale) == (0.0, 1.0)  # trained on RetinaFace boxes as they are
    assert pred.predict(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 4))).shape == (0, 88, 2)


def test_draw_works_without_a_model_argument(tmp_path, capsys):
    _need_detector()
    from faceforge.io.images import read_image

    src = shared_path("data", "photos", "obama.jpg")
    out = tmp_path / "drawn.jpg"
    assert main(["landmarks", "draw", str(src), "--out", str(out), "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["faces"] == 1
    assert read_image(out).shape == read_image(src).shape


def test_builtin_points_agree_with_the_detector_and_the_teacher():
    """On a real photo the 88 points' eyes/mouth sit on RetinaFace's 5 points, and (with dlib installed)
    within 8% of the eye distance of the teacher's points on average."""
    _need_detector()
    from faceforge.data.synthetic import five_from_88
    from faceforge.io.images import read_image
    from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

    img = read_image(shared_path("data", "photos", "biden.jpg"))
    face, pts = FaceLandmarker(LandmarkPredictor.load())(img)[0]
    five = five_from_88(pts)
    iod = np.linalg.norm(face.landmarks[0] - face.landmarks[1])
    assert np.linalg.norm(five[[0, 1, 3, 4]] - face.landmarks[[0, 1, 3, 4]], axis=1).max() < 0.25 * iod
    from faceforge.errors import UserError
    from faceforge.landmarks.schemes import to_88
    from faceforge.landmarks.teacher import Dlib68

    try:
        teacher = to_88(Dlib68().points(img, face.box))
    except UserError:  # the dlib extra is optional
        return
    assert np.linalg.norm(pts - teacher, axis=1).mean() < 0.08 * np.linalg.norm(teacher[21] - teacher[29])


def test_analyzer_with_landmarks_true(tmp_path):
    _need_detector()
    import torch

    from faceforge import FaceAnalyzer
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    save_checkpoint(ckpt, build_backbone("mobilefacenet_tiny"))
    fa = FaceAnalyzer(model=str(ckpt), threshold=0.5, landmarks=True)
    faces = fa.embed(str(shared_path("data", "photos", "obama.jpg")))
    assert len(faces) == 1 and faces[0].points.shape == (88, 2) and faces[0].embedding is not None
    b = faces[0].box
    inner = faces[0].points[21:37]  # both eyes inside the box
    assert ((inner[:, 0] > b[0]) & (inner[:, 0] < b[2]) & (inner[:, 1] > b[1]) & (inner[:, 1] < b[3])).all()
    assert len(faces[0].to_dict()["points"]) == 88
    assert FaceAnalyzer(model=str(ckpt), threshold=0.5).detect(
        str(shared_path("data", "photos", "obama.jpg")))[0].points is None


def test_align_landmarks_without_a_path_uses_the_builtin_model(tmp_path, capsys):
    _need_detector()
    import shutil

    from faceforge.io.images import read_image

    for name in ("obama.jpg", "obama2.jpg"):
        (tmp_path / "src" / "a").mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_path("data", "photos", name), tmp_path / "src" / "a" / name)
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "det"), "--quiet"]) == 0
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "lm"), "--landmarks", "--quiet"]) == 0
    capsys.readouterr()
    for name in ("obama.jpg", "obama2.jpg"):
        a = read_image(tmp_path / "det" / "a" / name).astype(float)
        b = read_image(tmp_path / "lm" / "a" / name).astype(float)
        assert a.shape == b.shape == (112, 112, 3)
        assert 0 < np.abs(a - b).mean() < 40  # the same face, aligned a little differently


def test_box_rule_travels_through_checkpoint_and_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from faceforge.landmarks.export import export_onnx
    from faceforge.landmarks.model import build_landmark_model, load_landmark_model, save_landmark_model
    from faceforge.landmarks.predict import DETECTOR_BOX_SHIFT, LandmarkPredictor, adjust_box

    net = build_landmark_model(input_size=64, box_shift=0.0, box_scale=1.0, alpha=0.25)
    save_landmark_model(tmp_path / "m.ckpt", net)
    assert (load_landmark_model(tmp_path / "m.ckpt").box_shift, net.box_scale) == (0.0, 1.0)
    export_onnx(tmp_path / "m.ckpt", tmp_path / "m.onnx")
    p = LandmarkPredictor.load(tmp_path / "m.onnx")
    assert (p.box_shift, p.box_scale) == (0.0, 1.0)
    np.testing.assert_allclose(adjust_box([10, 20, 50, 80], p.box_shift, p.box_scale), [10, 20, 50, 80])
    old = build_landmark_model(input_size=64, alpha=0.25)  # synthetic-label models keep their calibration
    assert LandmarkPredictor.from_net(old).box_shift == DETECTOR_BOX_SHIFT
