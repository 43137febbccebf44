"""CPU latency of face analysis on one core (issue 16 §3): detect + align + embed, MobileFaceNet on
ONNX Runtime at batch 1, on a 640x480 frame with one face and on the full-size ``obama3.jpg``;
detect+align alone; embed alone (fp32 and int8); batch-64 embedding throughput; and, side by side on
the same photos, facenet-pytorch's MTCNN against faceforge's MTCNN and RetinaFace.

    .venv/bin/python bench/deploy_latency.py [--reps 30] [--int8 synthetic:50x4|dynamic] [--no-facenet]

The MobileFaceNet is a randomly initialised checkpoint exported with ``faceforge``'s ``export_onnx``
(fp32, and int8 calibrated on synthetic faces): speed does not depend on the weights. Every runtime
gets one thread (ONNX Runtime intra-op 1, torch 1, OpenCV 1). Medians of wall and CPU (process) ms are
printed: the machine may be shared, and for a single-threaded pipeline CPU time is what an idle core
would take. The 640x480 frame is cut from ``obama.jpg`` around its face and resized.

facenet-pytorch (``pip install --no-deps facenet-pytorch``; its P/R/O-Net weights ship in the
wheel) imports torchvision, which this torch build cannot load: the benchmark injects a small local
stand-in for the two things it uses (``torchvision.ops.boxes.batched_nms`` and
``torchvision.transforms.functional``) before importing only its MTCNN module. The library never does.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"
SIDE_BY_SIDE = ("frame640x480", "obama.jpg", "obama3.jpg", "biden.jpg", "t1.jpg")


def _timed(fn, reps: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn()`` over ``reps`` calls after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def frame_640x480(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A 4:3 window around the face (about 1/3 of the frame's height), resized to 640x480."""
    import cv2

    h, w = img.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    wh = min(3.0 * (box[3] - box[1]), h)
    ww = min(wh * 4 / 3, w)
    wh = ww * 3 / 4
    x0 = int(np.clip(cx - ww / 2, 0, w - ww))
    y0 = int(np.clip(cy - wh / 2, 0, h - wh))
    return cv2.resize(img[y0 : y0 + int(wh), x0 : x0 + int(ww)], (640, 480), interpolation=cv2.INTER_AREA)


# --- facenet-pytorch without torchvision (benchmark only) -------------------------------------------


def _torchvision_stand_in() -> None:
    """``torchvision.ops.boxes.batched_nms`` (greedy IoU NMS per group) and ``transforms.functional
    .to_tensor`` in torch/numpy, registered in ``sys.modules`` for facenet-pytorch's import."""
    import torch

    from faceforge.align.nms import nms

    def batched_nms(boxes, scores, idxs, iou_threshold):
        if boxes.numel() == 0:
            return torch.zeros(0, dtype=torch.int64)
        # one NMS over all groups: boxes of different groups are moved apart so they never overlap
        shift = idxs.to(boxes) * (boxes.max() + 1)
        moved = (boxes + shift[:, None]).detach().cpu().numpy().astype(np.float64)
        keep = nms(moved, scores.detach().cpu().numpy(), float(iou_threshold))
        return torch.as_tensor(np.asarray(keep, dtype=np.int64), device=boxes.device)

    def to_tensor(pic):
        arr = np.asarray(pic)
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return t.float().div(255) if arr.dtype == np.uint8 else t

    tv = types.ModuleType("torchvision")
    ops, boxes_mod = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.ops.boxes")
    transforms, functional = (types.ModuleType("torchvision.transforms"),
                              types.ModuleType("torchvision.transforms.functional"))
    boxes_mod.batched_nms = batched_nms
    functional.to_tensor = to_tensor
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes_mod, transforms, functional
    for mod in (tv, ops, boxes_mod, transforms, functional):
        sys.modules[mod.__name__] = mod


def facenet_mtcnn():
    """facenet-pytorch's MTCNN class, its package ``__init__`` (which needs ``requests``) skipped."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        return None
    if "torchvision" not in sys.modules:
        _torchvision_stand_in()
    root = Path(spec.origin).parent
    pkg = types.ModuleType("facenet_pytorch")
    pkg.__path__ = [str(root)]
    sys.modules.setdefault("facenet_pytorch", pkg)
    from facenet_pytorch.models.mtcnn import MTCNN

    return MTCNN(keep_all=True, device="cpu")


# --- the run -------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--model", default="mobilefacenet")
    ap.add_argument("--int8", default="synthetic:50x4", help="int8 calibration: a data source or 'dynamic'")
    ap.add_argument("--no-facenet", action="store_true", help="skip the facenet-pytorch side-by-side")
    args = ap.parse_args()

    import cv2
    import torch

    from faceforge import FaceAnalyzer
    from faceforge.align.detectors import get_detector
    from faceforge.deploy.export import export_onnx
    from faceforge.embed.onnx_embedder import OnnxEmbedder
    from faceforge.io.images import read_image
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    reps = args.reps
    with tempfile.TemporaryDirectory() as td:
        ckpt, fp32, int8 = Path(td) / "m.ckpt", Path(td) / "m.onnx", Path(td) / "m_int8.onnx"
        torch.manual_seed(0)
        save_checkpoint(ckpt, build_backbone(args.model))
        export_onnx(ckpt, fp32, log=lambda *_: None)
        export_onnx(ckpt, int8, precision="int8", calib=args.int8, log=lambda *_: None)
        fa = FaceAnalyzer(model=OnnxEmbedder(fp32, "cpu", threads=1), threshold=0.5)
        fa.flip = "none"
        emb8 = OnnxEmbedder(int8, "cpu", threads=1)

        obama = read_image(PHOTOS / "obama.jpg")
        images = {"frame640x480": frame_640x480(obama, fa.detect(obama)[0].box)}
        images.update({name: read_image(PHOTOS / name) for name in SIDE_BY_SIDE[1:]})
        print(f"model {args.model} (random init), ONNX Runtime 1 intra-op thread, torch 1 thread, "
              f"batch 1, flip off, RetinaFace det_size {fa.detector.det_size}; median of {reps}; "
              f"ms wall / CPU")
        print()
        print("| image | size | faces | detect+align | embed fp32 | embed int8 | detect+align+embed |")
        print("|---|---|---|---|---|---|---|")
        for name in ("frame640x480", "obama3.jpg"):
            img = images[name]
            faces = fa.detect(img)
            crop = fa.align(img, faces[0])[None]

            def detect_align(img=img):
                return [fa.align(img, f) for f in fa.detect(img)]

            da = _timed(detect_align, reps)
            e32 = _timed(lambda crop=crop: fa.embed_crops(crop), reps)
            e8 = _timed(lambda crop=crop: emb8.embed(crop), reps)
            total = _timed(lambda img=img: fa.embed(img), reps)
            cells = " | ".join(f"{w:.1f} / {c:.1f}" for w, c in (da, e32, e8, total))
            print(f"| {name} | {img.shape[1]}x{img.shape[0]} | {len(faces)} | {cells} |", flush=True)

        crop = fa.align(images["obama.jpg"], fa.detect(images["obama.jpg"])[0])
        crops64 = np.ascontiguousarray(np.repeat(crop[None], 64, axis=0))
        print()
        for label, emb in (("fp32", fa.embedder), ("int8", emb8)):
            w, c = _timed(lambda emb=emb: emb.embed(crops64), max(3, reps // 6))
            print(f"embed batch 64 {label}: {w:.0f} ms wall / {c:.0f} ms CPU = {64000 / w:.0f} faces/s wall, "
                  f"{64000 / c:.0f} faces/s per CPU-second", flush=True)

        detectors = {
            "faceforge retinaface (det_size 640)": get_detector("retinaface").detect,
            "faceforge mtcnn (full size, min face 20)": get_detector("mtcnn").detect,
            "faceforge mtcnn (det_size 640)": get_detector("mtcnn", det_size=640).detect,
        }
        if not args.no_facenet:
            fn = facenet_mtcnn()
            if fn is None:
                print("\nfacenet-pytorch not installed: pip install --no-deps facenet-pytorch")
            else:
                def facenet_detect(img, fn=fn):
                    with torch.inference_mode():
                        boxes, _ = fn.detect(img)
                    return [] if boxes is None else list(boxes)

                detectors["facenet-pytorch MTCNN (min face 20, torch 1 thread)"] = facenet_detect
        print()
        print("| detector | " + " | ".join(SIDE_BY_SIDE) + " |")
        print("|---|" + "---|" * len(SIDE_BY_SIDE))
        per_image = {}
        for label, detect in detectors.items():
            cells = []
            for name in SIDE_BY_SIDE:
                n = len(detect(images[name]))
                w, c = _timed(lambda name=name, detect=detect: detect(images[name]), max(3, reps // 3))
                per_image[label, name] = c
                cells.append(f"{w:.0f} / {c:.0f} ms, {n} faces")
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
        ref = "facenet-pytorch MTCNN (min face 20, torch 1 thread)"
        if any(k[0] == ref for k in per_image):
            print()
            for label in (d for d in detectors if d != ref):
                ratios = [per_image[ref, n] / max(per_image[label, n], 1e-6) for n in SIDE_BY_SIDE]
                print(f"facenet MTCNN CPU ms / {label} CPU ms: median {statistics.median(ratios):.2f}x "
                      f"(per image {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
