"""MegaFace-style search: 1,000 probes against 1,000,000 random 512-d distractors with FAISS.

    .venv/bin/python bench/megaface.py [--probes 1000] [--distractors 1000000] [--dim 512] [--threads 1]

Distractors are generated in chunks of 100,000 (seeded unit vectors); the time of generation and of
search are reported separately, along with rank-1 at each size for a synthetic probe set
(100 identities x 10 images).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from faceforge.embed.base import l2_normalize
from faceforge.eval.identification import best_distractor_scores, megaface_rank1, random_distractors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--distractors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    ids = args.probes // 10
    centers = rng.standard_normal((ids, args.dim)).astype(np.float32)
    labels = np.repeat(np.arange(ids), 10)
    probe = l2_normalize(
        centers[labels] + 1.6 * rng.standard_normal((len(labels), args.dim)).astype(np.float32)
    )
    sizes = [s for s in (10, 100, 1_000, 10_000, 100_000, 1_000_000) if s <= args.distractors]

    t = time.perf_counter()
    chunks = list(random_distractors(args.distractors, args.dim, seed=1))
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    best_distractor_scores(probe, chunks, sizes)
    t_search = time.perf_counter() - t
    t = time.perf_counter()
    res = megaface_rank1(probe, labels, chunks, sizes)
    t_total = time.perf_counter() - t
    print(
        f"{len(probe)} probes x {args.distractors} distractors ({args.dim}-d), faiss threads {args.threads}: "
        f"generate {t_gen:.1f} s, search {t_search:.1f} s, megaface_rank1 {t_total:.1f} s"
    )
    print(
        "rank-1 by size: "
        + ", ".join(f"{s:g}: {r:.4f}" for s, r in zip(res["sizes"], res["rank1"], strict=True))
    )


if __name__ == "__main__":
    main()
