"""What checking each packed record's CRC as it is read costs the training loader (issue 26).

    python bench/packed_crc.py [--images 2048] [--batch 128] [--repeats 3]

Writes a raw and a JPEG ``.ffpk`` of synthetic 112x112 faces, then reads every batch of an epoch
through the engine's path (:func:`faceforge.data.batches.epoch_batches`, workers=0, then
:func:`~faceforge.data.batches.to_model_input`) with ``check_records`` on and off, alternating
on/off ``--repeats`` times so both see the same machine load. Prints images/s (wall) and CPU
seconds per variant, the best of the repeats, and the on/off ratio. CPU model and flags first.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from faceforge.data.batches import BatchPlan, epoch_batches, per_channel, to_model_input
from faceforge.data.packed import PackedDataset, PackedWriter


def _machine() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    keep = [line for line in info if line.split(":")[0] in ("Model name", "CPU(s)", "Flags")]
    return "\n".join(keep)


def _write(path: Path, encoding: str, n: int) -> Path:
    from faceforge.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(seed=0)
    w = PackedWriter(path, (112, 112, 3), encoding=encoding, quality=90)
    for i in range(n):
        w.add(faces.render(i % 64, i)[0], i % 64)
    w.close()
    return path


def epoch(ds: PackedDataset, batch: int) -> tuple[float, float, int]:
    plan = BatchPlan(len(ds), batch, seed=0)
    mean, std = per_channel(0.5, "mean"), per_channel(0.5, "std")
    scale, shift = 1.0 / (255.0 * std), -mean / std
    n, w, c = 0, time.perf_counter(), time.process_time()
    for _, raw, flips, _, skipped in epoch_batches(ds, plan, 0, workers=0):
        n += to_model_input(raw, flips, scale, shift).shape[0]
        assert skipped == 0
    return n / (time.perf_counter() - w), time.process_time() - c, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(_machine())
    with tempfile.TemporaryDirectory() as tmp:
        for encoding in ("raw", "jpeg"):
            ds = PackedDataset(_write(Path(tmp) / f"{encoding}.ffpk", encoding, args.images))
            epoch(ds, args.batch)  # warm-up: page cache
            best = {True: (0.0, np.inf), False: (0.0, np.inf)}
            for _ in range(args.repeats):
                for check in (True, False):
                    ds.check_records = check
                    ips, cpu, _ = epoch(ds, args.batch)
                    best[check] = (max(best[check][0], ips), min(best[check][1], cpu))
            (on_ips, on_cpu), (off_ips, off_cpu) = best[True], best[False]
            print(f"{encoding:4s}  crc on  {on_ips:8.0f} img/s {on_cpu:6.2f} CPU s | "
                  f"crc off {off_ips:8.0f} img/s {off_cpu:6.2f} CPU s | "
                  f"on/off throughput {on_ips / off_ips:.3f}, CPU {on_cpu / off_cpu:.3f}")


if __name__ == "__main__":
    main()
