"""Real-data check on ../shared/data: ORL (40x10) and a CelebA subset, from raw photos.

By default dlib's ResNet descriptor (its own detector and chip alignment); with ``--model`` a
faceforge checkpoint or ONNX model through ``FaceAnalyzer`` (RetinaFace, 5-point ArcFace alignment,
largest face; where no face is found the whole image is resized to the model input and counted).

Verification: every same-identity pair plus as many random different-identity pairs, shuffled,
10 folds (insightface protocol on L2-normalised features). Identification: gallery = the first image
of each identity, probes = the rest, rank-1/5.

    .venv/bin/python bench/dlib_eval.py orl
    .venv/bin/python bench/dlib_eval.py celeba --ids 100 --per-id 4
    .venv/bin/python bench/dlib_eval.py orl --model runs/demo/train/last.ckpt
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def collect(root: Path, ids: int | None, per_id: int | None) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: (len(d.name), d.name))
    dirs = [d for d in dirs if len([f for f in d.iterdir() if f.is_file()]) >= 2][:ids]
    for label, d in enumerate(dirs):
        files = sorted((f for f in d.iterdir() if f.is_file()), key=lambda f: (len(f.name), f.name))[:per_id]
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels)


def make_pairs(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = [np.nonzero(labels == lab)[0] for lab in np.unique(labels)]
    same = [(int(a), int(b)) for g in groups for a, b in itertools.combinations(g, 2)]
    diff = set()
    while len(diff) < len(same):
        a, b = sorted(rng.choice(len(labels), 2, replace=False))
        if labels[a] != labels[b]:
            diff.add((int(a), int(b)))
    pairs = np.array(same + sorted(diff))
    issame = np.r_[np.ones(len(same), bool), np.zeros(len(diff), bool)]
    order = rng.permutation(len(pairs))
    return pairs[order], issame[order]


def embed_with_faceforge(model: str, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    from faceforge.deploy.analyzer import FaceAnalyzer

    fa = FaceAnalyzer(model=model, detector="retinaface")
    h, w = fa.card.input_size
    crops, found = [], []
    for img in images:
        faces = fa.detect(img)
        if faces:
            big = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            crops.append(fa.align(img, big))
        else:
            crops.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        found.append(bool(faces))
    feats = np.concatenate([fa.embed_crops(np.stack(crops[i : i + 64])) for i in range(0, len(crops), 64)])
    return feats, np.array(found)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from faceforge.embed.base import l2_normalize
    from faceforge.embed.dlib_embedder import DlibEmbedder
    from faceforge.eval.identification import identify
    from faceforge.eval.verification import summary_line, verify_embeddings
    from faceforge.io.images import read_image

    ap = argparse.ArgumentParser()
    ap.add_argument("set", help="orl, celeba, or a folder of already aligned identity folders")
    ap.add_argument("--ids", type=int)
    ap.add_argument("--per-id", type=int)
    ap.add_argument("--model", help="a faceforge checkpoint or ONNX model instead of dlib")
    args = ap.parse_args()
    root = {"orl": SHARED / "orl", "celeba": SHARED / "celeba299"}.get(args.set) or Path(args.set)
    paths, labels = collect(root, args.ids, args.per_id)
    t = time.perf_counter()
    feats, found = [], []
    if args.model and args.set not in ("orl", "celeba"):  # aligned crops: no detection
        from faceforge.embed.extract import embed_images
        from faceforge.embed.loading import load_embedder

        out = embed_images(load_embedder(args.model), [str(p) for p in paths], flip="sum")
        feats, found = l2_normalize(out.features), out.valid
        what = f"{args.model} (aligned crops, readable:"
    elif args.model:
        feats, found = embed_with_faceforge(args.model, [read_image(p) for p in paths])
        what = f"{args.model} (RetinaFace found a face in"
    else:
        emb = DlibEmbedder()
        for i in range(0, len(paths), 32):
            f, d = emb.embed_raw([read_image(p) for p in paths[i : i + 32]])
            feats.append(f)
            found.append(d)
        feats, found = l2_normalize(np.concatenate(feats)), np.concatenate(found)
        what = "dlib (HOG found a face in"
    secs = time.perf_counter() - t
    print(
        f"{args.set}: {len(paths)} images, {len(np.unique(labels))} identities, {what} "
        f"{found.sum()}; {secs:.1f} s, {1000 * secs / len(paths):.0f} ms/image)"
    )
    pairs, issame = make_pairs(labels)
    res = verify_embeddings(feats[pairs.reshape(-1)], issame, normalize=False)
    print("verification:", summary_line(res))
    first = np.array([np.nonzero(labels == lab)[0][0] for lab in np.unique(labels)])
    probe = np.setdiff1d(np.arange(len(labels)), first)
    ranks = identify(feats[first], labels[first], feats[probe], labels[probe], ranks=(1, 5))
    print(
        f"identification: {len(first)} gallery, {len(probe)} probes: "
        f"rank-1 {100 * ranks['rank1']:.2f}%, rank-5 {100 * ranks['rank5']:.2f}%"
    )


if __name__ == "__main__":
    main()
