"""``faceforge train CONFIG``: train a recognition model (any mode, one CPU up to torchrun/DDP)."""

from __future__ import annotations

import json

from faceforge.cli._common import add_config_options, bounded


def add_commands(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a face-recognition model from a YAML config",
        description="Train a face-recognition model. Multi-GPU / multi-node: "
        "torchrun --nproc_per_node=N -m faceforge train CONFIG",
    )
    add_config_options(p)
    p.add_argument(
        "--resume", metavar="CKPT", help="resume from a training checkpoint ('auto' = OUTPUT/last.ckpt)"
    )
    p.add_argument("--repeat", type=bounded(int, 1), default=1, metavar="N",
                   help="run N seeds and report mean ± std")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from faceforge.config import load_config
    from faceforge.train.engine import repeat, train

    cfg = load_config(args.config, args.overrides)
    if args.repeat > 1:
        if args.resume:
            from faceforge.errors import UserError

            raise UserError("--resume and --repeat cannot be combined")
        out = repeat(cfg, args.repeat, quiet=args.quiet)
        if out["rank"] == 0:  # the process group is gone by now: rank() would say 0 everywhere
            for key, s in out["summary"].items():
                print(f"{key}: {s['mean']:.6g} ± {s['std']:.3g} (n={s['n']})")
        return 0
    result = train(cfg, resume=args.resume, quiet=args.quiet)
    if result["stopped_by"]:  # SIGTERM/SIGINT: the step finished and the checkpoint is written
        import shlex
        import signal
        import sys

        if result["rank"] == 0:
            again = " ".join(["faceforge train", *([args.config] if args.config else []),
                              *(f"--set {shlex.quote(o)}" for o in args.overrides), "--resume auto"])
            print(f"faceforge: {result['stopped_by']} at step {result['steps']}: checkpoint "
                  f"{result['checkpoint']} written; continue with: {again}", file=sys.stderr)
        # one process exits as a signalled job does (128 + N); under torchrun every rank exits 0
        # once the checkpoint is written: a failed rank makes torchrun kill the others mid-exit
        # (or restart them with --max-restarts) and print a failure report
        return 128 + int(signal.Signals[result["stopped_by"]]) if result["world_size"] == 1 else 0
    if result["rank"] == 0:
        last = result["last"]
        hist = result["history"][-1] if result["history"] else {}
        summary = {
            "steps": result["steps"],
            "seconds": round(result["seconds"], 1),
            "loss": last.get("loss_total"),
            "train_acc": last.get("acc"),
            **{k: v for k, v in hist.items() if k.startswith("val")},
            "checkpoint": result["checkpoint"],
        }
        print(json.dumps(summary))
    return 0
