"""The engine's loader per format and worker count: folder JPEG, RecordIO, packed raw, packed JPEG.

Times what the training engine reads: :func:`faceforge.data.batches.epoch_batches` (uint8 NHWC
batches from DataLoader workers; JPEG decoded with OpenCV in the workers) then
:func:`~faceforge.data.batches.to_model_input` (flip + normalise, here on the CPU) — batches of
ready float32 ``[B,3,112,112]``. Real faces: a folder of 112x112 aligned crops, e.g.

    faceforge align ../shared/data/celeba299 /tmp/celeb_aligned --workers 1
    python bench/loader_formats.py /tmp/celeb_aligned --workers 0 1 2 --epochs 3

The folder is converted once to RecordIO (its JPEG bytes kept), packed raw and packed JPEG (its
JPEG bytes kept). images/s is wall time from each epoch's first batch on (the workers' start-up,
once per epoch, left out); "CPU s" is the CPU time of the process and its reaped workers over the
whole run (on a shared machine wall time includes others' use of the cores).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from faceforge.data.batches import BatchPlan, epoch_batches, per_channel, to_model_input
from faceforge.data.dataset import open_source
from faceforge.data.tools.convert import convert
from faceforge.data.tools.pack import pack


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def throughput(source: str, batch: int, epochs: int, workers: int) -> tuple[float, float]:
    ds = open_source(source)
    plan = BatchPlan(len(ds), batch, seed=0)
    mean, std = per_channel(0.5, "mean"), per_channel(0.5, "std")
    scale, shift = 1.0 / (255.0 * std), -mean / std
    for _ in epoch_batches(ds, plan, 99, workers=0):  # warm-up: page cache
        break
    n, busy, c0 = 0, 0.0, _cpu()
    for epoch in range(epochs):
        batches = epoch_batches(ds, plan, epoch, workers=workers)
        t0 = None
        for _, raw, flips, _, _ in batches:
            x = to_model_input(raw, flips, scale, shift)
            if t0 is None:  # the clock starts at the first batch: worker start-up is not throughput
                t0 = time.perf_counter()
                continue
            n += x.shape[0]
        busy += time.perf_counter() - t0
        batches.close()
    return n / busy, _cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="identity folders of 112x112 aligned JPEG crops")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = f"folder:{args.folder}"
        convert(folder, "rec", tmp / "rec", progress=False, workers=1)
        pack(folder, tmp / "raw.ffpk", workers=1, progress=False)
        pack(folder, tmp / "jpg.ffpk", workers=1, progress=False, encoding="jpeg")
        n = len(open_source(folder))
        files = [p for p in Path(args.folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
        rows = [
            ("folder JPEG", folder, sum(p.stat().st_size for p in files) / n),
            ("RecordIO (.rec)", f"rec:{tmp / 'rec'}", (tmp / "rec" / "train.rec").stat().st_size / n),
            ("packed raw (.ffpk)", f"packed:{tmp / 'raw.ffpk'}", (tmp / "raw.ffpk").stat().st_size / n),
            ("packed JPEG (.ffpk)", f"packed:{tmp / 'jpg.ffpk'}", (tmp / "jpg.ffpk").stat().st_size / n),
        ]
        cols = " | ".join(f"{w} worker{'s' if w != 1 else ''}: images/s (CPU s)" for w in args.workers)
        print(f"{n} images 112x112, batch {args.batch}, {args.epochs} epochs, torch threads 1")
        print(f"| format | bytes/image | {cols} |")
        print("|---|---|" + "---|" * len(args.workers))
        for name, source, size in rows:
            cells = []
            for w in args.workers:
                ips, cpu = throughput(source, args.batch, args.epochs, w)
                cells.append(f"{ips:,.0f} ({cpu:.1f})")
            print(f"| {name} | {size:,.0f} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
