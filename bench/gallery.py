"""Gallery enrol and search latency at 10k / 100k / 1M identities (synthetic unit embeddings).

    .venv/bin/python bench/gallery.py --sizes 10000 100000 1000000 --dim 512

Per size: bulk load (one image per identity, 100k-row transactions), a checkpoint (flat up to
``--ivf-threshold`` images, IVF beyond), re-open time, single-identity enrolment latency (3 images,
one transaction + index update; checkpoints timed separately), single-query top-5 search latency
and recall@1 of noisy probes (cosine ~0.9 to their enrolled vector).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def unit(rng, n, dim):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench(n: int, dim: int, root: Path, ivf_threshold: int, nprobe: int) -> dict:
    from faceforge.deploy.gallery import Gallery

    rng = np.random.default_rng(n)
    path = root / f"g{n}"
    g = Gallery.create(path, "bench", dim, ivf_threshold=ivf_threshold, nprobe=nprobe,
                       checkpoint_every=10 ** 9)
    t = time.perf_counter()
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        g.enroll_many([f"id{i}" for i in range(start, start + m)], unit(rng, m, dim))
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    g.checkpoint()
    ckpt_s = time.perf_counter() - t
    g.close()
    t = time.perf_counter()
    g = Gallery(path)
    open_s = time.perf_counter() - t
    kind = g.kind
    # probes: noisy copies of enrolled vectors (regenerate the same stream for the first chunk)
    first = unit(np.random.default_rng(n), min(n, 100_000), dim)
    pick = rng.choice(len(first), 200, replace=False)
    noise = unit(rng, 200, dim)
    probes = first[pick] * 0.9 + noise * np.sqrt(1 - 0.81)
    search_ms, hits = [], 0
    for i, q in enumerate(probes):
        t = time.perf_counter()
        res = g.search(q, k=5)
        search_ms.append((time.perf_counter() - t) * 1000)
        hits += res[0][0].identity == f"id{pick[i]}"
    enroll_ms = []
    for i in range(50):
        t = time.perf_counter()
        g.enroll(f"new{i}", unit(rng, 3, dim))
        enroll_ms.append((time.perf_counter() - t) * 1000)
    g.close()
    shutil.rmtree(path)
    return {"identities": n, "dim": dim, "index": kind, "bulk_load_s": round(load_s, 1),
            "checkpoint_s": round(ckpt_s, 1), "open_s": round(open_s, 2),
            "enroll_ms_p50": round(float(np.percentile(enroll_ms, 50)), 2),
            "enroll_ms_p99": round(float(np.percentile(enroll_ms, 99)), 2),
            "search_ms_p50": round(float(np.percentile(search_ms, 50)), 2),
            "search_ms_p99": round(float(np.percentile(search_ms, 99)), 2),
            "recall_at_1": hits / len(probes)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--ivf-threshold", type=int, default=100_000)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads (default 1)")
    p.add_argument("--root", default=None, help="scratch folder (default a temp dir)")
    args = p.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    root = Path(args.root or tempfile.mkdtemp(prefix="gallery_bench_"))
    for n in args.sizes:
        print(json.dumps(bench(n, args.dim, root, args.ivf_threshold, args.nprobe)), flush=True)


if __name__ == "__main__":
    main()
