"""``faceforge fit`` on real photos, against the plain default config and fine-tuning vs scratch.

    PYTHONPATH=src .venv/bin/python bench/fit.py ../shared/data/celeba299 --out runs/bench_fit \\
        --minutes 15 [--compare-minutes 15] [--pretrain-minutes 8] [--only fit,default,scratch,finetune]

* ``fit``: ``faceforge fit PHOTOS OUT/fit --minutes M`` (resumable: a finished run is read back);
  per-stage seconds, test-identity accuracy, TAR@FAR=1e-3, the calibrated threshold on test.
* ``default``: the same aligned training split (``OUT/fit/data/train.ffpk``) and the same minutes
  through ``configs/mobilefacenet_arcface.yaml`` unchanged but for ``data.train`` and
  ``train.max_minutes``, scored on the same test pairs.
* ``pretrain``: ``mobilefacenet_tiny`` trained on synthetic identities (``synthetic:500x16``) for
  ``--pretrain-minutes`` (not counted in the budget below).
* ``scratch`` / ``finetune``: ``faceforge fit OUT/fit/clean ... --aligned --minutes C`` from scratch and
  with ``--init`` the synthetic checkpoint: the same identities, split and test pairs as ``fit``.

Each part writes ``OUT/bench_<part>.json`` (parts may run as separate processes side by side); the
Markdown table printed at the end reads them all, with the CPU model and flags.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = [f for f in info.get("Flags", "").split() if f.startswith(("avx", "fma", "sse4", "amx"))]
    return (f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPUs, "
            f"flags {' '.join(flags)}")


def run_fit(photos: str, out: Path, minutes: float, **kw) -> dict:
    from faceforge.fit.pipeline import fit
    from faceforge.fit.plan import FitOptions

    t0 = time.time()
    res = fit(FitOptions(photos=photos, out=str(out), minutes=minutes, **kw), quiet=True)
    marks = {p.stem: json.loads(p.read_text()) for p in (out / "fit").glob("*.json")
             if p.stem not in ("plan", "recipe")}
    ev = res["eval"]
    return {"accuracy": ev["accuracy"], "std": ev["accuracy_std"],
            "tar_1e-3": ev["tar_at_far"].get("0.001"),
            "threshold_far_on_test": ev["at_threshold"]["far"], "rank1": ev["rank1"],
            "minutes": minutes, "steps": res["train"]["steps"],
            "seconds": {k: v["seconds"] for k, v in marks.items()},
            "wall_this_call": round(time.time() - t0, 1)}


def run_default(fit_out: Path, out: Path, minutes: float) -> dict:
    from faceforge.config import load_config
    from faceforge.embed.torch_embedder import TorchEmbedder
    from faceforge.eval.verification import evaluate_pairs
    from faceforge.models.checkpoint import load_backbone
    from faceforge.train.engine import train

    cfg = load_config(str(ROOT / "configs" / "mobilefacenet_arcface.yaml"),
                      [f"data.train=packed:{fit_out / 'data' / 'train.ffpk'}",
                       f"train.max_minutes={minutes}", f"output={out}"])
    t0 = time.time()
    r = train(cfg, quiet=True)
    pairs = f"facex:{fit_out / 'sets' / 'test_pairs.txt'}"
    ev = evaluate_pairs(TorchEmbedder(load_backbone(r["checkpoint"])), pairs, flip="sum")
    return {"accuracy": ev["accuracy"], "std": ev["accuracy_std"],
            "tar_1e-3": ev["tar_at_far"]["0.001"]["tar"],
            "minutes": minutes, "steps": r["steps"], "seconds": round(time.time() - t0, 1)}


def pretrain(out: Path, minutes: float) -> str:
    from faceforge.config import load_config
    from faceforge.train.engine import train

    ckpt = out / "last.ckpt"
    if not ckpt.is_file():
        cfg = load_config(str(ROOT / "configs" / "mobilefacenet_arcface.yaml"),
                          ["data.train=synthetic:500x16", "model.backbone=mobilefacenet_tiny",
                           "model.embedding_size=128", f"train.max_minutes={minutes}", f"output={out}"])
        train(cfg, quiet=True)
    return str(ckpt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_fit"))
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--compare-minutes", type=float, default=None, help="scratch/finetune budget")
    parser.add_argument("--pretrain-minutes", type=float, default=8.0)
    parser.add_argument("--only", default="fit,default,pretrain,scratch,finetune")
    args = parser.parse_args()
    only = set(args.only.split(","))
    compare = args.compare_minutes or args.minutes
    fit_out = args.out / "fit"
    results: dict = {}
    if "fit" in only:
        results["fit"] = run_fit(args.photos, fit_out, args.minutes)
    if "default" in only:
        results["default"] = run_default(fit_out, args.out / "default", args.minutes)
    init = pretrain(args.out / "pretrain", args.pretrain_minutes) if only & {"pretrain", "finetune"} else None
    if "scratch" in only:
        results["scratch"] = run_fit(str(fit_out / "clean"), args.out / "scratch", compare, aligned=True)
    if "finetune" in only:
        results["finetune"] = run_fit(str(fit_out / "clean"), args.out / "finetune", compare, aligned=True,
                                      init=init)
    from faceforge.atomic import atomic_write_text

    stamp = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "threads": __import__("torch").get_num_threads()}
    for name, res in results.items():
        atomic_write_text(args.out / f"bench_{name}.json", json.dumps({**res, **stamp}, indent=2) + "\n")
    results = {p.stem[len("bench_"):]: json.loads(p.read_text())
               for p in sorted(args.out.glob("bench_*.json"))}
    print(f"machine: {stamp['machine']}")
    print("| run | budget | steps | test accuracy | TAR@FAR=1e-3 |")
    print("|---|---|---|---|---|")
    for name in ("fit", "default", "scratch", "finetune"):
        if "accuracy" in results.get(name, {}):
            r = results[name]
            budget = r.get("minutes", args.minutes if name in ("fit", "default") else compare)
            tar = "-" if r.get("tar_1e-3") is None else f"{r['tar_1e-3']:.4f}"
            acc = f"{r['accuracy']:.4f} ± {r['std']:.4f}"
            print(f"| {name} | {budget:g} min | {r['steps']} | {acc} | {tar} |")


if __name__ == "__main__":
    main()
