"""Peak memory of the HTTP service under concurrent large uploads (loopback, bounded).

    OMP_NUM_THREADS=1 .venv/bin/python bench/service_memory.py --uploads 8 --side 6000

A real uvicorn server in this process serves ``mobilefacenet_tiny`` (random init); ``--uploads``
client threads each POST one ``side`` x ``side`` flat-grey PNG (small on the wire, ``side``^2 x 3
bytes once decoded) to /v1/embed at the same time (the detector finds no face: 422). A sampler
thread reads this process's resident set size every 5 ms; prints the peak growth over the idle
server, the wall time and the status codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--uploads", type=int, default=8)
    p.add_argument("--side", type=int, default=6000)
    args = p.parse_args()

    import httpx
    import torch

    from faceforge.deploy.commands import create_gallery
    from faceforge.deploy.service import BackgroundServer, ServiceConfig, create_app
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint
    from test_service import KEY, png_bytes

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="service_mem_"))
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.ckpt", build_backbone("mobilefacenet_tiny"))
    create_gallery(root / "g", root / "tiny.ckpt")
    app = create_app(ServiceConfig(gallery=str(root / "g"), model=str(root / "tiny.ckpt"), api_key=KEY,
                                   max_pixels=args.side**2, max_body_bytes=50 * 2**20))
    big = png_bytes(np.full((args.side, args.side, 3), 100, np.uint8))
    peak, stop = [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    def upload(_):
        with httpx.Client(base_url=url, timeout=600, headers={"X-API-Key": KEY}) as c:
            return c.post("/v1/embed", files={"image": ("big.png", big)}).status_code

    with BackgroundServer(app) as url:
        upload(0)  # warm-up: the detector's first run allocates its arena
        base = rss_mb()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t = time.perf_counter()
        with ThreadPoolExecutor(args.uploads) as pool:
            codes = list(pool.map(upload, range(args.uploads)))
        wall = time.perf_counter() - t
        stop.set()
        sampler.join()
    service = getattr(app, "service", None)
    print(json.dumps({"uploads": args.uploads, "side": args.side, "png_kb": round(len(big) / 1024, 1),
                      "decoded_mb_each": round(args.side**2 * 3 / 2**20, 1), "idle_rss_mb": round(base),
                      "peak_growth_mb": round(peak[0] - base), "wall_s": round(wall, 2),
                      "codes": sorted(set(codes)),
                      "max_decodes": getattr(getattr(service, "config", None), "max_decodes", None),
                      "peak_decoding": getattr(service, "peak_decoding", None)}))


if __name__ == "__main__":
    main()
