"""``faceforge fit PHOTOS OUT``: identity folders in; a calibrated, exported model and a report out."""

from __future__ import annotations

from faceforge.cli._common import bounded


def add_commands(sub) -> None:
    p = sub.add_parser(
        "fit", help="photos of people -> aligned data, trained model, evaluation, threshold, ONNX, report",
        description="From PHOTOS/<identity>/<image> to OUT: align, clean, split identities (train/val/"
        "test), pack, train (recipe chosen from the data and printed), calibrate a threshold on the val "
        "identities, evaluate on the test identities (10-fold verification, TAR@FAR, open-set "
        "identification), export ONNX with its card, write OUT/report.md. Each stage is skipped when "
        "OUT already holds it: after an interruption, run the same command again.",
    )
    p.add_argument("photos", help="identity folders: PHOTOS/<identity>/<image> (never modified)")
    p.add_argument("out", help="output folder (created; an earlier run there is continued)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=bounded(float, 0, open_low=True), default=None,
                        help="training budget in minutes (default 15)")
    budget.add_argument("--epochs", type=bounded(int, 1), default=None, help="training budget in epochs")
    p.add_argument("--far", type=bounded(float, 0, 1, open_low=True), default=1e-3,
                   help="false-accept rate of the calibrated threshold (1e-3)")
    p.add_argument("--init", metavar="MODEL", help="fine-tune from this checkpoint")
    p.add_argument("--init-from", choices=["arcface_torch", "facex"],
                   help="--init is a peer's backbone weights (needs --backbone)")
    p.add_argument("--backbone", help="backbone name (default: chosen for the device; see faceforge models)")
    p.add_argument("--val", type=float, default=0.1, help="validation identities: fraction or count (0.1)")
    p.add_argument("--test", type=float, default=0.2, help="test identities: fraction or count (0.2)")
    p.add_argument("--unknown", type=float, default=0.3,
                   help="share of test identities left out of the gallery (open set, 0.3)")
    p.add_argument("--min-images", type=bounded(int, 1), default=2,
                   help="identities with fewer faces are left out (2)")
    p.add_argument("--aligned", action="store_true", help="the photos are aligned face crops: no detection")
    p.add_argument("--detector", default="retinaface", help="face detector for alignment (retinaface)")
    p.add_argument("--workers", type=bounded(int, 0), default=1,
                   help="alignment processes (0 = one per core)")
    p.add_argument("--batch-size", type=bounded(int, 2), default=64)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (stages, sizes, recipe and why); run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from faceforge.fit.pipeline import fit
    from faceforge.fit.plan import FitOptions

    opts = FitOptions(photos=args.photos, out=args.out, minutes=args.minutes, epochs=args.epochs,
                      far=args.far, seed=args.seed, val=args.val, test=args.test, min_images=args.min_images,
                      unknown=args.unknown, init=args.init, init_from=args.init_from, backbone=args.backbone,
                      device=args.device, aligned=args.aligned, detector=args.detector, workers=args.workers,
                      batch_size=args.batch_size)
    fit(opts, dry_run=args.dry_run, quiet=args.quiet)
    return 0
