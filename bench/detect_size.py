"""Detection size trade-off: faces found and ms per photo at several detection sizes (issue 16 §1).

    .venv/bin/python bench/detect_size.py [--sizes 480,640,960,1280,full] [--celeba 100] [--repeats 3]

``photos``: the full-size shared photos (expected faces: 1 in each obama*/biden photo, 6 in t1.jpg),
median of ``--repeats`` per photo. ``celeba``: the first image of the first ``--celeba`` identities
of celeba299 (320 px on the long side), one pass; there a size above 320 means *upscaling* to it
(``upscale=True``), "full" is the 320 px original. Wall and CPU (process) milliseconds are both
printed because the machine is shared. Prints markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXPECTED = {"t1.jpg": 6, "Tom_Hanks_54745.png": 1}


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, 1000 * (time.perf_counter() - w), 1000 * (time.process_time() - c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="480,640,960,1280,full")
    ap.add_argument("--detectors", default="retinaface,mtcnn")
    ap.add_argument("--celeba", type=int, default=100, help="identities of celeba299 (one image each)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import cv2

    from faceforge.align.detectors import get_detector
    from faceforge.io.images import read_image

    cv2.setNumThreads(1)
    sizes = args.sizes.split(",")
    photos = [(p.name, read_image(p)) for p in sorted((SHARED / "photos").iterdir())
              if p.suffix.lower() in (".jpg", ".png")]
    ids = sorted(d for d in (SHARED / "celeba299").iterdir() if d.is_dir())[: args.celeba]
    celeba = [read_image(sorted(d.glob("*.jpg"))[0]) for d in ids]
    print(f"photos: {len(photos)}; celeba299: {len(celeba)} images; onnxruntime 1 thread; "
          f"repeats {args.repeats}")
    print()
    print("| detector | det_size | photos: faces right (of 9) | photos: faces found | photos ms/photo "
          "median (wall / CPU) | obama3.jpg ms | celeba: images with a face | celeba faces | "
          "celeba ms/image (wall / CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.detectors.split(","):
        for size in sizes:
            det_size = None if size == "full" else int(size)
            det = get_detector(name, det_size=det_size)
            right = found = 0
            walls, cpus, obama3 = [], [], 0.0
            for fname, img in photos:
                det.detect(img)  # warm-up
                runs = [_timed(lambda img=img, det=det: det.detect(img)) for _ in range(args.repeats)]
                faces = runs[0][0]
                w = statistics.median(r[1] for r in runs)
                walls.append(w)
                cpus.append(statistics.median(r[2] for r in runs))
                if fname == "obama3.jpg":
                    obama3 = w
                found += len(faces)
                right += len(faces) == EXPECTED.get(fname, 1)
            cdet = get_detector(name, det_size=det_size, upscale=det_size is not None)
            cdet.detect(celeba[0])
            with_face = nfaces = 0
            cw = cc = 0.0
            for img in celeba:
                faces, w, c = _timed(lambda img=img, det=cdet: det.detect(img))
                cw, cc = cw + w, cc + c
                with_face += bool(faces)
                nfaces += len(faces)
            n = max(len(celeba), 1)
            print(f"| {name} | {size} | {right} | {found} | {statistics.median(walls):.0f} / "
                  f"{statistics.median(cpus):.0f} | {obama3:.0f} | {with_face}/{len(celeba)} | {nfaces} | "
                  f"{cw / n:.1f} / {cc / n:.1f} |", flush=True)


if __name__ == "__main__":
    main()
