"""The main job on built-in data: synthesise identities, train MobileFaceNet + ArcFace for a few
minutes, verify on disjoint identities with the 10-fold protocol, write a report.

``make demo`` runs ``faceforge demo --output runs/demo``; every step is an ordinary library call,
so the demo is also the shortest example of using faceforge from Python.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from faceforge.config import ExperimentConfig, from_dict

# identities offset far from the training ones: disjoint by construction
TEST_OFFSET = 1_000_000


def demo_config(
    output: str | Path,
    minutes: float,
    head: str = "arcface",
    seed: int = 0,
    train_ids: int = 500,
    images: int = 16,
    difficulty: float = 1.0,
    backbone: str = "mobilefacenet",
    batch_size: int = 64,
) -> ExperimentConfig:
    head_options = {
        "softmax": {"s": 30.0},
        "cosface": {"s": 30.0, "m": 0.35},
        "arcface": {"s": 30.0, "m": 0.5},
    }.get(head, {})
    return from_dict(
        ExperimentConfig,
        {
            "seed": seed,
            "output": str(Path(output) / "train"),
            "data": {
                "train": f"synthetic:{train_ids}x{images},seed={seed},difficulty={difficulty}",
                "batch_size": batch_size,
                "flip": True,
                "workers": 1,
            },
            "model": {"backbone": backbone, "embedding_size": 512 if backbone == "mobilefacenet" else 64},
            "head": {"name": head, **head_options},
            "optim": {
                "name": "sgd",
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "schedule": "cosine",
                "warmup_epochs": 0.2,
            },
            "train": {
                "epochs": 1000,
                "max_minutes": minutes,
                "log_every": 10,
                "keep": "last",
                "channels_last": True,
            },
        },
    )


def make_test_set(
    root: Path, identities: int = 200, images: int = 6, seed: int = 0, difficulty: float = 1.0
) -> Path:
    """Disjoint test identities on disk plus an LFW-layout pairs file (10 folds)."""
    from faceforge.data.synthetic import write_dataset, write_pairs

    pairs = root / "pairs.txt"
    if not pairs.exists():
        write_dataset(
            root, identities, images, mode="aligned", offset=TEST_OFFSET, seed=seed, difficulty=difficulty
        )
        write_pairs(root, identities, images, folds=10, offset=TEST_OFFSET, seed=seed)
    return pairs


def run_demo(
    output: str | Path = "runs/demo",
    minutes: float = 3.0,
    head: str = "arcface",
    seed: int = 0,
    train_ids: int = 500,
    images: int = 16,
    difficulty: float = 1.0,
    backbone: str = "mobilefacenet",
    quiet: bool = False,
    say=print,
    steps: int = 0,
    test_dir: str | Path | None = None,
) -> dict[str, Any]:
    from faceforge.atomic import atomic_write_text
    from faceforge.embed.torch_embedder import TorchEmbedder
    from faceforge.eval.thresholds import tar_cell
    from faceforge.eval.verification import evaluate_pairs, summary_line, write_result
    from faceforge.models.checkpoint import load_backbone
    from faceforge.train.engine import train

    out = Path(output)
    t0 = time.time()
    say("[1/3] synthesising 200 disjoint test identities with a 10-fold pairs file")
    pairs = make_test_set(Path(test_dir) if test_dir else out / "test", difficulty=difficulty)
    cfg = demo_config(out, minutes, head, seed, train_ids, images, difficulty, backbone)
    cfg.train.max_steps = steps
    say(f"[2/3] training {backbone} + {head} on {cfg.data.train} for {minutes:g} min")
    result = train(cfg, quiet=quiet)
    if result["stopped_by"]:  # SIGTERM/Ctrl-C: the checkpoint is written; a cut run is not evaluated
        say(f"{result['stopped_by']} at step {result['steps']}: checkpoint {result['checkpoint']} written")
        raise KeyboardInterrupt
    say(f"[3/3] 10-fold verification on {pairs}")
    model = load_backbone(result["checkpoint"])
    from faceforge.io.progress import progress_callback

    ver = evaluate_pairs(TorchEmbedder(model), f"pairs:{pairs}", flip="sum",
                         progress=progress_callback("verify", not quiet))
    write_result(ver, out)
    last = result["last"]
    tar = ver["tar_at_far"]  # n/m where the test set's impostor pairs cannot measure the FAR
    rows = [
        "| model | head | train images seen | train steps | accuracy | std "
        "| TAR@FAR=1e-3 | TAR@FAR=1e-2 | EER |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {backbone} | {head} | {result['steps'] * cfg.data.batch_size} | {result['steps']} | "
        f"{ver['accuracy']:.4f} | {ver['accuracy_std']:.4f} | {tar_cell(tar['0.001'])} | "
        f"{tar_cell(tar['0.01'])} | {ver['eer']:.4f} |",
    ]
    report = [
        "# faceforge demo",
        "",
        f"Synthetic identities: train `{cfg.data.train}`, test {pairs.parent} "
        f"({ver['pairs']} pairs, 10 folds, disjoint identities). Protocol: InsightFace 10-fold "
        "(squared L2 on normalised features, flip-sum fusion).",
        "",
        *rows,
        "",
        f"Training: {result['steps']} steps in {result['seconds']:.0f} s, last loss "
        f"{last.get('loss_total', float('nan')):.3f}, {last.get('samples_per_s', 0):.0f} samples/s.",
        "",
        "![ROC](roc.png)",
        "",
        f"Files: `train/last.ckpt` (checkpoint), `train/metrics.jsonl`, `verification.json`, `roc.png`. "
        f"Wall time {time.time() - t0:.0f} s.",
    ]
    atomic_write_text(out / "report.md", "\n".join(report) + "\n")
    import shutil

    shutil.copyfile(out / "train" / "metrics.jsonl", out / "metrics.jsonl")
    summary = {
        "accuracy": ver["accuracy"],
        "std": ver["accuracy_std"],
        "steps": result["steps"],
        "train_seconds": result["seconds"],
        "wall_seconds": time.time() - t0,
        "report": str(out / "report.md"),
        "checkpoint": result["checkpoint"],
        "head": head,
        "seed": seed,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    say(summary_line(ver))
    return summary
