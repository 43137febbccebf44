"""FaceX-Zoo's masked-face experiment on real faces (celeba299), end to end and reproducible.

    OMP_NUM_THREADS=1 python bench/masked_celeba.py [--work runs/masked_celeba] [--test-ids 99] [--half]
    OMP_NUM_THREADS=1 python bench/masked_celeba.py --train-seed 1     # more seeds, then --summarise

Trainings and masked sets already in WORK are reused, so a second run only evaluates.

1. align every celeba299 photo (RetinaFace, ArcFace 112x112; skipped when WORK/aligned exists);
2. identity-disjoint split, seeded: ``--test-ids`` identities (with >= 2 crops) for the test, the
   rest for training; test gallery = each test identity's first crop, probes = its other crops;
3. masks from the landmark model (``faceforge data mask`` on crops): the masked training set and
   the masked probes (seeds 1 and 2);
4. trains FaceX-Zoo's models 1-3 from ``configs/masked_celeba_{plain,upper_half,masked}.yaml``
   (``faceforge train``), model 4 = 2 and 3 concatenated; ``--half`` adds model 3 trained on a
   half-masked set (``data mask --fraction 0.5``), alone and concatenated with model 2;
5. ``faceforge.eval.masked.masked_identification``: masked probes against the unmasked gallery
   (and the unmasked probes), rank 1/3/5/10; writes WORK/results.json and WORK/results.md.

Files are linked, never copied, from the aligned tree into the split trees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FACEX = {"plain": 27.03, "upper_half": 71.40, "masked": 78.45, "masked+upper_half": 79.20}
# model 4: models 3 and 2 concatenated (faceforge's A+B: each L2-normalised; every model gets the
# 112x112 crop fitted to its input, the upper-half model its top half)
MODELS = ("plain", "upper_half", "masked", "masked+upper_half")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def link_tree(pairs: list[tuple[Path, Path]]) -> None:
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.symlink(src, dst)


def split(aligned: Path, work: Path, test_ids: int, seed: int) -> dict:
    """Identity-disjoint train / gallery / probe trees of symlinks; returns their sizes."""
    ids = sorted(p.name for p in aligned.iterdir() if p.is_dir())
    files = {i: sorted(f for f in (aligned / i).iterdir() if f.suffix.lower() == ".jpg") for i in ids}
    usable = [i for i in ids if len(files[i]) >= 2]
    test = set(np.random.default_rng(seed).permutation(usable)[:test_ids].tolist())
    train = [i for i in ids if i not in test and files[i]]
    pairs = [(f, work / "train_plain" / i / f.name) for i in train for f in files[i]]
    for i in sorted(test):
        pairs.append((files[i][0], work / "gallery" / i / files[i][0].name))
        pairs += [(f, work / "probe" / i / f.name) for f in files[i][1:]]
    link_tree(pairs)
    sizes = {"train_ids": len(train), "train_images": sum(len(files[i]) for i in train),
             "test_ids": len(test), "probes": sum(len(files[i]) - 1 for i in test)}
    (work / "split.json").write_text(json.dumps({**sizes, "test": sorted(test), "seed": seed}, indent=1))
    return sizes


def faceforge(*args: str) -> None:
    cmd = [sys.executable, "-m", "faceforge", *args]
    log(" ".join(cmd[2:]))
    subprocess.run(cmd, check=True)


def summarise(work: Path) -> str:
    """Mean ± sample std over the training seeds found in WORK (results.json, results_sK.json)."""
    runs = [json.loads(f.read_text())["results"] for f in sorted(work.glob("results*.json"))]
    names = [n for n in runs[0] if all(n in r for r in runs)]
    cols = [("masked", k) for k in (1, 3, 5, 10)] + [("unmasked", 1)]
    lines = [f"{len(runs)} training seeds, mean ± std:", "",
             "| model | masked rank-1 | rank-3 | rank-5 | rank-10 | unmasked rank-1 "
             "| FaceX-Zoo MegaFace-mask rank-1 |", "|---|---|---|---|---|---|---|"]
    for name in names:
        cells = []
        for row, k in cols:
            v = np.array([r[name][row][f"rank{k}"] for r in runs])
            cells.append(f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f}")
        facex = f"{FACEX[name]:.2f}" if name in FACEX else "-"
        lines.append(f"| {name} | {' | '.join(cells)} | {facex} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--celeba", default=str(ROOT.parent / "shared/data/celeba299"))
    ap.add_argument("--textures", default=str(ROOT.parent / "shared/data/masks"))
    ap.add_argument("--work", default="runs/masked_celeba")
    ap.add_argument("--aligned", help="an existing aligned celeba299 tree (default WORK/aligned)")
    ap.add_argument("--test-ids", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, help="override the configs' train.epochs")
    ap.add_argument("--train-seed", type=int, default=0,
                    help="the trainings' seed (same split and masks); K > 0: WORK/<model>_sK, results_sK.*")
    ap.add_argument("--half", action="store_true",
                    help="also model 3 on a half-masked training set, alone and with model 2")
    ap.add_argument("--summarise", action="store_true", help="only print mean ± std over the seeds run")
    args = ap.parse_args()
    work = Path(args.work)
    if args.summarise:
        print(summarise(work))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    aligned = Path(args.aligned) if args.aligned else work / "aligned"
    if not aligned.exists():
        faceforge("align", args.celeba, str(aligned), "--quiet")
    sizes = split(aligned, work, args.test_ids, args.seed)
    log(f"split {sizes}")
    tex = ["--textures", args.textures] if Path(args.textures).is_dir() else []
    faceforge("data", "mask", str(work / "train_plain"), str(work / "train_masked"), "--input", "crops",
              "--seed", str(args.seed + 1), "--quiet", *tex)
    faceforge("data", "mask", str(work / "probe"), str(work / "probe_masked"), "--input", "crops",
              "--seed", str(args.seed + 2), "--quiet", *tex)
    models = list(MODELS)
    trainings = {"plain": ("plain", "train_plain"), "upper_half": ("upper_half", "train_plain"),
                 "masked": ("masked", "train_masked")}
    if args.half:  # model 3 on a half-masked training set (each file masked with probability 0.5)
        faceforge("data", "mask", str(work / "train_plain"), str(work / "train_masked_half"), "--input",
                  "crops", "--seed", str(args.seed + 1), "--fraction", "0.5", "--quiet", *tex)
        trainings["masked_half"] = ("masked", "train_masked_half")
        models += ["masked_half", "masked_half+upper_half"]
    suffix = f"_s{args.train_seed}" if args.train_seed else ""
    result_file = work / f"results{suffix}.json"
    old = json.loads(result_file.read_text()) if result_file.exists() else {}
    seconds = old.get("train_seconds", {})
    for name, (config, data) in trainings.items():
        out = work / f"{name}{suffix}"
        if not (out / "last.ckpt").exists():
            t = time.time()
            sets = ["--set", f"output={out}", "--set", f"data.train=folder:{work / data}",
                    "--set", f"seed={args.train_seed}"]
            if args.epochs:
                sets += ["--set", f"train.epochs={args.epochs}"]
            faceforge("train", str(ROOT / f"configs/masked_celeba_{config}.yaml"), *sets, "--quiet")
            seconds[name] = round(time.time() - t, 1)

    from faceforge.embed.loading import load_embedders
    from faceforge.eval.masked import masked_identification

    results = {}
    for name in models:
        parts = [str(work / f"{part}{suffix}" / "last.ckpt") for part in name.split("+")]
        embedder = load_embedders(parts)
        res = masked_identification(embedder, work / "gallery", work / "probe", work / "probe_masked",
                                    cache_dir=work / "cache")
        results[name] = {row: {f"rank{k}": round(100 * res[row][f"rank{k}"], 2) for k in (1, 3, 5, 10)}
                         for row in ("unmasked", "masked")}
        log(f"{name}: {results[name]}")
    lines = ["| model | masked rank-1 | rank-3 | rank-5 | rank-10 | unmasked rank-1 "
             "| FaceX-Zoo MegaFace-mask rank-1 |", "|---|---|---|---|---|---|---|"]
    for name in models:
        m, u = results[name]["masked"], results[name]["unmasked"]
        cells = " | ".join(f"{m[f'rank{r}']:.2f}" for r in (1, 3, 5, 10))
        facex = f"{FACEX[name]:.2f}" if name in FACEX else "-"
        lines.append(f"| {name} | {cells} | {u['rank1']:.2f} | {facex} |")
    table = "\n".join(lines)
    summary = {"split": sizes, "results": results, "train_seconds": seconds,
               "total_seconds": round(time.time() - t0, 1)}
    result_file.write_text(json.dumps(summary, indent=1))
    result_file.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
