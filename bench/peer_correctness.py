"""Before/after numbers for issue 14 (correct with real models), on the shared sample data.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/peer_correctness.py [--celeba 400] [--orl 400]

1. channel order: cosine between faceforge's embedding of an image file and the peer's documented
   preprocessing (cv2.imread BGR, (x - 127.5) / 128) for imported FaceX-Zoo MobileFaceNet 112x96 and
   sphereface_pytorch sphere20a (reference-init weights, colour CelebA photos), fed RGB (before) / as
   recorded at import (after);
2. Partial FC loss of CircleLoss at init: the old clamped formula, the log-space one, float64;
3. multi-face: CelebA photos where "largest" and "largest_center" pick different faces;
4. align (ORL tight crops and CelebA photos): images without a face, default vs --fallback center;
5. dlib:resnet on raw photo pairs: same/different cosines with the whole photo resized vs its chip.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def channel_order(n: int) -> None:
    import cv2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from faceforge.embed.loading import load_embedder
    from faceforge.io.images import read_image
    from faceforge.models import build_backbone
    from faceforge.models.convert import import_checkpoint
    from reference_init import reference_init

    photos = sorted(SHARED.glob("celeba299/*/*.jpg"))[:n]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cases = (("facex", "mobilefacenet", (112, 96)), ("sphereface", "sphere20a", None))
        for source, backbone, size in cases:
            opts = {"input_size": size} if size else {}
            peer = build_backbone(backbone, **opts)
            peer.load_state_dict(reference_init(peer.state_dict()))
            peer.eval()
            sd = peer.state_dict()
            if source == "facex":
                sd = {"state_dict": {f"backbone.{k}": v for k, v in sd.items()}}
            torch.save(sd, d / "peer.pt")
            import_checkpoint(d / "peer.pt", source, backbone, d / "ff.ckpt", **opts)
            emb = load_embedder(d / "ff.ckpt")
            h, w = emb.meta.input_size
            before, after = [], []
            for p in photos:
                small = cv2.resize(cv2.imread(str(p)), (w, h), interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(d / "f.png"), small)
                x = (cv2.imread(str(d / "f.png")).transpose(2, 0, 1).astype(np.float32) - 127.5) / 128.0
                with torch.no_grad():
                    want = peer(torch.from_numpy(x)[None]).numpy()[0]
                img = read_image(d / "f.png")
                after.append(_cos(emb.embed(img[None])[0], want))
                emb.meta.channel_order = "rgb"  # what import recorded before the fix
                before.append(_cos(emb.embed(img[None])[0], want))
                emb.meta.channel_order = "bgr"
            print(f"channel order {source} {backbone}: cosine to the peer's preprocessing over {len(photos)} "
                  f"photos: before (RGB) mean {np.mean(before):.4f} min {np.min(before):.4f}; "
                  f"after (BGR) mean {np.mean(after):.6f} min {np.min(after):.6f}")


def loss_values() -> None:
    from faceforge.models.heads.circleloss import CircleLoss
    from faceforge.models.heads.classifier import PartialFC

    torch.manual_seed(0)
    pfc = PartialFC(CircleLoss(m=0.25, gamma=256.0), 128, 1000)
    emb, labels = torch.randn(256, 128), torch.randint(0, 1000, (256,))
    new = pfc(emb, labels)["loss"].item()
    cos = torch.nn.functional.normalize(emb.double()) @ torch.nn.functional.normalize(pfc.weight.double()).t()
    logits = CircleLoss(m=0.25, gamma=256.0)(cos.clamp(-1, 1), labels)
    ref = torch.nn.functional.cross_entropy(logits, labels).item()
    p = torch.softmax(logits.float(), 1)[torch.arange(256), labels]
    old = (-torch.log(p.clamp_min(1e-30))).mean().item()
    print(f"CircleLoss at init (256 x 1000 classes): old clamped {old:.2f}, log space {new:.2f}, "
          f"float64 reference {ref:.2f}")


def multi_face(n: int) -> None:
    from faceforge.align.detectors import get_detector
    from faceforge.align.select import pick_faces
    from faceforge.io.images import read_image

    det = get_detector("retinaface", threads=1)
    photos = sorted(SHARED.glob("celeba299/*/*.jpg"))[:n]
    several = differ = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for p in photos:
        img = read_image(p)
        faces = det.detect(img)
        if len(faces) > 1:
            several += 1
            a = pick_faces(faces, img.shape, "largest")[0]
            b = pick_faces(faces, img.shape, "largest_center")[0]
            differ += not np.allclose(a.box, b.box)
    print(f"multi-face: {len(photos)} CelebA photos, {several} with several faces, {differ} where the SDK's "
          f"old rule (largest) and align's (largest_center) pick different faces "
          f"({time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU)")


def align_fallback(pattern: str, n: int) -> None:
    import shutil

    from faceforge.align.folder import align_folder

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        files = sorted(SHARED.glob(pattern))[:n]
        for f in files:
            (src / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, src / f.parent.name / f.name)
        for rule in ("none", "center"):
            c = align_folder(src, Path(d) / rule, fallback=rule)
            print(f"align {pattern} ({len(files)} images) --fallback {rule}: aligned {c['aligned']}, no face "
                  f"{c['no_face']}, fallback {json.dumps(c['fallback'])}, {c['seconds']} s")


def dlib_raw() -> None:
    from faceforge.embed.dlib_embedder import dlib_available
    from faceforge.embed.extract import embed_images

    if not dlib_available():
        print("dlib: extra not installed, skipped")
        return
    from faceforge.embed.base import l2_normalize
    from faceforge.embed.loading import load_embedder

    names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    paths = [SHARED / "photos" / n for n in names]
    emb = load_embedder("dlib:resnet")
    chip = l2_normalize(embed_images(emb, paths).features)
    emb.prepare_photo = None  # before: the whole photo resized to 150x150
    whole = l2_normalize(embed_images(emb, paths).features)
    for label, f in (("before (whole photo resized)", whole), ("after (dlib chip)", chip)):
        same = [float(f[i] @ f[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
        diff = [float(f[i] @ f[3]) for i in range(3)]
        print(f"dlib:resnet on raw photos, {label}: same-person cosines {np.round(same, 3).tolist()}, "
              f"obama-biden {np.round(diff, 3).tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channel-photos", type=int, default=20)
    ap.add_argument("--celeba", type=int, default=400, help="CelebA photos for the multi-face count")
    ap.add_argument("--orl", type=int, default=400, help="ORL images to align")
    ap.add_argument("--celeba-align", type=int, default=1000, help="CelebA photos to align")
    args = ap.parse_args()
    torch.set_num_threads(1)
    channel_order(args.channel_photos)
    loss_values()
    dlib_raw()
    align_fallback("orl/s*/*.pgm", args.orl)
    align_fallback("celeba299/*/*.jpg", args.celeba_align)
    multi_face(args.celeba)


if __name__ == "__main__":
    main()
