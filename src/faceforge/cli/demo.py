"""``faceforge demo``: the main job on built-in synthetic data (what ``make demo`` runs)."""

from __future__ import annotations

from faceforge.cli._common import bounded


def add_commands(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise faces, train MobileFaceNet+ArcFace for a few minutes, verify, write a report",
    )
    p.add_argument("--output", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--minutes", type=bounded(float, 0, open_low=True), default=3.0,
                   help="training budget in minutes (default 3)")
    p.add_argument("--head", default="arcface", help="margin head (default arcface)")
    p.add_argument("--backbone", default="mobilefacenet", help="backbone (default mobilefacenet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--identities", type=bounded(int, 1), default=500,
                   help="training identities (default 500)")
    p.add_argument("--images", type=bounded(int, 1), default=16,
                   help="images per training identity (default 16)")
    p.add_argument("--difficulty", type=bounded(float, 0), default=1.0,
                   help="synthetic nuisance strength (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from faceforge.demo import run_demo

    s = run_demo(
        args.output,
        args.minutes,
        args.head,
        args.seed,
        args.identities,
        args.images,
        args.difficulty,
        args.backbone,
        quiet=args.quiet,
    )
    print(
        f"demo: verification accuracy {s['accuracy']:.4f} ± {s['std']:.4f} "
        f"after {s['steps']} steps ({s['train_seconds']:.0f} s); report: {s['report']}"
    )
    return 0
