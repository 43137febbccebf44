"""Time each stage of the IJB 1:1 protocol on this CPU and extrapolate to IJB-B / IJB-C.

    PYTHONPATH=src .venv/bin/python bench/ijb.py [--images 2000] [--pairs 1000000] [--threads 1]

Stages, each timed on its own (wall and process CPU seconds):

* meta   -- parse and check the two face lists (``open_ijb(pairs=False)``, one row per face);
* pairs  -- parse and check the 1:1 pair list (``--pairs`` lines, vectorised);
* read   -- decode every loose crop (synthetic 256x256 "wild" JPEGs, q95);
* align  -- five-point warp to the ArcFace 112x112 template;
* embed  -- MobileFaceNet (FaceX-Zoo 512-d, random weights: speed only) on crop + mirror, batch 64;
* pool   -- detector-score weighting, media means, template sums, normalisation (templates of ~5
  faces in ~2 medias, about IJB-C's 20 faces/template is not needed: pooling is linear in faces);
* score  -- template-pair cosines plus the ROC (one sort) and TAR@FAR table for ``--pairs`` pairs.

read/align/embed/pool are linear in the face count and score in the pair count (the sort is
n log n: slightly optimistic). The extrapolation to 100,000 faces, IJB-B (227,630 faces,
8,010,270 pairs) and IJB-C (469,375 faces, 15,658,489 pairs) is that linear scaling, not a run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

BY_PAIRS = ("pairs", "score")  # stages that scale with the pair count; the rest with faces
TARGETS = {"100k faces": (100_000, None), "IJB-B": (227_630, 8_010_270), "IJB-C": (469_375, 15_658_489)}


class Timer:
    def __init__(self):
        self.rows: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str):
        timer = self

        class _Block:
            def __enter__(self):
                self.w, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timer.rows[name] = (time.perf_counter() - self.w, time.process_time() - self.c)

        return _Block()


def write_tree(root: Path, n: int, n_pairs: int) -> np.ndarray:
    """An IJB-C tree of ``n`` synthetic wild faces (templates of 5 faces, medias of 2) and
    ``n_pairs`` random template pairs; returns the five points [n, 5, 2]."""
    from faceforge.data.synthetic import SyntheticFaces

    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    faces = SyntheticFaces(seed=1, mode="wild")
    five = np.zeros((n, 5, 2))
    with (
        open(root / "meta" / "ijbc_face_tid_mid.txt", "w") as tid,
        open(root / "meta" / "ijbc_name_5pts_score.txt", "w") as pts,
    ):
        for i in range(n):
            img, truth = faces.render(i // 20, i)
            cv2.imwrite(
                str(root / "loose_crop" / f"{i}.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            five[i] = truth["five"]
            tid.write(f"{i}.jpg {i // 5} {i // 2}\n")
            pts.write(f"{i}.jpg " + " ".join(f"{v:.3f}" for v in five[i].ravel()) + " 0.9\n")
    rng = np.random.default_rng(1)
    pairs = np.c_[rng.integers(0, (n - 1) // 5 + 1, (n_pairs, 2)), np.arange(n_pairs) % 2]
    np.savetxt(root / "meta" / "ijbc_template_pair_label.txt", pairs, fmt="%d")
    return five


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    import torch

    from faceforge.align.transform import warp_face
    from faceforge.embed.torch_embedder import TorchEmbedder
    from faceforge.eval.ijb import face_features, pool_templates, score_pairs, tar_table
    from faceforge.eval.ijb_data import open_ijb, read_pairs
    from faceforge.io.images import read_image
    from faceforge.models import build_backbone

    torch.set_num_threads(args.threads)
    n = args.images
    t = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "IJBC"
        five = write_tree(root, n, args.pairs)
        with t("meta"):
            ijb = open_ijb(f"ijbc:{root}", pairs=False)
        with t("pairs"):
            read_pairs(ijb)
        with t("read"):
            imgs = [read_image(root / "loose_crop" / f"{i}.jpg") for i in range(n)]
    with t("align"):
        crops = np.stack([warp_face(img, p, "arcface", (112, 112)) for img, p in zip(imgs, five)])
    torch.manual_seed(0)
    embedder = TorchEmbedder(build_backbone("mobilefacenet"), name="mobilefacenet")
    embedder.embed(crops[:8])  # warm-up (first-call allocations)
    with t("embed"):
        feats = np.concatenate(
            [
                embedder.embed(crops[s : s + args.batch_size])
                + embedder.embed(np.ascontiguousarray(crops[s : s + args.batch_size, :, ::-1]))
                for s in range(0, n, args.batch_size)
            ]
        )
    rng = np.random.default_rng(0)
    templates = np.arange(n) // 5
    medias = np.arange(n) // 2
    with t("pool"):
        tids, tf = pool_templates(face_features(feats, rng.uniform(0.5, 1, n)), templates, medias)
    # score: random template pairs over a 512-d bank the size of IJB-C's (23,124 templates)
    bank = np.ascontiguousarray(np.resize(tf, (23_124, tf.shape[1])))
    bank_ids = np.arange(len(bank))
    pairs = rng.integers(0, len(bank), (args.pairs, 2))
    labels = rng.random(args.pairs) < 0.0013  # IJB-C's genuine share (19,557 of 15.66M)
    with t("score"):
        table = tar_table(score_pairs(bank_ids, bank, pairs), labels)
    del table

    print(f"measured on {n} faces, {args.pairs} pairs, torch threads {args.threads}, batch {args.batch_size}")
    print(f"{'stage':8} {'wall s':>9} {'cpu s':>9} {'ms/face or us/pair (cpu)':>26}")
    for name, (w, c) in t.rows.items():
        unit = c / args.pairs * 1e6 if name in BY_PAIRS else c / n * 1e3
        print(f"{name:8} {w:9.2f} {c:9.2f} {unit:26.3f}")
    print("\nlinear extrapolation of CPU time (not a run), hours:")
    print(f"{'target':12} " + " ".join(f"{k:>7}" for k in t.rows) + "   total")
    for target, (faces, n_pairs) in TARGETS.items():
        scale = {k: (n_pairs or 0) / args.pairs if k in BY_PAIRS else faces / n for k in t.rows}
        hours = [c * scale[k] / 3600 for k, (_, c) in t.rows.items()]
        print(f"{target:12} " + " ".join(f"{v:7.3f}" for v in hours) + f" {sum(hours):7.2f}")


if __name__ == "__main__":
    main()
