"""Time the 10-fold verification of 6000 pairs (LFW size) on one core.

    .venv/bin/python bench/verification.py [--pairs 6000] [--dim 512] [--repeat 20]

Uses ../shared/reference/verification_lfw6000.npz when present (real protocol layout), else
random pairs. Prints the median wall time of ``verify_embeddings`` for both protocols.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from faceforge.eval.verification import verify_embeddings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    ref = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "verification_lfw6000.npz"
    if ref.is_file() and args.pairs == 6000:
        data = np.load(ref)
        emb, issame, what = data["embeddings"], data["issame"], f"{ref.name} (6000 pairs, 32-d)"
    else:
        rng = np.random.default_rng(0)
        emb = rng.standard_normal((2 * args.pairs, args.dim)).astype(np.float32)
        issame = rng.random(args.pairs) < 0.5
        what = f"random ({args.pairs} pairs, {args.dim}-d)"
    for protocol in ("insightface", "facex"):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            verify_embeddings(emb, issame, protocol=protocol)
            times.append(time.perf_counter() - t)
        print(
            f"{what} protocol={protocol}: median {1000 * statistics.median(times):.1f} ms, "
            f"min {1000 * min(times):.1f} ms over {args.repeat} runs"
        )


if __name__ == "__main__":
    main()
