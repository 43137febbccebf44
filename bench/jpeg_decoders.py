"""JPEG decoding per worker: faceforge's gate with PyTurboJPEG vs with OpenCV, on real aligned crops.

Decodes every ``*.jpg`` under FOLDER ``--repeats`` times in one process and one thread, through
:func:`faceforge.io.images.decode_image` (the gate: header check, decode, RGB), once with the
TurboJPEG path and once with ``FACEFORGE_JPEG_DECODER=opencv``'s; prints images/s in wall and CPU
time and checks that both give the same pixels::

    faceforge align ../shared/data/celeba299 /tmp/aligned --workers 1
    OMP_NUM_THREADS=1 python bench/jpeg_decoders.py /tmp/aligned --repeats 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from faceforge.io import images


def timed(datas: list[bytes], repeats: int) -> tuple[float, float, list[np.ndarray]]:
    out = [images.decode_image(d) for d in datas]  # warm-up, and the pixels to compare
    w, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for d in datas:
            images.decode_image(d)
    n = len(datas) * repeats
    return n / (time.perf_counter() - w), n / (time.process_time() - c), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    datas = [p.read_bytes() for p in sorted(Path(args.folder).rglob("*.jpg"))]
    if not datas:
        raise SystemExit(f"no .jpg under {args.folder}")
    rows = {}
    for name in ("turbojpeg", "opencv"):
        images._TURBO = None if name == "turbojpeg" else False
        images.TURBO_MIN_PIXELS = 0  # every JPEG through the decoder under test
        if name == "turbojpeg" and images.jpeg_decoder() != "turbojpeg":
            print("PyTurboJPEG / libturbojpeg not installed: only OpenCV measured")
            continue
        rows[name] = timed(datas, args.repeats)
    mean_bytes = np.mean([len(d) for d in datas])
    print(f"{len(datas)} JPEGs ({mean_bytes:.0f} bytes each), {args.repeats} passes, 1 thread")
    print("| decoder | images/s wall | images/s CPU |\n|---|---|---|")
    for name, (wall, cpu, _) in rows.items():
        print(f"| {name} | {wall:,.0f} | {cpu:,.0f} |")
    if len(rows) == 2:
        a, b = rows["turbojpeg"][2], rows["opencv"][2]
        diff = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b))
        print(f"largest pixel difference between the two: {diff}")


if __name__ == "__main__":
    main()
