"""Training throughput: samples/s and peak memory of faceforge's training step.

Mirrors the comparison in the training-at-scale issue: arcface_torch's own step (fp16 autocast,
PartialFC_V2, CombinedMarginLoss, SGD, batch 512) measured on one H100 80GB gave iresnet50 2,367
samples/s, mbf 5,143, and iresnet50 with 2M classes at r=0.1 1,965. Run on a GPU:

    python bench/train_throughput.py --backbone iresnet50 --classes 93431 --batch 512 --precision fp16
    python bench/train_throughput.py --backbone mbf --classes 93431 --batch 512 --precision fp16
    python bench/train_throughput.py --backbone iresnet50 --classes 2000000 --sample-rate 0.1 ...
    python bench/train_throughput.py ... --data packed:/data/train.ffpk   # loader included

``--data gpu`` (default) feeds synthetic batches already on the device, separating compute from the
loader; ``--data SOURCE`` (``packed:``, ``rec:``, ``synthetic:``) runs the engine's real loader.
The FLOP count per sample (forward + backward ≈ 3 × forward, 2 FLOPs per MAC) says whether a
result is compute-bound: samples/s × FLOPs/sample against the device's peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="mobilefacenet")
    ap.add_argument("--classes", type=int, default=93431)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--sample-rate", type=float, default=1.0)
    ap.add_argument("--head", default="arcface")
    ap.add_argument("--precision", default="fp16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--data", default="gpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    from faceforge.models import build_backbone, build_margin
    from faceforge.models.complexity import backbone_complexity
    from faceforge.models.heads.classifier import PartialFC

    dev = torch.device(args.device)
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone).to(dev)
    if args.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    pfc = PartialFC(build_margin(args.head), backbone.embedding_size, args.classes, args.sample_rate).to(dev)
    opt = torch.optim.SGD(
        list(backbone.parameters()) + list(pfc.parameters()), lr=0.1, momentum=0.9, weight_decay=5e-4
    )
    scaler = torch.amp.GradScaler(dev.type, enabled=args.precision == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    model = torch.compile(backbone) if args.compile else backbone
    h, w = backbone.meta["input_size"]

    def batches():
        if args.data == "gpu":
            x = torch.randn(args.batch, 3, h, w, device=dev)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, args.classes, (args.batch,), device=dev)
            while True:
                yield x, y
        from faceforge.data.batches import BatchPlan, epoch_batches
        from faceforge.data.dataset import open_source

        ds = open_source(args.data)
        plan = BatchPlan(len(ds), args.batch, 0)
        epoch = 0
        while True:
            for _, x, y, _ in epoch_batches(ds, plan, epoch, workers=8 if dev.type == "cuda" else 0):
                yield x.to(dev, non_blocking=True), (y % args.classes).to(dev)
            epoch += 1

    it = batches()

    def step():
        x, y = next(it)
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = pfc(model(x), y)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    macs = backbone_complexity(args.backbone).macs
    sps = args.steps * args.batch / dt
    result = {
        "backbone": args.backbone,
        "classes": args.classes,
        "sample_rate": args.sample_rate,
        "batch": args.batch,
        "precision": args.precision,
        "data": args.data,
        "samples_per_s": round(sps, 1),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None,
        "backbone_gflop_per_sample_train": round(6 * macs / 1e9, 3),
        "achieved_backbone_tflops": round(6 * macs * sps / 1e12, 2),
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
