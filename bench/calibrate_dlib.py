"""The shipped threshold of ``dlib:resnet``: calibrated on one half of celeba299's identities,
checked on the other half (identities never seen by the calibration).

    .venv/bin/python bench/calibrate_dlib.py --cache /tmp/celeba_dlib.npz --json cal.json   # shipped
    .venv/bin/python bench/calibrate_dlib.py --per-id 8 ...     # a third of the photos, for a quick check

The embedding is the slow part (6,300 photos: 42 min on the loaded 2-core machine of 2026-12-08,
~10 min idle); with ``--cache`` it is saved every 256 photos and an interrupted run resumes.

Every photo is embedded once the way ``eval verify --model dlib:resnet`` does it (dlib's HOG
detector, faceforge's RetinaFace box where HOG finds none, dlib's 150x150 chip, flip none,
cosine of L2-normalised descriptors). The identities are split in two halves by a seeded
permutation; in each half every same-identity pair is genuine and every pair of different
identities an impostor (all pairs: the embeddings are the expensive part). Thresholds are chosen
on the calibration half at each FAR its impostor pairs measure (:mod:`faceforge.eval.thresholds`:
at least 10/FAR impostor pairs) and the TAR and FAR they give are measured on the held-out half.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FARS = (1e-2, 1e-3, 1e-4, 1e-5)


def identity_files(root: Path, per_id: int | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Photos of every identity with at least 2 (the first ``per_id`` by name when given)."""
    from faceforge.io.folders import IMAGE_SUFFIXES

    dirs = sorted(d for d in root.iterdir() if d.is_dir())
    paths, labels, names = [], [], []
    for d in dirs:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:per_id]
        if len(files) >= 2:
            labels += [len(names)] * len(files)
            paths += files
            names.append(d.name)
    return paths, np.array(labels), names


def embed(paths: list[Path], cache: Path | None, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, dict]:
    """L2-normalised dlib descriptors of every photo, ``chunk`` at a time; with ``cache`` each chunk
    is saved, so an interrupted run resumes where it stopped."""
    from faceforge.embed.base import l2_normalize
    from faceforge.embed.extract import embed_images
    from faceforge.embed.loading import load_embedder

    names = [str(p) for p in paths]
    feats, valid, routes, done = np.zeros((len(paths), 128), np.float32), np.zeros(len(paths), bool), {}, 0
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["files"]) == names:
                feats, valid = z["features"], z["valid"]
                done = int(z["done"]) if "done" in z else len(paths)  # a cache of a whole run
                routes = json.loads(str(z["routes"]))
    embedder = load_embedder("dlib:resnet") if done < len(paths) else None
    t = time.perf_counter()
    for start in range(done, len(paths), chunk):
        out = embed_images(embedder, names[start:start + chunk], batch_size=32, flip="none")
        feats[start:start + chunk], valid[start:start + chunk] = l2_normalize(out.features), out.valid
        for k, v in out.self_alignment.items():
            routes[k] = routes.get(k, 0) + v
        done = min(len(paths), start + chunk)
        if cache is not None:
            np.savez(cache, features=feats, valid=valid, routes=np.array(json.dumps(routes)),
                     files=np.array(names), done=np.array(done))
        secs = time.perf_counter() - t
        print(f"embedded {done}/{len(paths)} photos ({secs:.0f} s this run); routes {routes}", flush=True)
    return feats, valid, routes


def all_pairs(feats: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and same-identity flag of every unordered pair of rows."""
    iu = np.triu_indices(len(labels), k=1)
    return (feats @ feats.T)[iu], (labels[:, None] == labels[None, :])[iu]


def sdk_check(paths, labels, rows, feats, thr: float, n: int, seed: int) -> dict:
    """The deployed path (FaceAnalyzer: RetinaFace, its box made HOG-like, dlib's chip) on ``n``
    held-out photos: FAR/TAR at the shipped threshold next to the calibration path's on the same
    photos (photos where RetinaFace finds no face are left out of both)."""
    from faceforge import FaceAnalyzer
    from faceforge.align.select import pick_faces
    from faceforge.io.images import read_image

    fa = FaceAnalyzer()
    pick = np.sort(np.random.default_rng(seed).choice(rows, min(n, len(rows)), replace=False))
    sdk, kept = [], []
    for i in pick:
        img = read_image(paths[i])
        faces = fa.embed(img)
        if faces:
            sdk.append(pick_faces(faces, img.shape, "largest_center")[0].embedding)
            kept.append(i)
    out = {"photos": len(kept), "threshold": thr}
    for name, f in (("sdk", np.stack(sdk)), ("calibration_path", feats[kept])):
        scores, same = all_pairs(f, labels[kept])
        out[name] = {"genuine": int(same.sum()), "impostor": int((~same).sum()),
                     "tar": float(np.mean(scores[same] >= thr)), "far": float(np.mean(scores[~same] >= thr))}
    return out


def main() -> None:
    import torch

    from faceforge.eval.thresholds import thresholds_at_fars

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=SHARED / "celeba299")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, help="embeddings .npz (written, then reused)")
    ap.add_argument("--json", type=Path, help="write the result here")
    ap.add_argument("--per-id", type=int, help="at most this many photos per identity (first by name)")
    ap.add_argument("--sdk-check", type=int, default=0, metavar="N",
                    help="also embed N held-out photos the SDK's way and compare at the 1e-3 threshold")
    args = ap.parse_args()
    paths, labels, names = identity_files(args.root, args.per_id)
    feats, valid, routes = embed(paths, args.cache)
    perm = np.random.default_rng(args.seed).permutation(len(names))
    halves = {"calibration": np.sort(perm[: len(names) // 2]), "held_out": np.sort(perm[len(names) // 2:])}
    scored = {}
    for half, ids in halves.items():
        rows = np.nonzero(np.isin(labels, ids) & valid)[0]
        scores, same = all_pairs(feats[rows], labels[rows])
        scored[half] = (scores, same, len(ids), len(rows))
    cal_scores, cal_same, n_ids, n_img = scored["calibration"]
    cal = thresholds_at_fars(cal_scores, cal_same, FARS)
    test_scores, test_same, t_ids, t_img = scored["held_out"]
    print(f"calibration half: {n_ids} identities, {n_img} photos, {cal['same']} genuine + {cal['different']} "
          f"impostor pairs (smallest FAR {cal['smallest_far']:.2g})")
    print(f"held-out half: {t_ids} identities, {t_img} photos, {int(test_same.sum())} genuine + "
          f"{int((~test_same).sum())} impostor pairs")
    print("| target FAR | threshold | TAR (calibration) | TAR held out | FAR held out |")
    print("|---|---|---|---|---|")
    for row in cal["at_far"]:
        row["held_out"] = None
        if row["threshold"] is not None:
            thr = row["threshold"]
            row["held_out"] = {"tar": float(np.mean(test_scores[test_same] >= thr)),
                               "far": float(np.mean(test_scores[~test_same] >= thr))}
            print(f"| {row['far']:g} | {thr:.4f} | {row['tar']:.4f} | {row['held_out']['tar']:.4f} | "
                  f"{row['held_out']['far']:.2g} |")
        else:
            print(f"| {row['far']:g} | n/m | {row['reason']} | | |")
    result = {"root": str(args.root), "seed": args.seed, "per_id": args.per_id, "routes": routes,
              "photos": len(paths),
              "calibration_identities": [names[i] for i in halves["calibration"]],
              "held_out": {"identities": t_ids, "photos": t_img, "same": int(test_same.sum()),
                           "different": int((~test_same).sum())}, **cal}
    if args.sdk_check:
        thr = next(r["threshold"] for r in cal["at_far"] if r["far"] == 1e-3)
        rows = np.nonzero(np.isin(labels, halves["held_out"]) & valid)[0]
        result["sdk_check"] = check = sdk_check(paths, labels, rows, feats, thr, args.sdk_check, args.seed)
        print(f"SDK path on {check['photos']} held-out photos at threshold {thr:.4f}: " + "; ".join(
            f"{k}: TAR {v['tar']:.3f} FAR {v['far']:.2g} ({v['genuine']} genuine, {v['impostor']} impostor)"
            for k, v in check.items() if isinstance(v, dict)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
