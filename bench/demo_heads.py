"""Issue 2's head comparison: the demo recipe (MobileFaceNet, synthetic identities, 10-fold
verification on disjoint identities) with softmax, cosface and arcface, 3 seeds each, on one fixed
step budget (so machine load changes the wall time, not the result).

    python bench/demo_heads.py --steps 56 --out runs/demo_heads
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
    ap.add_argument("--steps", type=int, default=56, help="training steps per run (batch 64)")
    ap.add_argument("--heads", default="softmax,cosface,arcface")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--backbone", default="mobilefacenet")
    ap.add_argument("--out", default="runs/demo_heads")
    args = ap.parse_args()

    from faceforge.demo import run_demo

    out = Path(args.out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for head in args.heads.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            key = f"{head}/seed{seed}"
            if key in results:
                continue
            t0 = time.time()
            s = run_demo(
                out / f"{head}_seed{seed}",
                minutes=0,
                head=head,
                seed=seed,
                quiet=True,
                steps=args.steps,
                backbone=args.backbone,
                test_dir=out / "test",
                say=lambda *_: None,
            )
            results[key] = {
                "accuracy": s["accuracy"],
                "std": s["std"],
                "steps": s["steps"],
                "train_seconds": s["train_seconds"],
                "wall_seconds": time.time() - t0,
            }
            out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=2))
            print(key, json.dumps(results[key]), flush=True)
    print(f"\n{platform.node()} {time.strftime('%Y-%m-%d')} steps={args.steps} backbone={args.backbone}")
    print("| head | accuracy mean ± std over seeds | per-seed | train s (mean) |")
    print("|---|---|---|---|")
    for head in args.heads.split(","):
        rows = [v for k, v in results.items() if k.startswith(head + "/")]
        if not rows:
            continue
        acc = np.array([r["accuracy"] for r in rows])
        per = ", ".join(f"{a:.4f}" for a in acc)
        secs = np.mean([r["train_seconds"] for r in rows])
        print(f"| {head} | {acc.mean():.4f} ± {acc.std():.4f} | {per} | {secs:.0f} |")


if __name__ == "__main__":
    main()
