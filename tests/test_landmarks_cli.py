"""End to end through the CLI: train a tiny landmark model, evaluate, draw (image and video), clean,
export to ONNX, and align a folder with the model's 5 points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceforge.cli.main import main
from faceforge.data.synthetic import SyntheticFaces, write_dataset

TINY = ["--set", "model.input_size=64", "--set", "model.alpha=0.25", "--set", "data.batch_size=8",
        "--set", "data.workers=0", "--set", "train.log_every=1", "--set", "train.max_steps=3", "--quiet"]


def _need_detector():
    pytest.importorskip("onnxruntime", reason="face detection needs onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "run"
    args = ["landmarks", "train", "configs/landmarks_mobilenet.yaml", *TINY, "--set", f"output={out}",
            "--set", "data.train=synthetic:6x4,mode=wild",
            "--set", "data.val=synthetic:2x2,mode=wild,offset=900"]
    assert main(args) == 0
    return out


def test_train_writes_checkpoint_metrics_and_clean_report(trained):
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]
    assert all(np.isfinite(x["loss"]) for x in lines if "loss" in x)
    assert any("val_nme_percent" in x for x in lines)
    report = json.loads((trained / "clean_report.json").read_text())
    assert report["total"] == 24 and report["kept"] + report["dropped"] == 24
    from faceforge.landmarks.model import load_landmark_model

    net = load_landmark_model(trained / "last.ckpt")
    assert net.input_size == 64 and net.backbone.fc.out_features == 176


def test_eval_prints_metrics(trained, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["landmarks", "eval", "--model", str(trained / "last.ckpt"), "--data",
                 "synthetic:2x3,mode=wild,offset=700", "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["samples"] == 6 and res["input_size"] == 64
    groups = {"contour", "left_eye", "right_eye", "left_brow", "right_brow", "mouth", "nose"}
    assert set(res["groups"]) == groups
    assert res["mse"] > 0 and res["nme_percent"] > 0


def test_train_on_a_label_file_with_a_corrupt_image(tmp_path, capsys):
    root = write_dataset(tmp_path / "s", 3, 3, mode="wild")
    (root / "id0000000" / "id0000000_0001.jpg").write_bytes(b"broken")
    out = tmp_path / "run"
    assert main(["landmarks", "train", *TINY, "--set", f"output={out}", "--set",
                 f"data.train={root / 'landmarks.csv'}", "--set", "data.val=null",
                 "--set", "train.max_steps=0", "--set", "train.epochs=1"]) == 0
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["skipped_images"] == 1


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["landmarks", "train", "--set", "data.train=nothing.jpg", "--set", f"output={tmp_path}"]) == 2
    assert "expected synthetic:NxK" in capsys.readouterr().err
    assert main(["landmarks", "eval", "--model", str(tmp_path / "none.ckpt"), "--data", "synthetic:1x1"]) == 2
    assert main(["landmarks", "train", "--set", "train.loss=huber", "--set", f"output={tmp_path}",
                 "--set", "data.train=synthetic:4x4,mode=wild", "--set", "data.batch_size=4"]) == 2


def test_clean_command(tmp_path, capsys):
    root = write_dataset(tmp_path / "s", 2, 2, mode="wild")
    text = (root / "landmarks.csv").read_text().splitlines()
    fields = text[2].split(",")
    fields[5] = "nan"
    text[2] = ",".join(fields)
    (root / "landmarks.csv").write_text("\n".join(text) + "\n")
    assert main(["landmarks", "clean", str(root / "landmarks.csv"), "--out", str(tmp_path / "c.csv"),
                 "--report", str(tmp_path / "r.json")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dropped"] == 1 and summary["reasons"]["not_finite"] == 1
    from faceforge.landmarks.label_file import read_labels

    assert len(read_labels(tmp_path / "c.csv")) == 3


def test_draw_image_and_video(trained, tmp_path, capsys):
    _need_detector()
    import cv2

    faces = SyntheticFaces(mode="wild", difficulty=0.3)
    frames = [cv2.cvtColor(faces.render(3, k)[0], cv2.COLOR_RGB2BGR) for k in range(4)]
    cv2.imwrite(str(tmp_path / "face.png"), frames[0])
    assert main(["landmarks", "draw", str(tmp_path / "face.png"), "--model", str(trained / "last.ckpt"),
                 "--out", str(tmp_path / "drawn.png"), "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    drawn = cv2.imread(str(tmp_path / "drawn.png"))
    assert drawn.shape == frames[0].shape and res["faces"] >= 1
    assert (drawn != frames[0]).any()

    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    for f in frames:
        writer.write(f)
    writer.release()
    assert main(["landmarks", "draw", str(tmp_path / "clip.mp4"), "--model", str(trained / "last.ckpt"),
                 "--out", str(tmp_path / "out.mp4"), "--detector", "mtcnn", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["frames"] == 4
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4


def test_draw_several_images_into_a_folder(trained, tmp_path, capsys):
    # before: `landmarks draw photos/*.jpg` stopped at argparse ("unrecognized arguments")
    _need_detector()
    import cv2

    faces = SyntheticFaces(mode="wild", difficulty=0.3)
    paths = []
    for k, name in enumerate(("a.png", "b.jpg")):
        paths.append(tmp_path / name)
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(faces.render(k, 0)[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "drawn"
    assert main(["landmarks", "draw", *map(str, paths), "--model", str(trained / "last.ckpt"),
                 "--out", str(out), "--quiet"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["output"] for x in lines] == [str(out / "a.png"), str(out / "b.jpg")]
    assert all((out / n).is_file() for n in ("a.png", "b.jpg"))
    assert main(["landmarks", "draw", *map(str, paths), "--model", str(trained / "last.ckpt"),
                 "--out", str(tmp_path / "one.png"), "--quiet"]) == 2
    assert "2 inputs are drawn into a folder" in capsys.readouterr().err


def test_export_onnx_parity_and_predictor(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["landmarks", "export", str(trained / "last.ckpt"), str(tmp_path / "lm.onnx")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["max_abs_diff_px"] < 0.01
    from faceforge.landmarks.predict import LandmarkPredictor

    img, truth = SyntheticFaces(mode="wild").render(1, 0)
    a = LandmarkPredictor.from_checkpoint(trained / "last.ckpt").predict(img, [truth["box"], truth["box"]])
    b = LandmarkPredictor.from_onnx(tmp_path / "lm.onnx").predict(img, [truth["box"], truth["box"]])
    assert a.shape == (2, 88, 2)
    np.testing.assert_allclose(a, b, atol=0.05)


def test_align_with_landmark_points(trained, tmp_path, capsys):
    _need_detector()
    import cv2

    faces = SyntheticFaces(mode="wild", difficulty=0.3)
    for j in range(2):
        d = tmp_path / "src" / f"p{j}"
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "a.png"), cv2.cvtColor(faces.render(j, 0)[0], cv2.COLOR_RGB2BGR))
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--landmarks",
                 str(trained / "last.ckpt"), "--quiet"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["landmarks"] == str(trained / "last.ckpt") and counts["aligned"] >= 1
    assert cv2.imread(str(next((tmp_path / "dst").rglob("*.png")))).shape == (112, 112, 3)
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "dst2"), "--landmarks",
                 str(tmp_path / "missing.ckpt")]) == 2
