"""Measure a landmark checkpoint trained on teacher labels and ship it: ONNX into faceforge/assets/ with
its card (a JSON beside it).

    OMP_NUM_THREADS=1 python bench/landmarks_ship.py runs/landmarks_real/last.ckpt \
        --heldout runs/lm/celeba_test.csv --photos runs/lm/photos.csv [--no-ship]

Held-out real identities: NME against the teacher (88 and 68 points, per group) on RetinaFace boxes
(the label boxes are the detector's). Synthetic held-out faces (``synthetic:100x5,mode=wild,
offset=200000``): RetinaFace on each image, the detection overlapping the true box most, NME of the
88 points against the renderer's truth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "src" / "faceforge" / "assets"
SYNTHETIC = "synthetic:100x5,mode=wild,offset=200000"


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(area, 1e-9)


def synthetic_errors(predictor) -> dict:
    from faceforge.align.detectors import get_detector
    from faceforge.landmarks.metrics import landmark_errors
    from faceforge.landmarks.predict import FaceLandmarker
    from faceforge.landmarks.samples import open_landmark_source

    src = open_landmark_source(SYNTHETIC)
    lm = FaceLandmarker(predictor, detector_object=get_detector("retinaface"))
    pred, truth, missed = [], [], 0
    for i in range(len(src)):
        img, box = src.read(i), src.box(i)
        faces = lm.detector.detect(img)
        best = max(faces, key=lambda f: _iou(f.box, box), default=None)
        if best is None or _iou(best.box, box) < 0.3:
            missed += 1
            continue
        pred.append(lm.points_for(img, [best.box])[0])
        truth.append(src.points(i))
    out = landmark_errors(np.stack(pred), np.stack(truth))
    out["missed_by_detector"] = missed
    return out


def summary(e: dict) -> dict:
    return {"samples": e["samples"], "nme_percent_88": round(e["nme_percent"], 3),
            "failure_rate_10_percent_88": round(e["failure_rate_10_percent"], 4),
            "groups_88": {k: round(v["nme_percent"], 3) for k, v in e["groups"].items()},
            **({"nme_percent_68": round(e["ibug68"]["nme_percent"], 3),
                "groups_68": {k: round(v, 3) for k, v in e["ibug68"]["groups"].items()}}
               if e.get("ibug68") else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--photos")
    ap.add_argument("--no-ship", action="store_true", help="measure only")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from faceforge.landmarks.export import export_onnx
    from faceforge.landmarks.model import load_landmark_model
    from faceforge.landmarks.predict import BUILTIN_FILE, LandmarkPredictor
    from faceforge.landmarks.train import evaluate_net
    from faceforge.models.checkpoint import read_checkpoint

    net = load_landmark_model(args.ckpt)
    res = {"heldout": summary(evaluate_net(net, args.heldout))}
    if args.photos:
        res["photos"] = summary(evaluate_net(net, args.photos))
    res["synthetic_heldout"] = summary(synthetic_errors(LandmarkPredictor.from_net(net)))
    print(json.dumps(res, indent=1))
    if args.no_ship:
        return
    out = ASSETS / BUILTIN_FILE
    ASSETS.mkdir(parents=True, exist_ok=True)
    exp = export_onnx(args.ckpt, out)
    ck = read_checkpoint(args.ckpt)
    cfg = ck.get("config", {})
    data = out.read_bytes()
    card = {
        "name": "faceforge landmarks88_real", "file": BUILTIN_FILE, "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "points": 88, "scheme": "faceforge88",
        "also": "68 iBUG points as faceforge.landmarks.schemes.to_68(points) (least squares)",
        "outputs": "points[B, 88, 2] in normalised crop coordinates (x + 0.5) / S",
        "input": {"size": net.input_size, "layout": "NCHW RGB", "normalise": "(pixel/255 - 0.5) / 0.5"},
        "crop": {"box": "RetinaFace box as it is (box_shift 0, box_scale 1)",
                 "square": f"{net.crop_scale} x the box's longer side, centred on the box"},
        "architecture": {"backbone": cfg.get("model", {}).get("backbone"),
                         "options": cfg.get("model", {}).get("options"),
                         "parameters": int(sum(p.numel() for p in net.parameters()))},
        "teacher": "dlib68: dlib shape_predictor_68_face_landmarks.dat (face-recognition-models), "
                   "on RetinaFace boxes turned into dlib-style boxes (landmarks/teacher.py)",
        "detector": "retinaface (faceforge.align.detectors)",
        "training": {"data": cfg.get("data", {}).get("train"),
                     "what": "CelebA (celeba299) minus the held-out identities (every 6th name) + ORL",
                     "config": "configs/landmarks_real.yaml", "metrics": ck.get("metrics", {})},
        "heldout": {"what": "50 held-out CelebA identities, NME vs the teacher, % outer-eye-corner distance",
                    **res["heldout"]},
        "synthetic_heldout": {"what": SYNTHETIC + ", RetinaFace boxes, vs rendered truth",
                              **res["synthetic_heldout"]},
        "onnx": {k: exp[k] for k in ("opset", "max_abs_diff_px")},
        "licence_notes": "Trained on CelebA photos (non-commercial research use) with labels from dlib's "
                         "68-point model, itself trained on iBUG 300-W (whose terms exclude commercial "
                         "use). Treat this model as research-only.",
        "docs": "docs/landmarks.md",
    }
    from faceforge.atomic import atomic_write_text

    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=1) + "\n")
    print(json.dumps({"shipped": str(out), "bytes": len(data), "parity_px": exp["max_abs_diff_px"]}))


if __name__ == "__main__":
    main()
