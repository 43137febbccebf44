"""``faceforge export | card | calibrate``: thin commands over ``faceforge.deploy``."""

from __future__ import annotations

from faceforge.cli._common import add_device_option, bounded, resolve_device


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (fp32/fp16/int8) or TorchScript + card")
    p.add_argument("checkpoint", metavar="CKPT", help="faceforge checkpoint")
    p.add_argument("--onnx", metavar="OUT.onnx", help="ONNX output (its card is written as OUT.yaml)")
    p.add_argument("--torchscript", metavar="OUT.ts", help="TorchScript output (card embedded and beside it)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="half-precision weights (float32 inputs/outputs)")
    prec.add_argument("--int8", action="store_true", help="int8 static quantisation (see --calib)")
    p.add_argument(
        "--calib",
        metavar="SOURCE",
        help="int8 calibration images, e.g. synthetic:50x4 or folder:DIR (default synthetic:50x4); "
        "'dynamic' for dynamic quantisation",
    )
    p.add_argument("--pairs", metavar="SOURCE", help="verification pairs: report fp32 vs exported accuracy")
    p.add_argument("--far", type=bounded(float, 0, 1, open_low=True),
                   help="with --pairs: store the threshold at this FAR (e.g. 1e-3)")
    p.add_argument("--flip", choices=("sum", "concat", "none"), help="flip fusion for --pairs (default card)")
    p.set_defaults(func=export)

    p = sub.add_parser("card", help="show the model card a model is fed by, and where it came from",
                       description="Load MODEL as every command does and print the card in use (the one "
                                   "given with --card, one beside the model, the ONNX metadata, the "
                                   "checkpoint's record, or one inferred from the graph) and its origin.")
    p.add_argument("model", metavar="MODEL", help="checkpoint, ONNX, TorchScript or a spec (dlib:resnet)")
    p.add_argument("--card", metavar="CARD.yaml", help="check this card against the model instead")
    p.add_argument("--out", metavar="CARD.yaml", help="write the card here (.yaml or .json)")
    p.add_argument("--json", action="store_true", help="print JSON (model, origin, card, notes)")
    p.set_defaults(func=card)

    p = sub.add_parser("calibrate", help="a same-person threshold at one or more FARs, kept with the model",
                       description="Embed verification pairs (a pair source, or pairs drawn from an identity "
                       "folder) with MODEL and choose the cosine threshold at each --far that the impostor "
                       "pairs measure (at least 10/FAR of them). The first FAR's threshold is kept: in a "
                       "checkpoint, in the card given or beside the model file (ONNX, TorchScript), or in "
                       "--card-out (dlib:resnet).")
    p.add_argument("model", metavar="MODEL", help="checkpoint, ONNX, TorchScript or dlib:resnet")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", metavar="SOURCE", help="pairs, e.g. pairs:DIR/pairs.txt or facex:LIST")
    src.add_argument("--folder", metavar="DIR",
                     help="identity folder (DIR/<identity>/<images>): draw identity-disjoint pairs, seeded")
    p.add_argument("--per-fold", type=bounded(int, 1), default=1000, metavar="N",
                   help="with --folder: same and different pairs drawn per fold, 10 identity-disjoint "
                   "folds (default 1000: 10,000 impostor pairs measure FAR >= 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="with --folder: the draw's seed (default 0)")
    p.add_argument("--far", type=far_list, default=[1e-3], metavar="FAR[,FAR...]",
                   help="target false-accept rates, e.g. 1e-3 or 1e-2,1e-3,1e-4; the first is kept "
                   "(default 1e-3)")
    p.add_argument("--flip", choices=("sum", "concat", "none"), default=None,
                   help="flip fusion (default: the model card's)")
    p.add_argument("--card", metavar="CARD.yaml", help="the model's card (the threshold is written into it)")
    p.add_argument("--card-out", metavar="CARD.yaml",
                   help="write the threshold to this card instead (needed for dlib:resnet)")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")
    add_device_option(p)
    p.set_defaults(func=calibrate)


def export(args) -> int:
    from faceforge.errors import UserError

    if not args.onnx and not args.torchscript:
        raise UserError("export: give --onnx OUT.onnx and/or --torchscript OUT.ts")
    if args.onnx:
        from faceforge.deploy.export import export_onnx

        precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
        export_onnx(args.checkpoint, args.onnx, precision, args.calib, args.pairs, args.far, args.flip)
    elif args.fp16 or args.int8 or args.pairs:
        raise UserError("--fp16/--int8/--pairs apply to --onnx exports")
    if args.torchscript:
        from faceforge.deploy.export import export_torchscript

        export_torchscript(args.checkpoint, args.torchscript)
    return 0


def card(args) -> int:
    import json

    import yaml

    from faceforge.embed.card import save_card
    from faceforge.embed.loading import load_embedder

    embedder = load_embedder(args.model, "cpu", args.card)  # exactly what every command would use
    model_card = embedder.card
    if model_card is None:
        print(f"{args.model}: no card; fed as {embedder.meta}")
        return 0
    fields = {k: v for k, v in model_card.to_dict().items() if k != "notes"}
    if args.out:
        save_card(model_card, args.out)
        print(f"wrote {args.out} (card: {embedder.card_origin})")
    elif args.json:
        print(json.dumps({"model": args.model, "origin": embedder.card_origin, "card": fields,
                          "notes": model_card.notes}))
    else:
        print(f"# model: {args.model}\n# card: {embedder.card_origin}")
        print(yaml.safe_dump(fields, sort_keys=False, default_flow_style=None), end="")
        for note in model_card.notes:
            print(f"# note: {note}")
    return 0


def far_list(text: str) -> list[float]:
    """``1e-3`` or ``1e-2,1e-3``: rates in (0, 1)."""
    import argparse

    try:
        fars = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates such as 1e-3 or 1e-2,1e-3, got '{text}'") from None
    if not fars or not all(0 < f < 1 for f in fars):
        raise argparse.ArgumentTypeError(f"expected rates in (0, 1), got '{text}'")
    return fars


def calibrate(args) -> int:
    import json

    from faceforge.deploy.calibration import calibrate_model

    res = calibrate_model(args.model, args.pairs, args.folder, args.far, args.flip,
                          resolve_device(args.device), card=args.card, card_out=args.card_out,
                          per_fold=args.per_fold, seed=args.seed)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['source']}: {res['same']} genuine + {res['different']} impostor pairs "
          f"(smallest measurable FAR {res['smallest_far']:.2g}: 10/impostor pairs), flip {res['flip']}")
    for row in res["at_far"]:
        if row["measurable"]:
            print(f"  FAR {row['far']:g}: threshold {row['threshold']:.4f}  TAR {row['tar']:.4f}  "
                  f"measured FAR {row['measured_far']:.2g} ({row['false_accepts']} false accepts)")
        else:
            print(f"  FAR {row['far']:g}: {row['reason']}")
    print(f"kept threshold {res['threshold']:.4f} (cosine, FAR {res['far']:g}) in {res['stored_in']}")
    return 0
