"""Load test of the HTTP service: N identify requests from W threads over loopback (httpx).

    .venv/bin/python bench/service_load.py --requests 2000 --workers 8

A real uvicorn server in this process (a thread) serves ``mobilefacenet_tiny`` (random init, saved
as a faceforge checkpoint) over a gallery of 200 synthetic identities; each request uploads a
pre-aligned 112x112 synthetic PNG (multipart, ``aligned=true``) and gets the top-3 identities.
Prints p50/p99 latency, throughput, the error count, the process's CPU seconds during the load
(wall time is distorted on a shared machine) and, with the micro-batching service, how many
embedding passes served the requests and the largest batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--identities", type=int, default=200)
    args = p.parse_args()

    import torch

    from faceforge.data.synthetic import SyntheticFaces
    from faceforge.deploy.commands import analyzer_model_id, faces_in, load_analyzer
    from faceforge.deploy.gallery import Gallery
    from faceforge.deploy.service import BackgroundServer, ServiceConfig, create_app
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint
    from test_service import KEY, png_bytes, run_load

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="service_bench_"))
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.ckpt", build_backbone("mobilefacenet_tiny"))
    analyzer = load_analyzer(root / "tiny.ckpt")
    synth = SyntheticFaces(seed=0)
    imgs = [synth.render(j, 0)[0] for j in range(args.identities)]
    embs = np.stack([faces_in(analyzer, im, aligned=True)[0].embedding for im in imgs])
    with Gallery.create(root / "g", analyzer_model_id(analyzer), embs.shape[1]) as g:
        g.enroll_many([f"id{j}" for j in range(args.identities)], embs)
    app = create_app(ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt"), api_key=KEY),
                     analyzer=analyzer)
    payloads = [png_bytes(synth.render(j, 1)[0]) for j in range(min(50, args.identities))]
    with BackgroundServer(app) as url:
        run_load(url, payloads, 16, args.workers)  # warm-up
        batcher = app.service.batcher
        passes0 = batcher.batches
        t, cpu = time.perf_counter(), time.process_time()
        res = run_load(url, payloads, args.requests, args.workers)
        res["wall_s"] = round(time.perf_counter() - t, 2)
        res["cpu_s"] = round(time.process_time() - cpu, 2)
        res["embed_passes"], res["largest_batch"] = batcher.batches - passes0, batcher.largest
    res["throughput_rps"] = round(res["requests"] / res["wall_s"], 1)
    res["workers"] = args.workers
    res["p50_ms"], res["p99_ms"] = round(res["p50_ms"], 1), round(res["p99_ms"], 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
