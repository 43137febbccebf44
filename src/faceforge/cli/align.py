"""``faceforge align SRC DST`` (detect + 5-point alignment of a folder tree) and ``faceforge detect``."""

from __future__ import annotations

import json

from faceforge.cli._common import bounded, count

DETECTOR_HELP = "face detector: retinaface (default) or mtcnn"


def parse_options(items: list[str]) -> dict:
    """``["score_threshold=0.9", "thresholds=0.6,0.7,0.9"]`` -> typed detector options."""
    from faceforge.errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--det-set: expected KEY=VALUE, got '{item}'")
        parts = value.split(",")
        parsed = [_literal(v) for v in parts]
        out[key.strip()] = tuple(parsed) if len(parts) > 1 else parsed[0]
    return out


def _literal(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None if text.lower() == "none" else text


def _detector_options(p) -> None:
    p.add_argument("--detector", default="retinaface", help=DETECTOR_HELP)
    p.add_argument("--det-set", dest="det_options", action="append", default=[], metavar="KEY=VALUE",
                   help="detector option, e.g. det_size=960 (long side detected at; full = no resize; "
                   "retinaface default 640), score_threshold=0.9 or thresholds=0.6,0.7,0.9 (repeatable)")


def add_commands(sub) -> None:
    p = sub.add_parser(
        "align",
        help="detect and align every face image of an identity-folder tree",
        description="Detect faces in SRC/<identity>/<image> and write 5-point aligned crops to "
        "DST/<identity>/<image>. Resumable; failures go to DST/align_report.csv.",
    )
    p.add_argument("src", help="source identity-folder tree (never written to)")
    p.add_argument("dst", help="output folder (outside SRC)")
    _detector_options(p)
    p.add_argument("--template", default=None,
                   help="alignment template: arcface (112x112, default) or sphereface (112x96)")
    p.add_argument("--size", default=None, metavar="HxW", help="output size, default the template's own")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="align for this model: its card's template and input size (unless given)")
    p.add_argument("--card", default=None, metavar="CARD.yaml",
                   help="align as this model card says (template, input size)")
    p.add_argument("--fallback", default="none", metavar="RULE",
                   help="an image without a face: none (report it, default), center (a centred crop, for "
                   "already-cropped sets such as LFW) or another detector's name (e.g. mtcnn)")
    p.add_argument("--workers", type=bounded(int, 0), default=1,
                   help="processes, one detector each; 0 = one per CPU core (default 1)")
    p.add_argument("--multi", default="largest_center", choices=["largest_center", "largest", "skip", "all"],
                   help="images with several faces: keep the largest face nearest the centre (default), "
                   "the largest, none, or all (the same rule as embed/verify/identify and the SDK)")
    p.add_argument("--border", default="constant", choices=["constant", "replicate"],
                   help="fill outside the photo: black (default, as InsightFace) or replicated edge")
    p.add_argument("--landmarks", metavar="CKPT", nargs="?", const="builtin", default=None,
                   help="refine the 5 points with 88 landmarks (eye centres from the eye contours, nose "
                   "tip, mouth corners; the detector only gives the box): alone or 'builtin' = the model "
                   "shipped with faceforge, else a landmark checkpoint or .onnx")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_align)

    d = sub.add_parser(
        "detect",
        help="detect faces (boxes, scores, 5 landmarks) in images and print JSON",
        description="Detect faces in images; prints one compact JSON object per image and line (JSON "
        "Lines), or with --output writes one JSON list, an image per line.",
    )
    d.add_argument("images", nargs="+", help="image files")
    _detector_options(d)
    d.add_argument("--output", metavar="FILE.json", help="write the JSON here instead of printing it")
    d.add_argument("--draw", metavar="DIR", help="also save each image with its detections drawn")
    d.set_defaults(func=run_detect)


def run_align(args) -> int:
    from faceforge.align.folder import align_folder

    template, size = _geometry(args)
    counts = align_folder(
        args.src,
        args.dst,
        detector=args.detector,
        template=template,
        size=size,
        fallback=args.fallback,
        workers=args.workers,
        multi=args.multi,
        detector_options=parse_options(args.det_options),
        border=args.border,
        progress=not args.quiet,
        points=_refiner(args.landmarks),
    )
    print(json.dumps(counts))
    if counts["crops_written"] == 0 and counts["skipped_existing"] == 0:  # nothing usable: say why
        from faceforge.errors import UserError

        c = counts
        raise UserError(f"align: no face aligned in the {c['images']} images ({c['no_face']} without a face, "
                        f"{c['corrupt']} unreadable, {c['skipped_multi']} skipped for several faces, "
                        f"{c['bad_landmarks']} with bad landmarks); see {args.dst}/align_report.csv")
    return 0


def run_detect(args) -> int:
    from faceforge.align.detect import detect_files
    from faceforge.atomic import atomic_write_text

    results = detect_files(args.images, args.detector, parse_options(args.det_options), args.draw)
    lines = [json.dumps(r, separators=(",", ":")) for r in results]  # an image per line, not a number
    if args.output:
        atomic_write_text(args.output, "[\n" + ",\n".join(lines) + "\n]\n")
        found = sum(len(r.get("faces", [])) for r in results)
        print(f"{count(found, 'face')} in {count(len(results), 'image')} -> {args.output}")
    else:
        print("\n".join(lines))
    return 0


def _geometry(args):
    """(template, size): as given, else from the model's card (``--card`` / ``--model``), else ArcFace."""
    from faceforge.align.folder import parse_size

    size = parse_size(args.size)
    if not (args.card or args.model):
        return args.template or "arcface", size
    from faceforge.errors import UserError

    if args.model:
        from faceforge.embed.loading import load_embedder

        card = load_embedder(args.model, "cpu", args.card).card
    else:
        from faceforge.embed.card import load_card

        card = load_card(args.card)
    if card is None or not isinstance(card.template, str) or card.template not in ("arcface", "sphereface"):
        raise UserError("--card: align needs a named template (arcface or sphereface) in the card")
    return args.template or card.template, size or tuple(card.input_size)


def _refiner(checkpoint):
    """``--landmarks CKPT``: the landmark model's 5 points replace the detector's."""
    if not checkpoint:
        return None
    from faceforge.landmarks.predict import FivePointRefiner

    return FivePointRefiner(checkpoint)
