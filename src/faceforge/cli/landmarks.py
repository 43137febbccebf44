"""``faceforge landmarks label|train|eval|draw|clean|export``: 88-point facial landmarks."""

from __future__ import annotations

import json

from faceforge.cli._common import add_config_options, add_group, bounded


def add_commands(sub) -> None:
    g = add_group(sub, "landmarks",
                  "88-point facial landmarks: label with a teacher, train, evaluate, draw, clean, export")

    p = g.add_parser("train", help="train a landmark regressor from a YAML config",
                     description="Train an 88-point landmark regressor "
                     "(see configs/landmarks_mobilenet.yaml).")
    add_config_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = g.add_parser("eval", help="MSE/MAE (crop pixels), NME and per-group errors of a landmark model",
                     description="Evaluate on a landmark source: "
                     "synthetic:NxK,mode=wild,offset=J or a label file.")
    e.add_argument("--model", required=True, metavar="CKPT", help="landmark checkpoint")
    e.add_argument("--data", required=True, metavar="SOURCE",
                   help="synthetic:NxK,mode=wild,offset=J or a .csv/.tsv label file")
    e.add_argument("--batch-size", type=bounded(int, 1), default=64)
    e.add_argument("--output", metavar="FILE.json", help="also write the results here")
    e.set_defaults(func=run_eval)

    d = g.add_parser("draw", help="detect faces and draw their 88 landmarks on images or videos",
                     description="Detect faces, predict 88 points and draw them. Videos (.mp4/.avi/...) "
                     "are processed frame by frame into an MP4 (mp4v). One input is drawn into the file "
                     "--out; several into the folder --out (same names). One JSON line per input.")
    d.add_argument("inputs", nargs="+", metavar="IMAGE|VIDEO")
    d.add_argument("--model", default="builtin", metavar="CKPT",
                   help="landmark checkpoint or exported .onnx; default: the model shipped with faceforge "
                   "(88 points learned from dlib's 68 on real faces)")
    d.add_argument("--out", required=True, metavar="OUT",
                   help="output image (.mp4 for a video); with several inputs, a folder")
    d.add_argument("--detector", default="retinaface", help="face detector: retinaface (default) or mtcnn")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_draw)

    c = g.add_parser("clean", help="check a landmark label file; write the usable rows and a report",
                     description="Drop rows with invalid points (NaN, far outside the crop, degenerate).")
    c.add_argument("labels", metavar="LABELS", help="label file (.csv/.tsv) or synthetic:... source")
    c.add_argument("--out", metavar="CLEAN.csv", help="write the kept rows here (label files only)")
    c.add_argument("--report", metavar="REPORT.json", help="write the report here")
    c.add_argument("--crop-scale", type=bounded(float, 0, open_low=True), default=1.25)
    c.add_argument("--margin", type=bounded(float, 0), default=0.1,
                   help="allowed distance outside the crop (fraction)")
    c.set_defaults(func=run_clean)

    lb = g.add_parser("label", help="label real faces with a teacher (dlib's 68-point predictor)",
                      description="Detect faces in SRC (an image or a folder tree; identity = folder) with "
                      "faceforge's detector, run the teacher on each box and write a label file (88 "
                      "points derived from the 68, the raw 68, box and provenance) plus OUT.json.")
    lb.add_argument("src", metavar="SRC")
    lb.add_argument("out", metavar="OUT.csv")
    lb.add_argument("--teacher", default="dlib68", help="teacher: dlib68 (needs faceforge[dlib])")
    lb.add_argument("--detector", default="retinaface", help="face detector: retinaface (default) or mtcnn")
    lb.add_argument("--min-size", type=float, default=40.0, help="skip faces whose box is lower (px)")
    lb.add_argument("--agree", type=float, default=0.35,
                    help="drop faces whose teacher eyes/mouth are further than this x the eye distance "
                    "from the detector's 5 points")
    lb.add_argument("--limit", type=int, default=0, help="label only the first N images (0 = all)")
    lb.add_argument("--quiet", action="store_true", help="no progress bar")
    lb.set_defaults(func=run_label)

    x = g.add_parser("export", help="export a landmark model to ONNX (dynamic batch) with a parity check")
    x.add_argument("model", metavar="CKPT")
    x.add_argument("out", metavar="OUT.onnx")
    x.set_defaults(func=run_export)


def run_train(args) -> int:
    from faceforge.landmarks.train import load_landmark_config, train

    result = train(load_landmark_config(args.config, args.overrides), quiet=args.quiet)
    print(json.dumps({k: result[k] for k in ("steps", "epochs", "checkpoint", "clean")}
                     | {"seconds": round(result["seconds"], 1)} | result["last"]))
    return 0


def run_eval(args) -> int:
    from faceforge.atomic import atomic_write_text
    from faceforge.landmarks.model import load_landmark_model
    from faceforge.landmarks.train import evaluate_net

    res = evaluate_net(load_landmark_model(args.model), args.data, batch_size=args.batch_size)
    text = json.dumps(res, indent=1)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    print(text)
    return 0


def run_draw(args) -> int:
    from faceforge.landmarks.draw import check_draw_output, draw_file, draw_files
    from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

    if len(args.inputs) == 1:
        check_draw_output(args.inputs[0], args.out)  # before loading anything
    pred = LandmarkPredictor.load(args.model)
    marker = FaceLandmarker(pred, args.detector)
    if len(args.inputs) == 1:
        results = [draw_file(args.inputs[0], args.out, marker, progress=not args.quiet)]
    else:
        results = draw_files(args.inputs, args.out, marker, progress=not args.quiet)
    for res in results:
        res.pop("landmarks", None)
        print(json.dumps(res))
    return 0


def run_clean(args) -> int:
    from faceforge.atomic import atomic_write_text
    from faceforge.errors import UserError
    from faceforge.landmarks.samples import FileLandmarks, clean, open_landmark_source

    source = open_landmark_source(args.labels)
    keep, report = clean(source, args.crop_scale, args.margin)
    if args.out:
        if not isinstance(source, FileLandmarks):
            raise UserError("--out: only label files can be rewritten")
        from faceforge.landmarks.label_file import write_labels

        lab = source.labels
        if len(keep) == 0:  # an empty label file is not a result
            why = ", ".join(f"{n} {r}" for r, n in report["reasons"].items() if n)
            raise UserError(f"landmarks clean: all {report['total']} rows were dropped ({why}); "
                            f"nothing written to {args.out}")
        boxes = lab.boxes[keep] if lab.boxes[keep].size and all(
            (lab.boxes[keep] == lab.boxes[keep]).ravel()) else None
        write_labels(args.out, [lab.paths[i] for i in keep], lab.points[keep], boxes,
                     [lab.identities[i] for i in keep] if lab.identities else None)
    if args.report:
        atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}))
    return 0


def run_label(args) -> int:
    from faceforge.landmarks.teacher import label_images

    res = label_images(args.src, args.out, args.teacher, args.detector, args.min_size, args.agree,
                       args.limit, progress=not args.quiet)
    print(json.dumps({k: v for k, v in res.items() if k != "box_rule"}))
    return 0


def run_export(args) -> int:
    from faceforge.landmarks.export import export_onnx

    print(json.dumps(export_onnx(args.model, args.out)))
    return 0
