"""Landmark speed on one core, side by side in one run: faceforge's regressor vs dlib's 68-point predictor
on the same RetinaFace boxes (ms per face), and detector + landmarks per photo (the seed: 97 ms).

    OMP_NUM_THREADS=1 python bench/landmarks_real.py [--model builtin] [--images 40] [--rounds 3]

Photos: ``../shared/data/photos`` (obama*.jpg, biden.jpg, t1.jpg) and the first ``--images`` CelebA
photos of held-out identities. Each round times every stage on every photo, interleaved, so load from
other processes hits all stages alike; wall and CPU time (``time.process_time``) are both printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from faceforge.align.detectors import get_detector
    from faceforge.io.images import read_image
    from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor
    from faceforge.landmarks.teacher import Dlib68

    photos = sorted((SHARED / "photos").glob("*.jpg"))
    ids = sorted(p for p in (SHARED / "celeba299").iterdir() if p.is_dir())[::6]  # held-out identities
    photos += [next(iter(sorted(d.glob("*.jpg")))) for d in ids][: args.images]
    images = [read_image(p) for p in photos]
    det = get_detector("retinaface")
    lm = FaceLandmarker(LandmarkPredictor.load(args.model, threads=1), detector_object=det)
    teacher = Dlib68()
    boxes = [[f.box for f in det.detect(img)] for img in images]
    faces = sum(len(b) for b in boxes)
    stages = {"detector": lambda img, bx: det.detect(img),
              "faceforge": lambda img, bx: lm.points_for(img, bx),
              "dlib68": lambda img, bx: [teacher.points(img, b) for b in bx],
              "detector+faceforge": lambda img, bx: lm(img)}
    t = {k: [0.0, 0.0] for k in stages}
    for _ in range(args.rounds):
        for img, bx in zip(images, boxes):
            for key, fn in stages.items():
                _, w, c = timed(fn, img, bx)
                t[key][0] += w
                t[key][1] += c
    n_img, n_face = len(images) * args.rounds, faces * args.rounds
    res = {"photos": len(images), "faces": faces, "rounds": args.rounds, "model": args.model,
           "torch_threads": torch.get_num_threads()}
    for key, (w, c) in t.items():
        per = n_img if key.startswith("detector") else n_face
        unit = "photo" if key.startswith("detector") else "face"
        res[f"{key}_ms_per_{unit}"] = {"wall": round(1e3 * w / per, 2), "cpu": round(1e3 * c / per, 2)}
    res["seed_detector+landmarks_ms"] = 97.4
    print(json.dumps(res, indent=1))
    assert np.isfinite(list(res["faceforge_ms_per_face"].values())).all()


if __name__ == "__main__":
    main()
