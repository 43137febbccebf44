"""``faceforge data ...``: prepare training data (thin layer over ``faceforge.data.tools``)."""

from __future__ import annotations

import json

from faceforge.cli._common import add_group, bounded
from faceforge.errors import UserError

HELP = ("prepare training data: clean, balance, merge, shallow, stats, pack, convert, mask; own-data sets: "
        "split, pairs, gallery-probe")


def _size(text: str) -> tuple[int, int]:
    try:
        h, _, w = text.lower().partition("x")
        size = (int(h), int(w or h))
    except ValueError:
        raise UserError(f"--size: expected HxW such as 112x112, got '{text}'") from None
    if min(size) < 8:
        raise UserError(f"--size: each side must be at least 8 pixels, got '{text}'")
    return size


def _clean(args) -> int:
    from faceforge.data.tools.clean import clean, summary

    print(summary(clean(args.src, args.dst, quality=args.quality, report=args.report)))
    return 0


def _balance(args) -> int:
    from faceforge.data.tools.balance import BalancePolicy, balance, summary

    policy = BalancePolicy(cap=args.cap, keep_above=args.keep_above, double_above=args.double_above,
                           drop_at_most=args.drop_at_most, seed=args.seed)
    result = balance(args.src, args.dst, policy, workers=args.workers, report=args.report)
    print(summary(result))
    if result["after"]["images"] == 0:  # an empty training set is not a result
        raise UserError(f"balance: no image kept (identities per action: {dict(result['actions'])}); "
                        "lower --drop-at-most or check the source")
    return 0


def _merge(args) -> int:
    from faceforge.data.tools.merge import merge

    if len(args.paths) < 3:
        raise UserError("merge: give at least two source folders and then the output folder")
    embedder = None
    if args.model:
        from faceforge.embed.loading import load_embedder

        embedder = load_embedder(args.model, "cpu", args.card)
    r = merge(args.paths[:-1], args.paths[-1], threshold=args.threshold,
              by_name=not args.no_name, mapping=args.mapping, embedder=embedder)
    print(f"merge: {r['identities_in']} identities from {len(r['sources'])} sources -> "
          f"{r['identities_out']} identities, {r['images']} images, {r['corrupt']} unreadable skipped "
          f"({r['merged_by_name']} matched by name, "
          f"{len(r['embedding_pairs'])} pairs by embedding); mapping: {r['mapping']}")
    return 0


def _shallow(args) -> int:
    from faceforge.data.tools.shallow import shallow

    r = shallow(args.src, args.dst, per_identity=args.per_identity, seed=args.seed)
    print(f"shallow: {r['images_in']} images -> {r['images']} images of {r['identities']} identities "
          f"in {r['output']}")
    return 0


def _stats(args) -> int:
    from faceforge.data.tools.stats import format_stats, stats

    s = stats(args.src, verify=args.verify)
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    return 0


def _pack(args) -> int:
    from faceforge.data.tools.pack import pack

    r = pack(args.src, args.out, size=_size(args.size), workers=args.workers, progress=not args.quiet,
             encoding=args.encoding, quality=args.quality)
    _print_conversion("pack", r)
    return 0


def _convert(args) -> int:
    from faceforge.data.tools.convert import convert

    r = convert(args.src, args.to, args.dst, quality=args.quality, size=_size(args.size),
                workers=args.workers, progress=not args.quiet)
    _print_conversion(f"convert to {args.to}", r)
    return 0


def _share(text: str) -> float:
    """--val/--test/--unknown: a fraction in [0, 1) or a whole count."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.1 or a count such as 30, "
                                         f"got '{text}'") from None
    if not value >= 0 or (value >= 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1) or a whole count, got '{text}'")
    return value


def _split(args) -> int:
    from faceforge.data.tools.split import split, split_summary

    print(split_summary(split(args.src, args.dst, val=args.val, test=args.test, seed=args.seed,
                              min_images=args.min_images, mode=args.mode)))
    return 0


def _pairs(args) -> int:
    from faceforge.data.tools.pairs import pairs_summary, write_pairs

    print(pairs_summary(write_pairs(args.src, args.out, n_folds=args.folds, per_fold=args.per_fold,
                                    seed=args.seed)))
    return 0


def _gallery_probe(args) -> int:
    from faceforge.data.tools.split import gallery_probe, gallery_probe_summary

    print(gallery_probe_summary(gallery_probe(args.src, args.dst, gallery_images=args.gallery_images,
                                              unknown=args.unknown, seed=args.seed,
                                              min_images=args.min_images, mode=args.mode)))
    return 0


def _print_conversion(what: str, r: dict) -> None:
    extra = f", {r['resized']} resized" if r.get("resized") else ""
    print(f"{what}: {r['images']} images of {r.get('classes')} identities -> {r['output']} "
          f"({r['skipped']} corrupt skipped{extra})")
    for msg in r.get("skipped_examples", [])[:5]:
        print(f"  skipped: {msg}")


def add_commands(sub) -> None:
    group = add_group(sub, "data", HELP)

    p = group.add_parser("clean", help="decode-check, convert to RGB JPEG, ASCII names, drop duplicates")
    p.add_argument("src", help="identity-folder dataset (never modified)")
    p.add_argument("dst", help="new output folder")
    p.add_argument("--quality", type=bounded(int, 1, 100), default=95,
                   help="JPEG quality of converted images (95)")
    p.add_argument("--report", help="JSON report path (default DST/clean_report.json)")
    p.set_defaults(func=_clean)

    p = group.add_parser("balance", help="cap, augment or drop identities by their image count")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--cap", type=bounded(int, 0), default=350, help="n > cap: keep a random cap (350)")
    p.add_argument("--keep-above", type=bounded(int, 0), default=200,
                   help="keep_above < n <= cap: keep all (200)")
    p.add_argument("--double-above", type=bounded(int, 0), default=90,
                   help="double_above < n <= keep_above: add an opening copy, x2 (90)")
    p.add_argument("--drop-at-most", type=bounded(int, 0), default=30,
                   help="n <= drop_at_most: drop; up to double_above: opening+noise+salt-pepper, x4 (30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=bounded(int, 0), default=None, help="processes (default: all cores)")
    p.add_argument("--report", help="JSON report path (default DST/balance_report.json)")
    p.set_defaults(func=_balance)

    p = group.add_parser("split", help="identity-disjoint train/val/test (links or lists; photos untouched)")
    p.add_argument("src", help="identity folder SRC/<identity>/<image> (never modified)")
    p.add_argument("dst", help="new output folder")
    p.add_argument("--val", type=_share, default=0.1, help="validation identities: fraction or count (0.1)")
    p.add_argument("--test", type=_share, default=0.2, help="test identities: fraction or count (0.2)")
    p.add_argument("--min-images", type=bounded(int, 1), default=2,
                   help="identities with fewer images are left out (2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["link", "list"], default="link",
                   help="link: DST/<split>/<identity>/<image> symbolic links; list: DST/<split>.txt")
    p.set_defaults(func=_split)

    p = group.add_parser("pairs", help="balanced same/different pairs in identity-disjoint folds")
    p.add_argument("src", help="identity folder SRC/<identity>/<image>")
    p.add_argument("out", help="pairs list to write (read by --pairs facex:OUT)")
    p.add_argument("--folds", type=bounded(int, 1), default=10, help="folds (10)")
    p.add_argument("--per-fold", type=bounded(int, 1), default=300,
                   help="same pairs, and different pairs, per fold (300)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_pairs)

    p = group.add_parser("gallery-probe", help="gallery and probe sets for identification (closed/open set)")
    p.add_argument("src", help="identity folder SRC/<identity>/<image> (never modified)")
    p.add_argument("dst", help="new output folder: DST/gallery, DST/probe")
    p.add_argument("--gallery-images", type=bounded(int, 1), default=1,
                   help="images enrolled per identity (1); the rest are probes")
    p.add_argument("--unknown", type=_share, default=0.0,
                   help="identities left out of the gallery (open set): fraction or count (0: closed set)")
    p.add_argument("--min-images", type=bounded(int, 1), default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["link", "list"], default="link")
    p.set_defaults(func=_gallery_probe)

    p = group.add_parser("merge", help="merge identity datasets into one label space")
    p.add_argument("paths", nargs="+", metavar="SRC ... DST", help="two or more sources, then the output")
    p.add_argument("--model", help="a model (checkpoint, ONNX, ...): also merge by mean-embedding similarity")
    p.add_argument("--card", default=None, metavar="CARD.yaml", help="model card for --model")
    p.add_argument("--threshold", type=bounded(float, -1, 1), default=0.6,
                   help="cosine similarity to merge (0.6)")
    p.add_argument("--no-name", action="store_true", help="do not merge identities with the same name")
    p.add_argument("--mapping", help="CSV mapping path (default DST/merge_mapping.csv)")
    p.set_defaults(func=_merge)

    p = group.add_parser("shallow", help="keep a few images per identity")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--per-identity", type=bounded(int, 1), default=2)
    p.add_argument("--seed", type=int, default=None, help="random choice instead of the first files")
    p.set_defaults(func=_shallow)

    p = group.add_parser("stats", help="identities, images and the per-identity histogram")
    p.add_argument("src", help="source string (folder:, rec:, list:, packed:, ...) or path")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--verify", action="store_true",
                   help="packed sources: check every record's CRC (reads the whole file)")
    p.set_defaults(func=_stats)

    p = group.add_parser("pack", help="decode a source into the memory-mapped packed format (.ffpk)")
    p.add_argument("src", help="source string (folder:, rec:, list:, synthetic:, ...) or path")
    p.add_argument("out", help="output .ffpk file")
    p.add_argument("--size", default="112x112", help="HxW of packed images (others are resized)")
    p.add_argument("--workers", type=bounded(int, 0), default=None,
                   help="decoding processes (default: all cores)")
    p.add_argument("--encoding", choices=["raw", "jpeg"], default="raw",
                   help="raw pixels (no decoding at train time) or JPEG records (~5x smaller)")
    p.add_argument("--quality", type=bounded(int, 1, 100), default=95,
                   help="JPEG quality of --encoding jpeg")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pack)

    p = group.add_parser("convert", help="convert between rec, lst, folder and packed")
    p.add_argument("src", help="source string or path")
    p.add_argument("--to", required=True, choices=["rec", "lst", "folder", "packed"])
    p.add_argument("dst", help="output folder (rec, folder) or file (lst, packed)")
    p.add_argument("--quality", type=bounded(int, 1, 100), default=95,
                   help="JPEG quality for re-encoded images")
    p.add_argument("--size", default="112x112", help="HxW for packed output")
    p.add_argument("--workers", type=bounded(int, 0), default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_convert)
