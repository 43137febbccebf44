"""``faceforge data mask SRC DST``: synthetic face masks on an aligned identity-folder tree."""

from __future__ import annotations

import json

from faceforge.cli._common import add_group


def add_commands(sub) -> None:
    from faceforge.cli.data import HELP

    data = add_group(sub, "data", HELP)
    p = data.add_parser(
        "mask",
        help="draw synthetic face masks on aligned faces (masked training sets and probes)",
        description="Write a masked copy of every aligned image SRC/<identity>/<image> to DST, placed from "
        "the 5-point template; deterministic per (--seed, file).",
    )
    p.add_argument("src", help="aligned identity-folder tree (never written to)")
    p.add_argument("dst", help="output folder (outside SRC)")
    p.add_argument("--template", default="arcface",
                   help="template the faces were aligned to (default arcface)")
    p.add_argument("--textures", metavar="DIR", help="fabric images (mask_*.jpg) to map onto the masks; "
                   "default: drawn masks with random colours")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from faceforge.data.masks import mask_folder

    counts = mask_folder(args.src, args.dst, seed=args.seed, template=args.template, textures=args.textures,
                         progress=not args.quiet)
    print(json.dumps(counts))
    return 0
