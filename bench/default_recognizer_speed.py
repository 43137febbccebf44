"""Speed per face of the default recognizer (dlib:resnet) next to the MobileFaceNet ONNX path.

    .venv/bin/python bench/default_recognizer_speed.py [--photos 40] [--repeat 3]

Both models see the same faces: RetinaFace finds them once (its time is reported apart), then each
model aligns (dlib: shape predictor + 150x150 chip; MobileFaceNet: 5-point similarity warp to the
112x112 ArcFace crop) and embeds one face at a time and in one batch, one thread each (dlib is
single-threaded; ONNX Runtime gets intra_op_num_threads=1). MobileFaceNet's weights are random
(a faceforge export of an untrained ``mobilefacenet``): speed does not depend on them. Best of
``--repeat`` runs, so a busy machine disturbs the figures less; the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    import torch

    from faceforge.align.select import pick_faces
    from faceforge.deploy.analyzer import FaceAnalyzer
    from faceforge.deploy.export import export_onnx
    from faceforge.embed.onnx_embedder import OnnxEmbedder
    from faceforge.io.images import read_image
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = sorted((SHARED / "celeba299").glob("*/*.jpg"))[:: max(1, 6300 // args.photos)][: args.photos]
    images = [read_image(f) for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        save_checkpoint(Path(tmp) / "mfn.ckpt", build_backbone("mobilefacenet"))
        export_onnx(Path(tmp) / "mfn.ckpt", Path(tmp) / "mfn.onnx", log=lambda *_: None)
        models = {"dlib:resnet (default)": FaceAnalyzer(),
                  "MobileFaceNet ONNX": FaceAnalyzer(model=OnnxEmbedder(Path(tmp) / "mfn.onnx", threads=1))}
        det = models["dlib:resnet (default)"]
        t = time.perf_counter()
        faces = [(img, pick_faces(det.detect(img), img.shape, "largest_center")) for img in images]
        detect_s = (time.perf_counter() - t) / len(images)
        faces = [(img, f[0]) for img, f in faces if f]
        print(f"{len(faces)} faces in {len(images)} CelebA photos; RetinaFace detection "
              f"{1000 * detect_s:.1f} ms/photo (shared by both)")
        print("| model | align ms/face | embed ms/face (1 at a time) | embed ms/face (batch) | dim | flip |")
        print("|---|---|---|---|---|---|")
        for name, fa in models.items():
            align_s = best_of(lambda fa=fa: [fa.align(i, f) for i, f in faces], args.repeat) / len(faces)
            batch = np.stack([fa.align(i, f) for i, f in faces])
            one_s = best_of(lambda fa=fa, batch=batch: [fa.embed_crops(c[None]) for c in batch],
                            args.repeat) / len(faces)
            many_s = best_of(lambda fa=fa, batch=batch: fa.embed_crops(batch), args.repeat) / len(faces)
            dim = fa.embed_crops(batch[:1]).shape[1]
            print(f"| {name} | {1000 * align_s:.2f} | {1000 * one_s:.2f} | {1000 * many_s:.2f} | {dim} | "
                  f"{fa.flip} |")
    cpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True,
                                                              text=True).stdout.splitlines() if ":" in line)
    model, flags = cpu.get("Model name", "").strip(), cpu.get("Flags", "").split()
    simd = [f for f in flags if f.startswith(("avx", "fma", "sse4"))]
    print(f"CPU: {model} ({', '.join(simd)}), {platform.python_version()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
