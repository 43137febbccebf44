"""``faceforge data mask SRC DST``: synthetic face masks on an identity-folder tree (crops or photos)."""

from __future__ import annotations

import json

from faceforge.cli._common import add_group


def add_commands(sub) -> None:
    from faceforge.cli.data import HELP

    data = add_group(sub, "data", HELP)
    p = data.add_parser(
        "mask",
        help="draw synthetic face masks on faces (masked training sets and probes)",
        description="Write a masked copy of every image SRC/<identity>/<image> to DST; deterministic per "
        "(--seed, file). By default the mask follows the face's 88 landmarks (nose bridge, cheeks, jaw; "
        "texture warped piecewise over a triangle mesh), on aligned crops or raw photos (every detected "
        "face); --method paste keeps the 2-D paste by the template's 5 points (aligned crops only).",
    )
    p.add_argument("src", help="identity-folder tree (never written to)")
    p.add_argument("dst", help="output folder (outside SRC)")
    p.add_argument("--method", choices=("landmarks", "paste"), default="landmarks",
                   help="landmarks (default: follows pose and jaw) or paste (2-D, by the 5 template points)")
    p.add_argument("--input", choices=("auto", "crops", "photos"), default="auto",
                   help="landmarks method: aligned crops (one face: the largest the detector finds, else "
                   "the template's face box), photos (every detected face) or auto (crops when the image has "
                   "a crop's size and shape; default)")
    p.add_argument("--landmarks", metavar="MODEL", default="builtin",
                   help="landmark model: builtin (default, shipped with faceforge), a checkpoint or .onnx")
    p.add_argument("--detector", default="retinaface", help="face detector (default retinaface)")
    p.add_argument("--shapes", default="surgical,cloth,n95",
                   help="comma-separated mask shapes to draw from (landmarks method; default all three)")
    p.add_argument("--fraction", type=float, default=1.0,
                   help="share of the images to mask, drawn per file; the rest are copied (default 1)")
    p.add_argument("--template", default="arcface",
                   help="template the crops were aligned to (default arcface)")
    p.add_argument("--textures", metavar="DIR", help="mask images (mask_*.jpg) warped onto surgical masks; "
                   "default: drawn masks with random colours")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from faceforge.data.masks import mask_folder

    points = None
    if args.method == "landmarks":
        from faceforge.landmarks.mask_points import mask_points

        points = mask_points(args.landmarks, args.input, args.template, args.detector)
    shapes = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    counts = mask_folder(args.src, args.dst, seed=args.seed, template=args.template, textures=args.textures,
                         progress=not args.quiet, points=points, shapes=shapes, fraction=args.fraction)
    print(json.dumps(counts))
    return 0
