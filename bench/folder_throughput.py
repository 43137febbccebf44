"""Images/s of ``faceforge align`` and ``faceforge embed`` over celeba299 with 1 and 2 workers
(issue 16 §2).

    .venv/bin/python bench/folder_throughput.py [--images 400] [--workers 1,2]

The first ``--images`` images of ``../shared/data/celeba299`` (identity by identity) are linked into a
temporary identity tree. ``align``: RetinaFace (det_size 640, 8 images detected per batch) + 112x112
ArcFace crops written as JPEG. ``embed``: detect + align + MobileFaceNet on ONNX Runtime (a randomly
initialised checkpoint exported with faceforge's export_onnx: speed does not depend on the weights),
32 images per chunk, the chosen faces of a chunk embedded in one batch; ``embed batch 1`` is the
former one-image-at-a-time path (chunk 1) for comparison. Intra-op threads follow the workers
(cores // workers): 1 worker runs ONNX Runtime on every core, so a 1-thread single process is
measured too as the baseline that 2 workers should double. ``steady`` rows time the embedding
after the first chunk is back, without the workers' start-up. Wall time and the CPU seconds of the
process and its workers are both printed: on a shared machine wall time depends on what else runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

CELEBA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba299"


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(label: str, n: int, fn) -> None:
    w, c = time.perf_counter(), _cpu()
    fn()
    wall, cpu = time.perf_counter() - w, _cpu() - c
    print(f"| {label} | {n} | {wall:.1f} | {cpu:.1f} | {n / wall:.1f} | {n / cpu:.1f} |", flush=True)


def _steady(files: list[str], model: str, workers: int) -> None:
    """Images/s after the first chunk is back, i.e. without the workers' start-up (model loading)."""
    from faceforge.deploy.batch import CHUNK, faces_of_files

    t0 = time.perf_counter()
    first = None
    for k, _ in enumerate(faces_of_files(files, model, workers=workers)):
        if k == CHUNK - 1:
            first = time.perf_counter()
    done = time.perf_counter()
    n = len(files) - CHUNK
    print(f"| embed, {workers} worker(s), steady state after the first chunk "
          f"(start-up {first - t0:.1f} s) | {n} | {done - first:.1f} | - | {n / (done - first):.1f} | - |",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: align, embed, steady, batch1")
    args = ap.parse_args()

    import torch

    from faceforge import FaceAnalyzer
    from faceforge.align.folder import align_folder
    from faceforge.deploy.commands import embed_files
    from faceforge.deploy.export import export_onnx
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        src, files = td / "src", []
        for ident in sorted(d for d in CELEBA.iterdir() if d.is_dir()):
            for f in sorted(ident.glob("*.jpg")):
                if len(files) == args.images:
                    break
                (src / ident.name).mkdir(parents=True, exist_ok=True)
                os.symlink(f, src / ident.name / f.name)
                files.append(str(src / ident.name / f.name))
        torch.manual_seed(0)
        save_checkpoint(td / "m.ckpt", build_backbone("mobilefacenet"))
        export_onnx(td / "m.ckpt", td / "m.onnx", log=lambda *_: None)
        n = len(files)
        onnx = str(td / "m.onnx")
        one_thread = FaceAnalyzer(model=onnx, threads=1)  # detector and embedder 1 thread
        one_thread.embedder.set_threads(1)
        print(f"celeba299: {n} images, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at start")
        print()
        print("| run | images | wall s | CPU s (all processes) | images/s wall | images per CPU-second |")
        print("|---|---|---|---|---|---|")
        for workers in (int(w) for w in args.workers.split(",")):
            if "align" not in skip:
                _measure(f"align, {workers} worker(s)", n,
                         lambda w=workers: align_folder(src, td / f"aligned{w}", workers=w))
            if "embed" not in skip:
                _measure(f"embed, {workers} worker(s), batch 32", n,
                         lambda w=workers: embed_files(files, onnx, td / f"e{w}.npz", workers=w))
            if "embed" not in skip and workers == 1:
                _measure("embed, 1 worker, 1 thread (baseline for scaling), batch 32", n,
                         lambda: embed_files(files, one_thread, td / "e1t1.npz"))
            if "steady" not in skip:
                _steady(files, onnx, workers)
            if "batch1" not in skip and workers == 1:
                _measure("embed, 1 worker, batch 1 (one image at a time)", n,
                         lambda: embed_files(files, onnx, td / "e1b1.npz", batch=1))


if __name__ == "__main__":
    main()
