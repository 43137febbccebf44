"""Head comparison in the spirit of FaceX-Zoo's head table: one backbone trained with every
registered margin head (its default options) under one fixed budget of optimiser steps on synthetic
identities, then the 10-fold verification protocol on disjoint identities; mean ± std over seeds.

    python bench/heads.py --backbone mobilefacenet --steps 60 --seeds 0,1,2
    python bench/heads.py --backbone mobilefacenet_tiny --steps 300   # what fits a 2-core CPU

Results go to OUT/results.json (re-running skips finished runs) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="mobilefacenet")
    ap.add_argument("--steps", type=int, default=60, help="optimiser steps per run (batch 64)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--heads", default="", help="comma list (default: every registered head)")
    ap.add_argument("--identities", type=int, default=500)
    ap.add_argument("--out", default="runs/heads")
    args = ap.parse_args()

    from faceforge.demo import demo_config, make_test_set
    from faceforge.embed.torch_embedder import TorchEmbedder
    from faceforge.eval.verification import evaluate_pairs
    from faceforge.models.checkpoint import load_backbone
    from faceforge.registry import MARGINS
    from faceforge.train.engine import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = make_test_set(out / "test")
    heads = args.heads.split(",") if args.heads else MARGINS.names()
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for head in heads:
        for seed in [int(s) for s in args.seeds.split(",")]:
            key = f"{head}/seed{seed}"
            if key in results:
                continue
            cfg = demo_config(
                out / head / f"seed{seed}", 0, head, seed, args.identities, 16, 1.0, args.backbone
            )
            if head not in ("softmax", "cosface", "arcface"):
                cfg.head.options = {}  # every other head with its registered (paper) defaults
            cfg.train.max_steps = args.steps
            cfg.data.workers = 0
            t0 = time.time()
            try:
                res = train(cfg, quiet=True)
                ver = evaluate_pairs(
                    TorchEmbedder(load_backbone(res["checkpoint"])), f"pairs:{pairs}", flip="sum"
                )
                results[key] = {
                    "accuracy": ver["accuracy"],
                    "seconds": time.time() - t0,
                    "loss": res["last"].get("loss_total"),
                }
            except Exception as e:  # a head that diverges is a result too
                results[key] = {"error": f"{type(e).__name__}: {e}", "seconds": time.time() - t0}
            results_path.write_text(json.dumps(results, indent=2))
            print(key, json.dumps(results[key]), flush=True)

    print(
        f"\n{platform.node()} {time.strftime('%Y-%m-%d')} backbone={args.backbone} steps={args.steps} "
        f"batch=64 identities={args.identities} seeds={args.seeds}"
    )
    print("| head | verification accuracy (mean ± std) | per seed | seconds per run |")
    print("|---|---|---|---|")
    rows = []
    for head in heads:
        runs = [v for k, v in results.items() if k.split("/")[0] == head]
        ok = [r["accuracy"] for r in runs if "accuracy" in r]
        secs = np.mean([r["seconds"] for r in runs]) if runs else float("nan")
        if ok:
            rows.append(
                (
                    float(np.mean(ok)),
                    head,
                    f"{np.mean(ok):.4f} ± {np.std(ok):.4f}",
                    ", ".join(f"{a:.4f}" for a in ok),
                    f"{secs:.0f}",
                )
            )
        elif runs:
            rows.append((-1.0, head, "diverged: " + runs[0]["error"][:60], "", f"{secs:.0f}"))
    for _, head, acc, per, secs in sorted(rows, reverse=True):
        print(f"| {head} | {acc} | {per} | {secs} |")


if __name__ == "__main__":
    main()
