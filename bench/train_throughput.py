"""Training throughput of the engine users run: ``faceforge.train.engine.Trainer``, loader included.

Two modes, both through the real ``Trainer`` (its config, precision, channels_last, fused SGD,
Partial FC, clipping, metering):

- ``--data loader`` (default): ``Trainer.fit()`` with ``train.max_steps`` on a packed file — the
  DataLoader workers, the uint8 side-stream copy and the on-device conversion included. The figure
  is the engine's own ``samples_per_s`` of its second log window (the first holds start-up).
- ``--data device``: synthetic uint8 batches already on the device, through the same on-device
  conversion (:func:`faceforge.data.batches.to_model_input`) and ``Trainer._step``: compute alone.

Printed: samples/s, step ms, peak memory, FLOPs per sample (backbone forward+backward = 6 × MACs;
Partial FC 6·D·C·r), achieved TFLOP/s and the fraction of the device's dense bf16/fp16 peak.
The arcface_torch reference (its own step, fp16, batch 512, in-GPU batches, one H100 80GB):
iresnet50 2,367 samples/s, mbf 5,143, iresnet50 + 2M classes at r = 0.1 1,965. The matrix::

    python bench/train_throughput.py --backbone iresnet50 --classes 93431 --batch 512
    python bench/train_throughput.py --backbone mbf --classes 93431 --batch 512
    python bench/train_throughput.py --backbone iresnet50 --classes 2000000 --sample-rate 0.1 --batch 512
    (each also with --data device)

A CPU smoke run: ``python bench/train_throughput.py --backbone mobilefacenet_tiny --classes 1000
--batch 32 --steps 10 --workers 1``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# dense bf16/fp16 tensor-core peaks (TFLOP/s, no sparsity) by device name
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
               "L40S": 362.0, "A10": 125.0}


def make_packed(path: Path, n: int, classes: int, size: tuple[int, int], encoding: str) -> None:
    """``n`` smooth synthetic faces-sized images over ``classes`` labels (random pixels would make
    JPEG records unrealistically large)."""
    import cv2

    from faceforge.data.packed import PackedWriter

    rng = np.random.default_rng(0)
    tiles = [cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), size[::-1]) for _ in range(64)]
    w = PackedWriter(path, (*size, 3), encoding=encoding)
    for i in range(n):
        w.add(np.roll(tiles[i % 64], i // 64, axis=1), i % classes)
    w.close(num_classes=classes)


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="iresnet50")
    ap.add_argument("--classes", type=int, default=93431)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--sample-rate", type=float, default=1.0)
    ap.add_argument("--head", default="arcface_torch")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--data", default="loader", choices=["loader", "device"])
    ap.add_argument("--source", default=None, help="packed:FILE to read (default: a synthetic packed file)")
    ap.add_argument("--encoding", default="raw", choices=["raw", "jpeg"],
                    help="records of the synthetic packed file")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50, help="measured steps (after as many warm-up steps)")
    ap.add_argument("--set", action="append", default=[],
                    help="extra config overrides, e.g. train.compile=true or train.cuda_graphs=true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sync-debug", action="store_true",
                    help="CUDA, --data device: count the synchronising calls of the measured steps "
                         "(torch.cuda.set_sync_debug_mode; slows the run, for diagnosis only)")
    args = ap.parse_args()

    from faceforge.config import load_config
    from faceforge.data.batches import per_channel, to_model_input
    from faceforge.models.complexity import backbone_complexity
    from faceforge.train.engine import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = args.source
        if source is None:
            n = args.batch * (2 * args.steps + 1) if args.data == "loader" else args.batch
            make_packed(tmp / "bench.ffpk", n, args.classes, (112, 112), args.encoding)
            source = f"packed:{tmp / 'bench.ffpk'}"
        cfg = load_config(None, [
            f"data.train={source}", f"data.batch_size={args.batch}", f"data.workers={args.workers}",
            f"model.backbone={args.backbone}", f"head.name={args.head}", f"train.precision={args.precision}",
            f"train.sample_rate={args.sample_rate}", f"train.max_steps={2 * args.steps}",
            f"train.log_every={args.steps}", "train.epochs=1", "optim.grad_clip=5",
            "optim.grad_clip_scope=backbone", f"device={args.device}", f"output={tmp / 'run'}", *args.set,
        ])
        trainer = Trainer(cfg, quiet=True)
        dev = trainer.device
        cuda = dev.type == "cuda"
        c0 = resource.getrusage(resource.RUSAGE_SELF)
        syncs = None
        if args.data == "loader":
            trainer.fit()
            records = [json.loads(x) for x in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
            windows = [r for r in records if "samples_per_s" in r]
            sps = windows[-1]["samples_per_s"] if len(windows) > 1 else float("nan")
        else:
            h, w = trainer._input_size()
            g = torch.Generator(device=dev).manual_seed(0)
            raw = torch.randint(0, 256, (args.batch, h, w, 3), dtype=torch.uint8, device=dev, generator=g)
            flips = torch.rand(args.batch, device=dev, generator=g) < 0.5
            labels = torch.randint(0, args.classes, (args.batch,), device=dev, generator=g)
            mean, std = per_channel(trainer.meta["mean"], "mean"), per_channel(trainer.meta["std"], "std")
            scale, shift = (1.0 / (255.0 * std)).to(dev), (-mean / std).to(dev)

            def run(k: int) -> None:
                for _ in range(k):
                    x = to_model_input(raw, flips, scale, shift, trainer.channels_last)
                    trainer._step(x, labels)
                if cuda:
                    torch.cuda.synchronize(dev)

            run(args.steps)  # warm-up: cuDNN autotuning, compile, allocator
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            if args.sync_debug and cuda:
                import warnings

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    run(args.steps)
                    torch.cuda.set_sync_debug_mode("default")
                syncs = sum("synchroniz" in str(w.message) for w in caught) / args.steps
            else:
                run(args.steps)
            sps = args.steps * args.batch / (time.perf_counter() - t0)
        c1 = resource.getrusage(resource.RUSAGE_SELF)

    macs = backbone_complexity(args.backbone).macs
    emb = trainer.backbone.embedding_size
    head_flops = 6 * emb * args.classes * args.sample_rate
    flops = 6 * macs + head_flops
    name = torch.cuda.get_device_name(dev) if cuda else (platform.processor() or "cpu")
    peak = peak_tflops(name) if cuda else None
    achieved = flops * sps / 1e12
    result = {
        "mode": args.data,
        "backbone": args.backbone,
        "classes": args.classes,
        "sample_rate": args.sample_rate,
        "batch": args.batch,
        "precision": trainer.precision,
        "channels_last": trainer.channels_last,
        "samples_per_s": round(sps, 1),
        "step_ms": round(1000 * args.batch / sps, 2),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if cuda
        else round(c1.ru_maxrss / 2**20, 2),
        "gflop_per_sample": round(flops / 1e9, 3),
        "backbone_gflop_per_sample": round(6 * macs / 1e9, 3),
        "achieved_tflops": round(achieved, 3),
        "fraction_of_peak": round(achieved / peak, 3) if peak else None,
        "syncs_per_step": syncs,
        "process_cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
        "device": name,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
