"""Every engine and precision side by side on this CPU (issue 30 §5): ONNX Runtime fp32 (the
reference column), OpenVINO fp32, OpenVINO bf16 (where the CPU has native bf16) and ``auto`` (what
``engine: auto`` picks per network here), in one run.

    taskset -c 0 .venv/bin/python bench/engines.py [--ckpt trained.ckpt] [--reps 20] [--celeba 200]

Rows: detect + align + embed per face at batch 1 on a 640x480 frame and on the full-size phone photo
``obama3.jpg`` (RetinaFace at 640 + MobileFaceNet); embedding throughput at batch 64; align + embed
over the first N celeba299 images (detect, warp, embed in chunks of 32); and PyTorch on the same core:
MobileFaceNet inference at batch 64 and a training step (forward + backward, the demo's batch of 64)
in fp32, bf16 autocast and bf16 autocast + channels_last, with the demo's steps in its 3-minute
budget. Every engine gets one thread (ONNX Runtime / OpenVINO / torch / OpenCV); medians of wall
and CPU (process) ms are printed, since the machine may be shared: for a one-thread pipeline CPU time
is what an idle core would take, and the ratios within one run are what to compare.

The embedder is a random MobileFaceNet unless ``--ckpt`` gives a trained one: speed does not depend
on the weights, but whether ``auto`` may use bf16 for an embedder does (its probe must keep cosine
>= 0.99995 to fp32), so pass a trained checkpoint to see auto's real choice. A "bf16" column runs
every network in bf16, detectors included, which misses the 1-pixel tolerance there (see
docs/benchmarks.md): it is shown for speed only; ``auto`` never runs a detector in bf16.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_latency import PHOTOS, _timed, frame_640x480  # noqa: E402

CELEBA = PHOTOS.parent / "celeba299"
ENGINES = ("onnxruntime", "openvino:fp32", "openvino:bf16", "auto")


def machine() -> str:
    from faceforge.runtime import cpu

    s = cpu.summary()
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").is_file() else "?"
    return (f"CPU {s['model']} ({s['cores']} cores, {platform.machine()}), features "
            f"{' '.join(s['features'])}; native bf16 {s['bf16']}; OpenVINO capabilities "
            f"{' '.join(s['openvino_capabilities'])}; "
            f"{', '.join(f'{k} {v}' for k, v in s['versions'].items())}; "
            f"load average {' '.join(load)}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def analyzers(onnx_path: Path, engines: tuple[str, ...]) -> dict:
    from faceforge import FaceAnalyzer
    from faceforge.embed.onnx_embedder import OnnxEmbedder

    out = {}
    for engine in engines:
        emb = OnnxEmbedder(onnx_path, "cpu", threads=1, engine=engine)
        fa = FaceAnalyzer(model=emb, threshold=0.5, engine=engine, threads=1)
        fa.flip = "none"
        out[engine] = fa
    return out


def cells(values: dict, ref: str = "onnxruntime", unit: str = "ms", higher: bool = False) -> str:
    """``value (ratio to the reference)`` per engine; ratio > 1 means faster than the reference."""
    base = values[ref]
    out = []
    for v in values.values():
        ratio = (v / base) if higher else (base / v)
        out.append(f"{v:.1f} ({ratio:.2f}x)" if unit else f"{v:.0f} ({ratio:.2f}x)")
    return " | ".join(out)


def torch_rows(reps: int, model: str) -> None:
    import torch

    from faceforge.models import build_backbone
    from faceforge.train.precision import _step_seconds

    torch.manual_seed(0)
    net = build_backbone(model)
    x = torch.randn(64, 3, 112, 112)
    variants = {"fp32": (False, False), "bf16": (True, False), "bf16 + channels_last": (True, True)}
    infer = {}
    for name, (bf16, cl) in variants.items():
        fmt = torch.channels_last if cl else torch.contiguous_format
        net_v, x_v = net.eval().to(memory_format=fmt), x.contiguous(memory_format=fmt)

        def run(net_v=net_v, x_v=x_v, bf16=bf16):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                net_v(x_v)

        infer[name] = 64000 / _timed(run, max(3, reps // 5))[1]
    print("| PyTorch MobileFaceNet inference, batch 64, faces per CPU-second | "
          + " | ".join(f"{k}: {v:.0f} ({v / infer['fp32']:.2f}x)" for k, v in infer.items()) + " |")
    steps = {}
    for name, (bf16, cl) in variants.items():
        steps[name] = _step_seconds(net.train(), x, bf16, cl, time.process_time)
    print("| PyTorch training step (fwd+bwd, batch 64), CPU s / steps in the demo's 3 min | "
          + " | ".join(f"{k}: {v:.2f} s, {180 / v:.0f} steps ({steps['fp32'] / v:.2f}x)"
                       for k, v in steps.items()) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--ckpt", default=None, help="a trained faceforge checkpoint (default: random init)")
    ap.add_argument("--model", default="mobilefacenet", help="backbone when --ckpt is not given")
    ap.add_argument("--celeba", type=int, default=200, help="celeba299 images for the folder row (0: skip)")
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()

    import cv2
    import torch

    from faceforge.deploy.export import export_onnx
    from faceforge.io.images import read_image
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint
    from faceforge.runtime import cpu

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    engines = tuple(e for e in ENGINES if e != "openvino:bf16" or cpu.has_bf16())
    print(machine())
    print(f"command: {' '.join(sys.argv)} (affinity: cores {sorted(__import__('os').sched_getaffinity(0))})")
    with tempfile.TemporaryDirectory() as td:
        ckpt, onnx_path = Path(args.ckpt or Path(td) / "m.ckpt"), Path(td) / "m.onnx"
        if not args.ckpt:
            torch.manual_seed(0)
            save_checkpoint(ckpt, build_backbone(args.model))
        export_onnx(ckpt, onnx_path, log=lambda *_: None)
        fas = analyzers(onnx_path, engines)
        ref = fas["onnxruntime"]
        auto = fas["auto"]
        print(f"embedder {'trained ' + str(args.ckpt) if args.ckpt else args.model + ' (random init)'}; auto "
              f"picked: detector {auto.detector.session.label}, embedder {auto.embedder.session.label} "
              f"({auto.embedder.session.reason}); 1 thread everywhere; median of {args.reps}; CPU ms "
              f"(ratio to ONNX Runtime fp32: > 1 is faster)")
        print()
        print("| row | " + " | ".join(engines) + " |")
        print("|---|" + "---|" * len(engines))
        obama = read_image(PHOTOS / "obama.jpg")
        images = {"frame 640x480": frame_640x480(obama, ref.detect(obama)[0].box),
                  "obama3.jpg 1434x2333": read_image(PHOTOS / "obama3.jpg")}
        for name, img in images.items():
            total = {e: _timed(lambda fa=fa, img=img: fa.embed(img), args.reps)[1] for e, fa in fas.items()}
            print(f"| detect+align+embed, {name}, CPU ms | {cells(total)} |", flush=True)
            crop = ref.align(img, ref.detect(img)[0])[None]
            emb = {e: _timed(lambda fa=fa, crop=crop: fa.embed_crops(crop), args.reps)[1]
                   for e, fa in fas.items()}
            print(f"| embed only, batch 1, {name}, CPU ms | {cells(emb)} |", flush=True)
        crop = ref.align(obama, ref.detect(obama)[0])
        crops64 = np.ascontiguousarray(np.repeat(crop[None], 64, axis=0))
        tput = {e: 64000 / _timed(lambda fa=fa: fa.embedder.embed(crops64), max(3, args.reps // 4))[1]
                for e, fa in fas.items()}
        print("| embedding throughput, batch 64, faces per CPU-second | "
              f"{cells(tput, unit='', higher=True)} |", flush=True)
        if args.celeba:
            from faceforge.align.transform import warp_face

            paths = sorted(CELEBA.glob("*/*.jpg"))[: args.celeba]
            imgs = [read_image(p) for p in paths]
            rate = {}
            for e, fa in fas.items():
                t = time.process_time()
                crops = [warp_face(img, f.landmarks, size=112)
                         for img in imgs for f in fa.detector.detect(img)[:1]]
                for k in range(0, len(crops), 32):
                    fa.embedder.embed(np.stack(crops[k : k + 32]))
                rate[e] = len(imgs) / (time.process_time() - t)
            print(f"| align + embed {len(paths)} celeba299 images, images per CPU-second | "
                  f"{cells(rate, unit='', higher=True)} |", flush=True)
    if not args.skip_torch:
        print()
        torch_rows(args.reps, args.model)
    print()
    print("lscpu flags: " + subprocess.run(["sh", "-c", "lscpu | grep -i '^flags'"], capture_output=True,
                                           text=True).stdout.split(":", 1)[-1].strip())


if __name__ == "__main__":
    main()
