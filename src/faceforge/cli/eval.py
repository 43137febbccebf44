"""``faceforge eval verify|identify|megaface|suite|ijb``: thin commands over ``faceforge.eval``."""

from __future__ import annotations

import argparse
import json
import sys

from faceforge.cli._common import add_device_option, add_group, bounded, resolve_device


def _model_options(p, repeat_help: str = "concatenated (each L2-normalised)", required: bool = True) -> None:
    p.add_argument(
        "--model",
        action="append",
        required=required,
        metavar="CKPT",
        help=f"model checkpoint; repeat to use several models' features {repeat_help}",
    )
    _card_option(p)
    p.add_argument(
        "--flip", choices=("sum", "concat", "none"), default=None,
        help="test-time flip (default: the model card's flip, else sum)",
    )
    p.add_argument(
        "--mean-subtract", action=argparse.BooleanOptionalAction, default=None,
        help="subtract the other folds' mean feature before the cosine (SphereFace / MobileFaceNet-PyTorch "
        "LFW scoring; default: as the model card says, else off)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--batch-size", type=bounded(int, 1), default=64)
    p.add_argument("--workers", type=bounded(int, 0), default=0, help="image-reading worker processes")
    p.add_argument("--out", metavar="DIR", help="write results (JSON, plots) and the embedding cache here")
    add_device_option(p)


def _card_option(p) -> None:
    p.add_argument(
        "--card",
        action="append",
        default=[],
        metavar="CARD.yaml",
        help="model card saying how to feed a foreign model (ONNX/TorchScript); matched to --model by "
        "position (default: a card beside the model file, or the ONNX metadata)",
    )


def _embedder(args):
    """The --model list (several concatenated), with --card applied by position; the line said when
    a model has no card goes to stderr."""
    from faceforge.embed.loading import load_embedders

    embedder = load_embedders(args.model, resolve_device(args.device), args.card)
    for e in getattr(embedder, "embedders", [embedder]):
        if e.card_note:
            print(e.card_note, file=sys.stderr)
    return embedder


def _flip(args, embedder) -> str:
    from faceforge.eval.verification import pipeline_choices

    return pipeline_choices(embedder, args.flip)["flip"]


def _progress(args, label: str):
    from faceforge.io.progress import progress_callback

    return progress_callback(label, enabled=not args.quiet)


def add_commands(sub) -> None:
    group = add_group(sub, "eval", "evaluate models: verification, identification, MegaFace-style, suites")

    p = group.add_parser("verify", help="10-fold pair verification (LFW-style)")
    _model_options(p, required=False)
    p.add_argument("--embeddings", metavar="EMB.npz",
                   help="score the output of 'faceforge embed' instead of embedding with --model")
    p.add_argument(
        "--pairs",
        required=True,
        metavar="SOURCE",
        help="pairs:PAIRS.txt[,root=DIR][,ext=jpg] | bin:FILE.bin | calfw:LIST[,root=DIR] "
        "| facex:LIST[,root=DIR]",
    )
    p.add_argument("--protocol", choices=("insightface", "facex"), default="insightface")
    p.set_defaults(func=verify)

    p = group.add_parser("identify", help="gallery/probe rank-1/3/5/10 and CMC")
    _model_options(p)
    p.add_argument("--gallery", required=True, metavar="DIR", help="identity folders: DIR/<identity>/<image>")
    p.add_argument(
        "--probe", required=True, metavar="DIR", help="identity folders, matched to the gallery by name"
    )
    p.add_argument("--threshold", type=float, default=None, metavar="SCORE",
                   help="open set (probe identities absent from the gallery): also report how many unknown "
                   "probes this cosine threshold rejects (e.g. a calibrated one)")
    p.set_defaults(func=identify)

    p = group.add_parser("megaface", help="MegaFace-style rank-1 as distractors grow (FAISS)")
    _model_options(p)
    p.add_argument("--probe", required=True, metavar="DIR", help="probe identity folders (>= 2 images each)")
    p.add_argument(
        "--distractors",
        required=True,
        metavar="SPEC",
        help="a folder of distractor images, or random:N[,seed=S]",
    )
    p.add_argument(
        "--sizes",
        default="10,100,1000,10000,100000,1000000",
        help="comma-separated distractor counts (default 10..1e6)",
    )
    p.set_defaults(func=megaface)

    p = group.add_parser("suite", help="several benchmarks x several models: table, report.md, plots")
    p.add_argument("suite", metavar="SUITE.yaml", help="benchmarks to run (see faceforge.eval.suite)")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="CKPT",
        help="a model (one table row); repeat for more; A.ckpt+B.ckpt concatenates two",
    )
    p.add_argument("--out", default="runs/eval", metavar="DIR", help="report folder (default runs/eval)")
    _card_option(p)
    add_device_option(p)
    p.set_defaults(func=suite)

    p = group.add_parser("ijb", help="IJB-B/IJB-C 1:1 TAR@FAR (and 1:N), InsightFace's IJB package layout")
    _model_options(p)
    p.add_argument(
        "--data", required=True, metavar="SOURCE", help="ijbc:ROOT or ijbb:ROOT (ROOT: meta/, loose_crop/)"
    )
    p.add_argument(
        "--weight", choices=("detector", "none"), help="scale faces by their detector score (default)"
    )
    p.add_argument(
        "--norm", choices=("keep", "unit"), help="keep each face's feature norm (default) or unit-normalise"
    )
    p.add_argument(
        "--identification",
        choices=("insightface", "open_set"),
        help="also run 1:N on meta/*_1N_*.csv: insightface (G1+G2, ijb_1n.py) or open_set (G1, G2 apart)",
    )
    p.add_argument(
        "--cache-dir", metavar="DIR", help="embedding cache (default OUT/cache when --out is given)"
    )
    p.set_defaults(func=ijb)  # --quiet (no progress bar) comes with the model options


def verify(args) -> int:
    from faceforge.errors import UserError
    from faceforge.eval.verification import run

    if bool(args.model) == bool(args.embeddings):
        raise UserError("eval verify: give --model (embed the pairs) or --embeddings EMB.npz (score "
                        "'faceforge embed' output), not both")
    if args.embeddings:
        from faceforge.eval.verification import verify_embedding_file, write_result

        result = verify_embedding_file(args.embeddings, args.pairs, args.protocol, bool(args.mean_subtract))
        if args.out:
            result["json"] = str(write_result(result, args.out))
        return _report_verify(args, result)
    result = run(
        [_embedder(args)],
        args.pairs,
        args.flip,
        args.protocol,
        args.out,
        resolve_device(args.device),
        args.batch_size,
        args.workers,
        mean_subtract=args.mean_subtract,
        progress=_progress(args, "embed"),
    )
    return _report_verify(args, result)


def _report_verify(args, result) -> int:
    from faceforge.eval.verification import alignment_warning, coverage_line, summary_line

    if alignment_warning(result):
        print(alignment_warning(result), file=sys.stderr)
    print(coverage_line(result))
    print(summary_line(result))
    print(f"flip {result['flip']} ({result['flip_from']}), mean subtraction "
          f"{'on' if result['mean_subtract'] else 'off'} ({result['mean_subtract_from']})")
    routes = result.get("self_alignment") or {}
    if routes:  # a self-aligning model (dlib): how each raw photo's face was found
        print("self-aligned photos: " + ", ".join(f"{k} {v}" for k, v in routes.items()))
    if args.out:
        print(f"wrote {result['json']} and roc.png")
    return 0


def identify(args) -> int:
    from faceforge.eval.identification import identify_folders

    embedder = _embedder(args)
    cache = f"{args.out}/cache" if args.out else None
    res = identify_folders(
        embedder, args.gallery, args.probe, _flip(args, embedder), args.batch_size, args.workers,
        cache_dir=cache, progress=lambda label: _progress(args, label), threshold=args.threshold,
    )
    print(
        ", ".join(f"rank-{k} {100 * res[f'rank{k}']:.2f}%" for k in (1, 3, 5, 10))
        + f" ({res['probes']} probes, {res['gallery_identities']} gallery identities, "
        f"{res['unknown_probes']} probes without a gallery identity)"
    )
    if "open_set" in res:
        from faceforge.eval.identification import open_set_line

        print(open_set_line(res["open_set"]))
    if args.out:
        _write(args.out, "identification", res)
        from faceforge.eval.report import plot_cmc

        plot_cmc({embedder.meta.name: res["cmc"]}, f"{args.out}/cmc.png")
    return 0


def _sizes(text: str) -> list[int]:
    from faceforge.errors import UserError

    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sizes '{text}': expected comma-separated integers, e.g. 10,1000,1e6") from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"--sizes '{text}': sizes must be positive")
    return sizes


def megaface(args) -> int:
    from faceforge.eval.identification import megaface_folders

    embedder = _embedder(args)
    cache = f"{args.out}/cache" if args.out else None
    res = megaface_folders(
        embedder,
        args.probe,
        args.distractors,
        _sizes(args.sizes),
        _flip(args, embedder),
        args.batch_size,
        args.workers,
        cache,
        progress=lambda label: _progress(args, label),
    )
    for size, rate in zip(res["sizes"], res["rank1"], strict=True):
        print(f"{size:>9d} distractors: rank-1 {100 * rate:.2f}%")
    if args.out:
        _write(args.out, "megaface", res)
        from faceforge.eval.report import plot_distractors

        plot_distractors({embedder.meta.name: (res["sizes"], res["rank1"])}, f"{args.out}/megaface.png")
    return 0


def suite(args) -> int:
    from faceforge.eval.suite import run_suite

    models = args.model
    if args.card:  # one card per row; a row A+B takes no card
        from faceforge.embed.loading import load_embedder
        from faceforge.errors import UserError

        if len(args.card) > len(models) or any("+" in m for m in models[: len(args.card)]):
            raise UserError("--card: one card per single-model --model row, matched by position")
        device = resolve_device(args.device)
        models = [load_embedder(m, device, c) for m, c in zip(models, args.card)] + models[len(args.card):]
    res = run_suite(args.suite, models, args.out, resolve_device(args.device))
    print(f"wrote {res['report']}")
    return 0


def ijb(args) -> int:
    from faceforge.eval.ijb import run, table_text

    embedder = _embedder(args)
    res = run(
        [embedder],
        args.data,
        _flip(args, embedder),
        args.weight,
        args.norm,
        args.identification,
        args.out,
        resolve_device(args.device),
        args.batch_size,
        args.workers,
        args.cache_dir,
        progress=not args.quiet,
    )
    print(table_text(res))
    if "identification" in res:
        from faceforge.eval.ijb_1n import table_text as table_1n

        print(table_1n(res["identification"], res["benchmark"]))
    if args.out:
        print(f"wrote {res['json']}")
    return 0


def _write(out: str, name: str, res: dict) -> None:
    from faceforge.atomic import atomic_write_text
    from faceforge.eval.verification import to_jsonable

    atomic_write_text(f"{out}/{name}.json", json.dumps(to_jsonable(res), indent=2) + "\n")
