"""``faceforge synth OUT``: write a synthetic face dataset (identity folders, landmarks, pairs)."""

from __future__ import annotations

from faceforge.cli._common import bounded


def add_commands(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="render a synthetic face dataset with landmarks (and an LFW-style pairs file)",
        description="Render N synthetic identities x K images into OUT/<name>/<name>_<k:04d>.jpg with "
        "OUT/landmarks.csv (88 landmarks, 5 points, box); --pairs writes OUT/pairs.txt in the LFW layout.",
    )
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--identities", "-n", type=bounded(int, 1), required=True, metavar="N",
                   help="number of identities")
    p.add_argument("--images", "-k", type=bounded(int, 1), required=True, metavar="K",
                   help="images per identity")
    p.add_argument("--mode", choices=["aligned", "wild"], default="aligned",
                   help="aligned: 112x112 ArcFace-aligned crops (default); wild: faces in a 256x256 scene")
    p.add_argument("--offset", type=bounded(int, 0), default=0, metavar="J",
                   help="first identity index (default 0)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--difficulty", type=bounded(float, 0), default=1.0, metavar="D",
                   help="nuisance strength; higher also brings identities closer (default 1.0)")
    p.add_argument("--size", type=bounded(int, 8), default=None, metavar="PX",
                   help="image side in pixels (default 112 aligned, 256 wild)")
    p.add_argument("--pairs", type=bounded(int, 0), default=0, metavar="FOLDS",
                   help="also write OUT/pairs.txt with this many folds (LFW layout)")
    p.add_argument("--pairs-per-fold", type=bounded(int, 1), default=None, metavar="P",
                   help="same (and different) pairs per fold (default min(300, possible))")
    p.add_argument("--workers", "-j", type=bounded(int, 1), default=1, metavar="W",
                   help="processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from faceforge.atomic import atomic_write_text
    from faceforge.data.synthetic import make_pairs, write_dataset
    from faceforge.errors import UserError

    if args.pairs < 0:
        raise UserError(f"--pairs: expected a number of folds >= 0, got {args.pairs}")
    text = None
    if args.pairs:  # a bad pairs request fails before anything is rendered
        text = make_pairs(args.identities, args.images, folds=args.pairs, per_fold=args.pairs_per_fold,
                          offset=args.offset, seed=args.seed)
    total = max(args.identities, 0) * max(args.images, 0)
    with tqdm(total=total, unit="img", disable=args.quiet, desc="synth") as bar:
        root = write_dataset(args.out, args.identities, args.images, mode=args.mode, offset=args.offset,
                             seed=args.seed, workers=args.workers, difficulty=args.difficulty, size=args.size,
                             progress=bar.update)
    print(f"wrote {total} images of {args.identities} identities to {root}")
    if text is not None:
        atomic_write_text(root / "pairs.txt", text)
        print(f"wrote {root / 'pairs.txt'}")
    return 0
