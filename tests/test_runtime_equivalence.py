"""Every network gives the same answers on every engine faceforge may pick, on real photos.

ONNX Runtime fp32 is the reference. The promises (ISSUE 30 item 1): boxes and points within a pixel at
the 640 detection size, embeddings with cosine >= 0.9999. OpenVINO fp32 keeps them with room to spare
(1e-4 px, cosine 1.0). bf16 keeps them for embedders only, and not for every one: on this suite's
photos RetinaFace in bf16 moves boxes up to 2.8 px, MTCNN 14 px and the landmark model 1.3 px, so
``engine: auto`` never picks bf16 for those (forcing ``openvino:bf16`` still works); an embedder gets
bf16 from auto only when its probe passes, and whatever auto picks must reach 0.9999 here. Forced
bf16 is held to its own stated tolerance (BF16_MIN_COSINE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import need_retinaface, shared_path

pytest.importorskip("openvino", reason="the OpenVINO engine needs: pip install openvino")

FP32_ENGINES = ("openvino:fp32",)
BF16_MIN_COSINE = 0.9998  # forced bf16 on the random tiny net: 0.99988 at worst on 200 real faces
PIXEL = 1.0


def _photos(celeba: int) -> list[Path]:
    photos = sorted(shared_path("data", "photos").glob("*.jpg"))
    faces = sorted(shared_path("data", "celeba299").glob("*/*.jpg"))
    return photos + faces[: 4 * celeba : 4]


def _bf16() -> bool:
    from faceforge.runtime import cpu

    return cpu.has_bf16()


def _worst_detection_error(name: str, engine: str, paths: list[Path]) -> tuple[float, float, int]:
    """Largest box and point difference (pixels at the detection size) and count mismatches."""
    from faceforge.align.detectors import get_detector
    from faceforge.align.detectors.base import detection_scale
    from faceforge.io.images import read_image

    ref, got = get_detector(name, engine="onnxruntime"), get_detector(name, engine=engine)
    worst_box = worst_pts = 0.0
    mismatched = 0
    for p in paths:
        img = read_image(p)
        scale = detection_scale(*img.shape[:2], ref.det_size)
        a, b = ref.detect(img), got.detect(img)
        if len(a) != len(b):
            mismatched += 1
            continue
        for fa, fb in zip(a, b):
            worst_box = max(worst_box, float(np.abs(fa.box - fb.box).max()) * scale)
            worst_pts = max(worst_pts, float(np.abs(fa.landmarks - fb.landmarks).max()) * scale)
    return worst_box, worst_pts, mismatched


@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
@pytest.mark.parametrize("engine", FP32_ENGINES)
def test_detectors_agree_on_real_photos(name, engine):
    need_retinaface()
    box, pts, mismatched = _worst_detection_error(name, engine, _photos(celeba=8 if name == "mtcnn" else 24))
    assert mismatched == 0 and box <= PIXEL and pts <= PIXEL, (box, pts, mismatched)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
@pytest.mark.parametrize("engine", FP32_ENGINES)
def test_detectors_agree_on_200_celeba_photos(name, engine):
    need_retinaface()
    box, pts, mismatched = _worst_detection_error(name, engine, _photos(celeba=200))
    assert mismatched == 0 and box <= PIXEL and pts <= PIXEL, (box, pts, mismatched)


def test_auto_keeps_detectors_and_landmarks_in_fp32():
    """bf16 moves boxes and points by more than a pixel (module docstring): auto never picks it there."""
    need_retinaface()
    from faceforge.align.detectors import get_detector
    from faceforge.landmarks.predict import LandmarkPredictor

    det = get_detector("retinaface", engine="auto")
    assert det.session.precision == "fp32"
    assert LandmarkPredictor.load(engine="auto").session.precision == "fp32"
    if _bf16():  # forced, it is obeyed
        assert get_detector("retinaface", engine="openvino:bf16").session.label == "openvino bf16"


@pytest.fixture(scope="module")
def real_faces() -> tuple[np.ndarray, list]:
    """Aligned 112x112 crops of the first face in each photo, and (image, boxes) for the landmarks."""
    need_retinaface()
    from faceforge.align.detectors import get_detector
    from faceforge.align.transform import warp_face
    from faceforge.io.images import read_image

    det = get_detector("retinaface", engine="onnxruntime")
    crops, scenes = [], []
    for p in _photos(celeba=60):
        img = read_image(p)
        faces = det.detect(img)
        if faces:
            crops.append(warp_face(img, faces[0].landmarks, size=112))
            scenes.append((img, np.stack([f.box for f in faces])))
    return np.stack(crops), scenes


def test_landmarks_agree_on_real_faces(real_faces):
    from faceforge.landmarks.predict import LandmarkPredictor

    ref = LandmarkPredictor.load(engine="onnxruntime")
    for engine in FP32_ENGINES:
        got = LandmarkPredictor.load(engine=engine)
        for img, boxes in real_faces[1]:
            scale = min(1.0, 640 / max(img.shape[:2]))
            err = np.abs(ref.predict(img, boxes) - got.predict(img, boxes)).max() * scale
            assert err <= PIXEL, (engine, err)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """faceforge exports (random weights) of the tiny test net and the full MobileFaceNet, plus an int8
    (QDQ) export of the tiny one: a foreign-looking graph with quantize/dequantize nodes."""
    import torch

    from conftest import write_tiny_checkpoint
    from faceforge.deploy.export import export_onnx
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("engines")
    out = {}
    tiny = write_tiny_checkpoint(root / "tiny.ckpt")
    torch.manual_seed(0)
    save_checkpoint(root / "mbf.ckpt", build_backbone("mobilefacenet"))
    for name, ckpt in (("tiny", tiny), ("mobilefacenet", root / "mbf.ckpt")):
        export_onnx(ckpt, root / f"{name}.onnx", log=lambda *_: None)
        out[name] = root / f"{name}.onnx"
    export_onnx(tiny, root / "tiny_int8.onnx", precision="int8", calib="synthetic:4x4", log=lambda *_: None)
    out["tiny_int8"] = root / "tiny_int8.onnx"
    return out


@pytest.mark.parametrize("model", ["tiny", "mobilefacenet"])
def test_embedders_agree_on_real_faces(exported, real_faces, model):
    from faceforge.embed.onnx_embedder import MIN_COSINE, OnnxEmbedder

    crops = real_faces[0]
    ref = OnnxEmbedder(exported[model], engine="onnxruntime").embed(crops)
    for engine in FP32_ENGINES:
        got = OnnxEmbedder(exported[model], engine=engine)
        assert got.session.label == "openvino fp32"
        assert _min_cosine(ref, got.embed(crops)) >= MIN_COSINE, engine
    auto = OnnxEmbedder(exported[model], engine="auto")  # whatever this machine picks keeps the promise
    assert _min_cosine(ref, auto.embed(crops)) >= MIN_COSINE, auto.session.record
    if _bf16():
        bf16 = OnnxEmbedder(exported[model], engine="openvino:bf16").embed(crops)
        assert _min_cosine(ref, bf16) >= BF16_MIN_COSINE


def test_int8_graph_on_openvino_is_as_close_to_fp32(exported, real_faces):
    """An int8 (QDQ) file runs in int8 on both engines, with different int8 kernels: each is held to
    the fp32 model, and OpenVINO's must be as close as ONNX Runtime's (0.005 of slack). The random tiny
    net quantises badly (cosine ~0.98 on either engine; a trained MobileFaceNet reaches 0.9996), so
    the two int8 answers differ from each other more than fp32 engines do; engine auto compares to ONNX
    Runtime's int8 and keeps that engine unless OpenVINO matches it."""
    from faceforge.embed.onnx_embedder import MIN_COSINE, OnnxEmbedder

    crops = real_faces[0]
    fp32 = OnnxEmbedder(exported["tiny"], engine="onnxruntime").embed(crops)
    ort8 = OnnxEmbedder(exported["tiny_int8"], engine="onnxruntime").embed(crops)
    ov8 = OnnxEmbedder(exported["tiny_int8"], engine="openvino:fp32").embed(crops)
    assert _min_cosine(fp32, ov8) >= _min_cosine(fp32, ort8) - 0.005
    auto = OnnxEmbedder(exported["tiny_int8"], engine="auto").embed(crops)
    assert _min_cosine(ort8, auto) >= MIN_COSINE
