"""``faceforge gallery create|enroll|search|remove|list``: a FAISS + SQLite face gallery."""

from __future__ import annotations

import json

from faceforge.cli._common import add_group, bounded, count
from faceforge.cli.infer import aligned_option, model_options


def add_commands(sub) -> None:
    g = add_group(sub, "gallery", "face gallery: enrol identities, search, remove")

    p = g.add_parser("create", help="create an empty gallery for a model")
    p.add_argument("gallery", help="gallery folder (created), or a postgresql:// URL")
    model_options(p)
    p.add_argument("--ivf-threshold", type=bounded(int, 1), default=100_000,
                   help="images beyond which the index becomes IVF (default 100000; flat below)")
    p.add_argument("--nprobe", type=bounded(int, 1), default=16,
                   help="IVF lists searched per query (default 16)")
    p.set_defaults(func=run_create)

    p = g.add_parser("enroll", help="add images of an identity (or a folder of identity folders)",
                     description="With --identity, every IMAGE (or image inside a folder) is that identity; "
                     "without it, each PATH is a root whose sub-folders are identities.")
    p.add_argument("gallery", help="gallery folder or postgresql:// URL")
    p.add_argument("paths", nargs="+", metavar="PATH", help="images or folders")
    p.add_argument("--identity", default=None, help="identity id (an opaque string)")
    model_options(p, gallery=True)
    aligned_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_enroll)

    p = g.add_parser("search", help="top-k identities for a probe image")
    p.add_argument("gallery", help="gallery folder or postgresql:// URL")
    p.add_argument("probe", help="probe image")
    p.add_argument("--top-k", type=bounded(int, 1), default=5, help="identities to list (default 5)")
    p.add_argument("--group", default="max", choices=["max", "mean"],
                   help="identity score: best image (max, default) or mean over its images")
    model_options(p, threshold=True, gallery=True)
    aligned_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_search)

    p = g.add_parser("remove", help="remove an identity and all its images")
    p.add_argument("gallery", help="gallery folder or postgresql:// URL")
    p.add_argument("identity", help="identity id")
    p.set_defaults(func=run_remove)

    p = g.add_parser("list", help="identities and their image counts")
    p.add_argument("gallery", help="gallery folder or postgresql:// URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_list)


def run_create(args) -> int:
    from faceforge.cli.infer import analyzer_from_args
    from faceforge.deploy.commands import create_gallery

    analyzer = analyzer_from_args(args)
    info = create_gallery(args.gallery, analyzer, ivf_threshold=args.ivf_threshold, nprobe=args.nprobe,
                          card=args.card)
    print(f"created gallery {info['path']} for model {analyzer.model} (id {info['model_id']}, "
          f"dim {info['dim']}; later commands use it without --model)")
    return 0


def run_enroll(args) -> int:
    from faceforge.cli.infer import analyzer_from_args
    from faceforge.deploy.commands import enroll_files
    from faceforge.io.progress import progress_callback

    r = enroll_files(args.gallery, analyzer_from_args(args, args.gallery), args.identity, args.paths,
                     aligned=args.aligned,
                     progress=progress_callback("enroll", not args.quiet))
    info = r["gallery"]
    ids = count(r["identities"], "identity", "identities")
    print(f"enrolled {count(r['enrolled'], 'image')} of {ids}; skipped "
          f"{r['already']} already enrolled, {len(r['not_images'])} not images, "
          f"{len(r['no_face'])} without a face; gallery now "
          f"{count(info['images'], 'image')} of {count(info['identities'], 'identity', 'identities')}")
    for f in r["not_images"]:
        print(f"  not an image: {f}")
    for f in r["no_face"]:
        print(f"  no face: {f}")
    return 0


def run_search(args) -> int:
    from faceforge.cli.infer import run_identify

    args.all_faces = False
    return run_identify(args)


def run_remove(args) -> int:
    from faceforge.deploy.gallery import Gallery
    from faceforge.errors import UserError

    with Gallery(args.gallery) as g:
        n = g.remove(args.identity)
    if n == 0:
        raise UserError(f"{args.gallery}: no identity '{args.identity}'")
    print(f"removed '{args.identity}' ({count(n, 'image')})")
    return 0


def run_list(args) -> int:
    from faceforge.deploy.gallery import Gallery

    with Gallery(args.gallery) as g:
        ids, info, record = g.identities(), g.info(), dict(g.model_record)
    model = record.get("path") or "not recorded"
    if args.json:
        print(json.dumps({"info": {**info, "model": model}, "identities": [{"identity": i, "images": n}
                                                                          for i, n in ids]}))
        return 0
    print(f"{count(info['identities'], 'identity', 'identities')}, {count(info['images'], 'image')} "
          f"(model {model}, id {info['model_id']}, "
          f"{info['kind']} index)")
    for name, n in ids:
        print(f"{name}\t{n}")
    return 0
