"""Training-loader throughput: packed memmap vs decoding RecordIO JPEGs (PIL, OpenCV, PyTurboJPEG).

Builds a RecordIO of real faces (CelebA images from ../shared/data/celeba299, centre-cropped and
resized to 112x112, JPEG q95), packs it, and times ready float batches [B,3,112,112] through
``faceforge.data.loader.build_train_loader`` on one thread, in one process (workers=0)::

    .venv/bin/python bench/loader.py --images 2000 --batch 128 --epochs 2
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from faceforge.data.dataset import FaceDataset
from faceforge.data.loader import build_train_loader
from faceforge.data.readers.recordio import RecordIODataset
from faceforge.data.recordio import write_insightface
from faceforge.data.tools.pack import pack_dataset
from faceforge.io.images import CorruptImage

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def make_rec(out: Path, n: int) -> None:
    files = sorted((SHARED / "data" / "celeba299").rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no CelebA images under {SHARED / 'data' / 'celeba299'}")
    files = files[:n] if len(files) >= n else (files * (n // len(files) + 1))[:n]
    items = []
    names = {}
    for f in files:
        img = cv2.imread(str(f))
        h, w = img.shape[:2]
        s = min(h, w)
        img = cv2.resize(img[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2], (112, 112),
                         interpolation=cv2.INTER_AREA)
        label = names.setdefault(f.parent.name, len(names))
        items.append((label, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()))
    items.sort(key=lambda t: t[0])
    write_insightface(out, iter(items), num_classes=len(names))


class Decoded(FaceDataset):
    """RecordIO images decoded with a chosen library (the loader's per-image path)."""

    def __init__(self, rec: RecordIODataset, how: str):
        self.rec, self.labels, self.how = rec, rec.labels, how
        if how == "turbojpeg":
            from turbojpeg import TJPF_RGB, TurboJPEG

            self.tj, self.fmt = TurboJPEG(), TJPF_RGB

    def read(self, i: int) -> np.ndarray:
        data = self.rec.raw(i)
        if self.how == "pil":
            from PIL import Image

            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        if self.how == "opencv":
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise CorruptImage(str(i))
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return self.tj.decode(data, pixel_format=self.fmt)


def throughput(ds: FaceDataset, batch: int, epochs: int) -> tuple[float, float]:
    """(images/s of wall time, images/s of this process's CPU time); on a shared machine the CPU
    figure is the per-core rate, the wall figure includes time other processes took the core."""
    loader = build_train_loader(ds, batch, flip=True, workers=0, seed=0)
    for _ in loader.iter_from(0):  # warm-up (page cache, allocator)
        break
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for e in range(epochs):
        for images, _ in loader.iter_from(e):
            n += images.shape[0]
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_rec(tmp / "rec", args.images)
        rec = RecordIODataset(tmp / "rec")
        pack_dataset(rec, tmp / "x.ffpk", workers=1, progress=False)
        from faceforge.data.packed import PackedDataset

        packed = PackedDataset(tmp / "x.ffpk")
        rec_bytes = (tmp / "rec" / "train.rec").stat().st_size / len(rec)
        rows = [("packed memmap (faceforge)", throughput(packed, args.batch, args.epochs),
                 (tmp / "x.ffpk").stat().st_size / len(packed))]
        for how in ("pil", "opencv", "turbojpeg"):
            try:
                ds = Decoded(rec, how)
            except Exception as e:  # library missing: report the column as skipped
                note = f"skipped ({type(e).__name__}: {e})"
                rows.append((f"RecordIO JPEG + {how}", (note, note), rec_bytes))
                continue
            rows.append((f"RecordIO JPEG + {how}", throughput(ds, args.batch, args.epochs), rec_bytes))
    print(f"{args.images} images 112x112, batch {args.batch}, {args.epochs} epochs, 1 thread, workers=0")
    print("| path | images/s (wall) | images/s (process CPU time, 1 thread) | disk bytes/image |")
    print("|---|---|---|---|")
    for name, (wall, cpu), size in rows:
        w, c = (f"{v:,.0f}" if isinstance(v, float) else v for v in (wall, cpu))
        print(f"| {name} | {w} | {c} | {size:,.0f} |")


if __name__ == "__main__":
    main()
