"""``faceforge embed``, ``faceforge verify`` and ``faceforge identify``: faces of image files."""

from __future__ import annotations

import json
import sys

from faceforge.cli._common import bounded, count, device_name

NO_THRESHOLD = "calibrate one: 'faceforge calibrate MODEL --folder PEOPLE/'"


def multi_option(p) -> None:
    from faceforge.align.select import DEFAULT_MULTI, MULTI_POLICIES

    p.add_argument("--multi", default=DEFAULT_MULTI, choices=MULTI_POLICIES,
                   help="images with several faces: the largest face nearest the centre (default), the "
                   "largest, none, or all (the same rule as 'faceforge align')")


def model_options(p, threshold: bool = False, gallery: bool = False) -> None:
    """Options every inference command shares (also used by ``gallery`` and ``serve``); ``gallery``:
    the command opens a gallery, whose recorded model is the default."""
    default = "the gallery's own model" if gallery else "dlib:resnet, pretrained, with a threshold"
    p.add_argument("--model", default=None,
                   help=f"model: faceforge checkpoint (.ckpt/.pt), ONNX, TorchScript or dlib:resnet "
                   f"(default: {default})")
    p.add_argument("--card", default=None, metavar="CARD.yaml",
                   help="model card saying how to feed the model (default: one beside the model file, "
                   "the ONNX metadata or the checkpoint's record)")
    p.add_argument("--detector", default="retinaface", help="face detector: retinaface (default) or mtcnn")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu (default) or cuda")
    multi_option(p)
    if threshold:
        p.add_argument("--threshold", type=bounded(float, -1.0, 1.0), default=None,
                       help="'same person' cosine threshold (default: the model's calibrated one)")


def analyzer_from_args(args, gallery=None):
    """The FaceAnalyzer of ``--model/--card/--detector/--device/--multi[/--threshold]`` (``--model``
    default: dlib:resnet, or with ``gallery`` the gallery's recorded model); the line said when the
    model has no card goes to stderr."""
    from faceforge.deploy.commands import load_analyzer
    from faceforge.deploy.gallery_model import gallery_analyzer

    threshold = getattr(args, "threshold", None)
    if gallery is not None:
        analyzer = gallery_analyzer(gallery, args.model, args.detector, args.device, threshold, args.card,
                                    args.multi)
    else:
        analyzer = load_analyzer(args.model, args.detector, args.device, threshold, card=args.card,
                                 multi=args.multi)
    if analyzer.embedder.card_note:
        print(analyzer.embedder.card_note, file=sys.stderr)
    return analyzer


def aligned_option(p) -> None:
    p.add_argument("--aligned", action="store_true",
                   help="images are already-aligned face crops (e.g. 112x112 ArcFace): skip detection")


def add_commands(sub) -> None:
    p = sub.add_parser("embed", help="embed the faces of images into an .npz",
                       description="Detect, align and embed faces; write embeddings (L2-normalised), boxes, "
                       "5 points and scores to an .npz. Unreadable images and images without a face are "
                       "skipped and counted.")
    p.add_argument("paths", nargs="+", metavar="SOURCE",
                   help="image files, folders (every image below), list files (@LIST or .txt: a path per "
                   "line) or pair sources (pairs:PAIRS.txt,root=DIR | facex:LIST | calfw:LIST)")
    p.add_argument("--out", required=True, help="output .npz (score it with 'eval verify --embeddings')")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--all-faces", action="store_true", help="every face (default: --multi's)")
    model_options(p)
    aligned_option(p)
    p.add_argument("--workers", type=int, default=1,
                   help="processes, each with its own detector and model; 0 = one per CPU core (default 1)")
    p.add_argument("--batch", type=int, default=32,
                   help="images detected together, their faces embedded in one batch (default 32)")
    p.set_defaults(func=run_embed)

    p = sub.add_parser("verify", help="are two images the same person?",
                       description="Similarity of the faces --multi picks in two images, the threshold and "
                       "the verdict.")
    p.add_argument("a", help="first image")
    p.add_argument("b", help="second image")
    model_options(p, threshold=True)
    aligned_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("identify", help="who is in an image? (top-k gallery identities)",
                       description="Search a gallery (see 'faceforge gallery') for the probe's face.")
    p.add_argument("probe", help="probe image")
    p.add_argument("--gallery", required=True, help="gallery folder or postgresql:// URL")
    p.add_argument("--top-k", type=bounded(int, 1), default=5, help="identities to list (default 5)")
    p.add_argument("--group", default="max", choices=["max", "mean"],
                   help="identity score: best image (max, default) or mean over its images")
    p.add_argument("--all-faces", action="store_true", help="every face (default: the one --multi picks)")
    model_options(p, threshold=True, gallery=True)
    aligned_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_identify)


def run_embed(args) -> int:
    from faceforge.deploy.commands import embed_files

    # one process: the analyzer carries --card and --multi; workers each load their own from the file
    from faceforge.embed.dlib_embedder import DEFAULT_MODEL
    from faceforge.io.progress import progress_callback

    model = analyzer_from_args(args) if args.workers == 1 else (args.model or DEFAULT_MODEL)
    r = embed_files(args.paths, model, args.out, all_faces=args.all_faces, aligned=args.aligned,
                    detector=args.detector, device=args.device, workers=args.workers, batch=args.batch,
                    card=args.card, multi=args.multi, progress=progress_callback("embed", not args.quiet))
    print(f"{count(r['faces'], 'face')} from {count(r['images'], 'image')} -> {r['out']} (dim {r['dim']}); "
          f"skipped: {len(r['not_images'])} not images, {len(r['no_face'])} without a face, "
          f"{len(r['missing'])} missing")
    for f in r["missing"]:
        print(f"  missing: {f}")
    for f in r["not_images"]:
        print(f"  not an image: {f}")
    for f in r["no_face"]:
        print(f"  no face: {f}")
    if r["unaligned"]:
        print(f"WARNING: {len(r['unaligned'])} images given as --aligned are not aligned crops (e.g. "
              f"{r['unaligned'][0]}): they were resized whole; drop --aligned to detect and align them",
              file=sys.stderr)
    return 0


def run_verify(args) -> int:
    from faceforge.deploy.commands import verify_files

    r = verify_files(args.a, args.b, analyzer_from_args(args), threshold=args.threshold, aligned=args.aligned)
    if args.json:
        print(json.dumps(r))
    elif r["same"] is None:
        print(f"similarity {r['similarity']:.4f} (cosine); {r['hint']}")
    else:
        verdict = "same person" if r["same"] else "different people"
        print(f"{verdict}: similarity {r['similarity']:.4f}, threshold {r['threshold']:.4f}"
              f"{far_text(r['far'])} ({r['threshold_source']})")
    return 0


def far_text(far) -> str:
    return f" at FAR {far:g}" if far is not None else " (FAR not stated)"


def run_identify(args) -> int:
    from faceforge.deploy.commands import identify_file

    r = identify_file(args.probe, args.gallery, analyzer_from_args(args, args.gallery), k=args.top_k,
                      group=args.group, all_faces=args.all_faces, aligned=args.aligned)
    if args.json:
        print(json.dumps(r))
        return 0
    if r["threshold"] is None:
        print(f"no threshold: matches are ranked only, never 'unknown' ({NO_THRESHOLD}, or pass --threshold)")
    else:
        print(f"threshold {r['threshold']:.4f}{far_text(r['far'])} ({r['threshold_source']}); "
              "below it a face is 'unknown'")
    for i, face in enumerate(r["faces"]):
        best = face["matches"][0]["score"] if face["matches"] else None
        answer = face["answer"] if face["known"] is not False else f"unknown (best score {best:.4f})"
        print(f"face {i} box {face['box']}: {answer if face['matches'] else '(gallery is empty)'}")
        for rank, m in enumerate(face["matches"], 1):
            print(f"  {rank}. {m['identity']}  {m['score']:.4f}  "
                  f"({count(m['images'], 'image')}, best {m['best_source']})")
    return 0
