"""Per-face CPU latency of detect + align + embed (MobileFaceNet), ONNX Runtime vs PyTorch eager.

Batch 1: one photo with one face through FaceAnalyzer (RetinaFace detection, 5-point alignment, the
embedding with the card's flip fusion off). Batch 64: embedding throughput on 64 aligned crops.
Weights are random (latency does not depend on them). Threads: ``--threads`` for both runtimes.

    .venv/bin/python bench/deploy_latency.py --threads 2 --reps 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "obama.jpg"


def _ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    import torch

    from faceforge import FaceAnalyzer
    from faceforge.deploy.export import export_onnx
    from faceforge.io.images import read_image
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--model", default="mobilefacenet")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    img = read_image(PHOTO)
    with tempfile.TemporaryDirectory() as td:
        ckpt, onnx_path = Path(td) / "m.ckpt", Path(td) / "m.onnx"
        torch.manual_seed(0)
        save_checkpoint(ckpt, build_backbone(args.model))
        export_onnx(ckpt, onnx_path, log=lambda *_: None)
        runs = {
            "onnxruntime": FaceAnalyzer(model=str(onnx_path), threshold=0.5),
            "torch eager": FaceAnalyzer(model=str(ckpt), backend="torch", threshold=0.5),
        }
        for fa in runs.values():
            fa.flip = "none"
            if hasattr(fa.embedder, "session"):  # the ONNX session gets the same thread budget
                from faceforge.embed.onnx_embedder import OnnxEmbedder

                fa.embedder = OnnxEmbedder(onnx_path, "cpu", threads=args.threads)
        print(f"photo {PHOTO.name} {img.shape[1]}x{img.shape[0]}, model {args.model}, "
              f"threads {args.threads}, "
              f"median of {args.reps}")
        for name, fa in runs.items():
            face = fa.detect(img)[0]
            crop = fa.align(img, face)
            crops64 = np.repeat(crop[None], 64, axis=0)
            detect = _ms(lambda fa=fa: fa.detect(img), args.reps)
            align = _ms(lambda fa=fa, face=face: fa.align(img, face), args.reps)
            embed1 = _ms(lambda fa=fa, crop=crop: fa.embed_crops(crop[None]), args.reps)
            total = _ms(lambda fa=fa: fa.embed(img), args.reps)
            b64 = _ms(lambda fa=fa, c=crops64: fa.embed_crops(c), max(3, args.reps // 4))
            print(f"{name:12s} detect {detect:6.1f} ms | align {align:5.2f} ms | embed b1 {embed1:5.1f} ms | "
                  f"detect+align+embed {total:6.1f} ms/face | embed b64 {b64:7.1f} ms = "
                  f"{64000 / b64:6.1f} faces/s")


if __name__ == "__main__":
    main()
