"""Synthetic face rendering speed (one process, one core, no torch) and a contact sheet.

    .venv/bin/python bench/synth.py [--images 4000] [--append docs/benchmarks.md]
                                    [--sheet docs/synthetic_faces.png]

Target: >= 1,000 aligned 112x112 images/s on one core. Reports wall-clock and process CPU time
(on a shared machine the CPU-time rate is the fairer number; both are printed and recorded).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path


def rate(mode: str, n_images: int, per_id: int = 20, difficulty: float = 1.0) -> tuple[float, float]:
    from faceforge.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(seed=0, mode=mode, difficulty=difficulty)
    faces.render(10**6, 0)  # one-time set-up (noise bank) outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    done = 0
    j = 0
    while done < n_images:
        for k in range(min(per_id, n_images - done)):
            faces.render(j, k)
            done += 1
        j += 1
    return n_images / (time.perf_counter() - wall), n_images / (time.process_time() - cpu)


def contact_sheet(path: Path, rows: int = 6, cols: int = 10) -> None:
    """``rows`` identities (one per row) x ``cols`` images; then one row of wild-mode scenes."""
    import cv2
    import numpy as np

    from faceforge.atomic import atomic_write_bytes
    from faceforge.data.synthetic import SyntheticFaces

    aligned = SyntheticFaces(seed=0)
    lines = [np.concatenate([aligned.render(j, k)[0] for k in range(cols)], 1) for j in range(rows)]
    wild = SyntheticFaces(seed=0, mode="wild", size=112 * 2)
    tiles = []
    for j in range(cols // 2):
        img, truth = wild.render(100 + j, 0)
        img = img.copy()
        for x, y in truth["landmarks"]:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
        x1, y1, x2, y2 = (int(round(v)) for v in truth["box"])
        cv2.rectangle(img, (x1, y1), (x2, y2), (255, 0, 0), 1)
        tiles.append(img)
    lines.append(np.concatenate(tiles, 1))
    sheet = np.concatenate(lines, 0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(path, buf.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--append", type=Path, default=None, help="append a results section to this file")
    parser.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG here")
    args = parser.parse_args()

    import cv2

    cv2.setNumThreads(1)  # one core, as the target says
    results = {}
    for mode, n in (("aligned", args.images), ("wild", max(args.images // 4, 1))):
        results[mode] = rate(mode, n)
        wall, cpu = results[mode]
        print(f"{mode:8s} {n:6d} images: {wall:7.0f} img/s wall, {cpu:7.0f} img/s CPU")
    if args.sheet:
        contact_sheet(args.sheet)
        print(f"wrote {args.sheet}")
    if args.append:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        (aw, ac), (ww, wc) = results["aligned"], results["wild"]
        cpu = platform.processor() or platform.machine()
        text = (
            f"\n## Synthetic face rendering (bench/synth.py)\n\n"
            f"- date: {datetime.date.today().isoformat()}; machine: {os.cpu_count()}-core CPU ({cpu}), "
            f"shared with other engineers (1-minute load {load:.1f} at the end of the run), so wall-clock "
            f"numbers are noisy; Python {sys.version.split()[0]}, OpenCV {cv2.__version__}, one process, "
            f"cv2.setNumThreads(1)\n"
            f"- command: `.venv/bin/python bench/synth.py --images {args.images} --append {args.append}`\n"
            f"- target: >= 1,000 aligned 112x112 images/s on one core\n\n"
            f"| mode | size | images | img/s (wall) | img/s (process CPU time) |\n|---|---|---|---|---|\n"
            f"| aligned | 112x112 | {args.images} | {aw:.0f} | {ac:.0f} |\n"
            f"| wild | 256x256 | {max(args.images // 4, 1)} | {ww:.0f} | {wc:.0f} |\n"
        )
        with open(args.append, "a") as f:  # other benchmarks append to the same file
            f.write(text)
        print(f"appended to {args.append}")


if __name__ == "__main__":
    main()
