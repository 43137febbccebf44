"""Per-image detection latency (batch 1) of each detector on the shared photos.

    .venv/bin/python bench/detect.py [--repeats 5] [--threads 1] [--photos ../shared/data/photos]

Prints a markdown table (median and min milliseconds per image, faces found) for appending to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

DEFAULT_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--detectors", default="retinaface,mtcnn")
    args = parser.parse_args()

    import cv2

    from faceforge.align.detectors import get_detector
    from faceforge.io.images import read_image

    cv2.setNumThreads(1)
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    images = [(f.name, read_image(f)) for f in files]
    names = args.detectors.split(",")
    rows: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name in names:
        det = get_detector(name, threads=args.threads)
        for fname, img in images:
            det.detect(img)  # warm-up: session allocations, prior cache
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                faces = det.detect(img)
                times.append((time.perf_counter() - t) * 1000)
            rows.setdefault(fname, {})[name] = (statistics.median(times), min(times), len(faces))

    print(f"machine: {platform.machine()} {platform.processor() or ''}, onnxruntime threads={args.threads}, "
          f"repeats={args.repeats}")
    print()
    cols = " | ".join(f"{n} median ms | {n} min ms | {n} faces" for n in names)
    print(f"| photo | size (WxH) | {cols} |")
    print("|" + "---|" * (2 + 3 * len(names)))
    sizes = {fname: f"{img.shape[1]}x{img.shape[0]}" for fname, img in images}
    for fname, per in rows.items():
        cells = " | ".join(f"{per[n][0]:.0f} | {per[n][1]:.0f} | {per[n][2]}" for n in names)
        print(f"| {fname} | {sizes[fname]} | {cells} |")
    for n in names:
        med = statistics.median(per[n][0] for per in rows.values())
        print(f"\n{n}: median over photos {med:.0f} ms/image")


if __name__ == "__main__":
    main()
