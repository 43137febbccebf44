"""What the hardening of issue 13 costs: the image gate's header check, and a checkpoint's content hash.

    python bench/hardening.py [--images N] [--backbone iresnet50]

1. decode N real JPEGs (``../shared/data/celeba299``) with plain ``cv2.imdecode`` and through
   ``faceforge.io.images.decode_image`` (header parsed, pixel limit checked, then the same decode);
   prints ms per image for both and for ``image_size`` alone.
2. save and load a checkpoint of ``--backbone`` with ``save_checkpoint`` / ``read_checkpoint``
   (``weights_only=True`` + SHA-256 of every tensor) and times ``content_hash`` alone.

Wall and CPU (process) time are both printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, repeat: int = 1) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - w) / repeat, (time.process_time() - c) / repeat


def bench_gate(n: int) -> None:
    import cv2

    from faceforge.io.images import decode_image, image_size

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba299"
    files = sorted(root.rglob("*.jpg"))[:n]
    if not files:
        print(f"gate: no images under {root}; skipped")
        return
    blobs = [f.read_bytes() for f in files]

    def plain():
        for b in blobs:
            cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)

    def gate():
        for b in blobs:
            decode_image(b)

    def header():
        for b in blobs:
            image_size(b)

    gate()  # warm caches
    for name, fn in (("cv2.imdecode + cvtColor", plain), ("decode_image (gate)", gate),
                     ("image_size (header only)", header)):
        wall, cpu = _timed(fn, repeat=3)
        print(f"gate: {name:26s} {1000 * wall / len(blobs):8.4f} ms/image wall  "
              f"{1000 * cpu / len(blobs):8.4f} ms/image cpu   ({len(blobs)} images)")


def bench_checkpoint(backbone: str) -> None:
    import torch

    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import content_hash, read_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = build_backbone(backbone)
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "b.ckpt"
        wall, cpu = _timed(lambda: save_checkpoint(path, model))
        size = path.stat().st_size / 1e6
        print(f"checkpoint: {backbone} {size:.1f} MB  save {wall:.3f} s wall {cpu:.3f} s cpu")
        wall, cpu = _timed(lambda: read_checkpoint(path))
        print(f"checkpoint: read_checkpoint (weights_only + hash check) {wall:.3f} s wall {cpu:.3f} s cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True)
        wall, cpu = _timed(lambda: torch.load(path, map_location="cpu", weights_only=True))
        print(f"checkpoint: torch.load alone {wall:.3f} s wall {cpu:.3f} s cpu")
        wall, cpu = _timed(lambda: content_hash(obj))
        print(f"checkpoint: content_hash alone {wall:.3f} s wall {cpu:.3f} s cpu "
              f"({size / max(wall, 1e-9):.0f} MB/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--backbone", default="iresnet50")
    args = ap.parse_args()
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    bench_gate(args.images)
    bench_checkpoint(args.backbone)


if __name__ == "__main__":
    main()
