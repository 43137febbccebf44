"""Masks per second on one core: landmark-driven masks on aligned crops and on raw photos, by stage,
beside the 2-D paste. Wall time per stage (ms per image), and masks per second of process CPU
time, which a loaded machine distorts less.

    OMP_NUM_THREADS=1 python bench/mask_speed.py [--images 120]

Images are decoded before the clock starts (every ``len/N``-th celeba299 photo; the crops are
their 112x112 ArcFace alignments); one ONNX intra-op thread, ``cv2.setNumThreads(1)``,
``torch.set_num_threads(1)``. Prints a markdown table and the CPU.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path

import cv2

from faceforge.align.transform import warp_face
from faceforge.data.mask_mesh import apply_landmark_masks
from faceforge.data.masks import apply_mask, file_rng, load_textures
from faceforge.io.images import read_image
from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = [f for f in info.get("Flags", "").split() if f.startswith(("avx", "fma", "sse4", "amx"))]
    return f"{info.get('Model name', '?').strip()}; flags {' '.join(flags)}"


CPU_SECONDS = []  # process CPU time of every timed() call, in order


def timed(fn, items) -> tuple[float, list]:
    """Wall seconds of ``fn`` over ``items`` (its process CPU seconds go to CPU_SECONDS)."""
    t, c = time.perf_counter(), time.process_time()
    out = [fn(x) for x in items]
    CPU_SECONDS.append(time.process_time() - c)
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=120)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    files = sorted((SHARED / "celeba299").glob("*/*.jpg"))
    files = files[:: max(1, len(files) // args.images)][: args.images]
    landmarker = FaceLandmarker(LandmarkPredictor.load("builtin", threads=1))
    detect = landmarker.detector.detect
    textures = load_textures(SHARED / "masks")
    photos = [read_image(f) for f in files]
    crops = []
    for img in photos:
        faces = detect(img)
        if faces:
            crops.append(warp_face(img, faces[0].landmarks, "arcface", (112, 112)))
    rng = [file_rng(0, f.name) for f in files]

    rows = []
    sets = (("aligned crops 112x112", crops), ("raw photos (celeba299, 320 px long side)", photos))
    for what, images in sets:
        t_det, faces = timed(detect, images)
        pairs = [(img, f) for img, f in zip(images, faces) if f]
        t_lm, points = timed(lambda p: landmarker.points_for(p[0], [f.box for f in p[1]]), pairs)
        work = list(zip([img for img, _ in pairs], points, rng))
        t_mask, _ = timed(lambda w: apply_landmark_masks(w[0], w[1], w[2], textures), work)
        n, k = len(pairs), sum(len(p) for p in points)
        total, cpu_total = t_det + t_lm + t_mask, sum(CPU_SECONDS[-3:])
        per_image = (1000 * t_det / n, 1000 * t_lm / n, 1000 * t_mask / n)
        rows.append((what, n, k, *per_image, n / total, n / cpu_total))
    t_paste, _ = timed(lambda w: apply_mask(w[0], w[1], texture=textures), list(zip(crops, rng)))
    print(f"CPU: {cpu()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| images | n | faces | detect ms | landmarks ms | mask ms | masks/s wall | masks per CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    for what, n, k, d, lm, m, rate, cpu_rate in rows:
        print(f"| {what} | {n} | {k} | {d:.1f} | {lm:.1f} | {m:.1f} | {rate:.1f} | {cpu_rate:.1f} |")
    n = len(crops)
    print(f"| aligned crops, 2-D paste (--method paste, no landmarks) | {n} | {n} | - | - "
          f"| {1000 * t_paste / n:.1f} | {n / t_paste:.1f} | {n / CPU_SECONDS[-1]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
