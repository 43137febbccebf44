"""``faceforge eval verify|identify|megaface|suite``: thin commands over ``faceforge.eval``."""

from __future__ import annotations

import json

from faceforge.cli._common import add_device_option, add_group, bounded, resolve_device


def _model_options(p, repeat_help: str = "concatenated (each L2-normalised)") -> None:
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="CKPT",
        help=f"model checkpoint; repeat to use several models' features {repeat_help}",
    )
    _card_option(p)
    p.add_argument(
        "--flip", choices=("sum", "concat", "none"), default="sum", help="test-time flip (default sum)"
    )
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


def _models(args):
    """The --model list, with --card applied by position (one Embedder) when cards are given."""
    if not args.card:
        return args.model
    from faceforge.embed.loading import load_embedders

    return [load_embedders(args.model, resolve_device(args.device), args.card)]


def add_commands(sub) -> None:
    group = add_group(sub, "eval", "evaluate models: verification, identification, MegaFace-style, suites")

    p = group.add_parser("verify", help="10-fold pair verification (LFW-style)")
    _model_options(p)
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


def verify(args) -> int:
    from faceforge.eval.verification import run, summary_line

    result = run(
        _models(args),
        args.pairs,
        args.flip,
        args.protocol,
        args.out,
        resolve_device(args.device),
        args.batch_size,
        args.workers,
    )
    print(summary_line(result))
    if result["dropped_pairs"]:
        print(
            f"dropped {result['dropped_pairs']} pairs with unreadable images "
            f"({result['corrupt_images']} images)"
        )
    if args.out:
        print(f"wrote {result['json']} and roc.png")
    return 0


def identify(args) -> int:
    from faceforge.embed.loading import load_embedders
    from faceforge.eval.identification import identify_folders

    embedder = load_embedders(args.model, resolve_device(args.device), args.card)
    cache = f"{args.out}/cache" if args.out else None
    res = identify_folders(
        embedder, args.gallery, args.probe, args.flip, args.batch_size, args.workers, cache_dir=cache
    )
    print(
        ", ".join(f"rank-{k} {100 * res[f'rank{k}']:.2f}%" for k in (1, 3, 5, 10))
        + f" ({res['probes']} probes, {res['gallery_identities']} gallery identities, "
        f"{res['unknown_probes']} probes without a gallery identity)"
    )
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
    from faceforge.embed.loading import load_embedders
    from faceforge.eval.identification import megaface_folders

    embedder = load_embedders(args.model, resolve_device(args.device), args.card)
    cache = f"{args.out}/cache" if args.out else None
    res = megaface_folders(
        embedder,
        args.probe,
        args.distractors,
        _sizes(args.sizes),
        args.flip,
        args.batch_size,
        args.workers,
        cache,
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


def _write(out: str, name: str, res: dict) -> None:
    from faceforge.atomic import atomic_write_text
    from faceforge.eval.verification import to_jsonable

    atomic_write_text(f"{out}/{name}.json", json.dumps(to_jsonable(res), indent=2) + "\n")
