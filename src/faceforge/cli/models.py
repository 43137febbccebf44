"""``faceforge models`` (the backbone zoo with its complexity) and ``faceforge import``."""

from __future__ import annotations

import json

from faceforge.cli._common import bounded


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list registered backbones with params and MACs",
                       description="Every registered backbone: input size, parameters and MACs at that "
                                   "size (counted, see docs/models.md), and published figures where known. "
                                   "These are architectures: none ships trained weights.")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these backbones (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(func=_models)

    p = sub.add_parser("import", help="convert a peer backbone checkpoint into a faceforge checkpoint",
                       description="Convert an arcface_torch backbone.pth, a FaceX-Zoo, sphereface_pytorch "
                                   "or OpenSphere checkpoint into a faceforge checkpoint that "
                                   "faceforge.models.checkpoint.load_backbone() loads with one call; "
                                   "with --to, the reverse (a faceforge checkpoint as the peer's file).")
    p.add_argument("src", help="peer checkpoint file (with --to: a faceforge checkpoint)")
    peers = ["arcface_torch", "facex", "sphereface", "opensphere"]
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--from", dest="source", choices=peers, help="peer framework of SRC")
    way.add_argument("--to", dest="target", choices=peers,
                     help="write SRC's backbone as this peer's checkpoint (arcface_torch: backbone.pth)")
    p.add_argument("--backbone", help="faceforge backbone name (see 'faceforge models'); needed with --from")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--embedding-size", type=bounded(int, 1), default=None,
                   help="embedding width (default: inferred from the checkpoint)")
    p.add_argument("--input-size", metavar="HxW", default=None,
                   help="input size the peer trained at, e.g. 112x96 for FaceX-Zoo's MobileFaceNet "
                        "(default: the backbone's own)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="another backbone build option (YAML value), e.g. --option width=32; repeatable")
    p.set_defaults(func=_import)


NO_WEIGHTS = ("none of these architectures ships trained weights: train one (faceforge train NAME, "
              "recipes: faceforge config --recipes) or convert a peer checkpoint (faceforge import)")


def _models(args) -> int:
    from faceforge.io.progress import progress_callback
    from faceforge.models.complexity import format_table, registry_table

    rows = registry_table(args.names or None, progress=progress_callback("counting MACs", unit="model"))
    if args.json:
        for r in rows:
            print(json.dumps(r.as_dict()))
    else:
        print(format_table(rows))
        print(NO_WEIGHTS)
    return 0


def _import(args) -> int:
    from faceforge.errors import UserError
    from faceforge.models.convert import export_checkpoint, import_checkpoint

    if args.target:
        r = export_checkpoint(args.src, args.target, args.out)
        note = "".join(f"; note: {k} is {a:g} here, {b:g} in {args.target}'s own input pipeline"
                       for k, (a, b) in r["normalisation_differs"].items())
        print(f"wrote {args.out}: {r['backbone']} as {args.target} ({r['entries']} entries){note}")
        return 0
    if not args.backbone:
        raise UserError("--backbone: needed with --from (which faceforge backbone the weights are)")
    options = build_options(args)
    summary = import_checkpoint(args.src, args.source, args.backbone, args.out, **options)
    m = summary["meta"]
    h, w = m["input_size"]
    print(f"wrote {args.out}: {summary['backbone']} ({summary['entries']} entries, "
          f"{summary['params']:,} params, {m['embedding_size']}-d, input {h}x{w}, "
          f"template {m['template']}, {m['channel_order'].upper()}, mean {m['mean']:g} std {m['std']:.6g})")
    return 0


def build_options(args) -> dict:
    """Backbone build options from ``--embedding-size``, ``--input-size HxW`` and ``--option k=v``."""
    from faceforge.config import parse_scalar
    from faceforge.errors import UserError

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option '{item}': expected KEY=VALUE, e.g. width=32")
        options[key.strip()] = parse_scalar(value)
    if args.embedding_size is not None:
        options["embedding_size"] = args.embedding_size
    if args.input_size is not None:
        h, _, w = args.input_size.lower().partition("x")
        try:
            size = (int(h), int(w or h))
        except ValueError:
            raise UserError(f"--input-size: expected HxW such as 112x96, got '{args.input_size}'") from None
        if min(size) < 8:
            raise UserError(f"--input-size: each side must be at least 8 pixels, got '{args.input_size}'")
        options["input_size"] = size
    return options
