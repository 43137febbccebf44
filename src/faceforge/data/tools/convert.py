"""``faceforge data convert SRC --to rec|lst|folder|packed DST``: between training formats.

Encoded JPEG bytes are copied as they are where the source keeps them (folders, lists, RecordIO);
other images are encoded once as JPEG. Corrupt images are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_bytes
from faceforge.data.dataset import FaceDataset
from faceforge.data.tools import open_any
from faceforge.data.tools.clean import safe_name
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage, decode_image

FORMATS = ("rec", "lst", "folder", "packed")


def _stored(ds: FaceDataset, i: int) -> bytes | None:
    """The bytes image ``i`` is stored as (RecordIO payload, file contents), when the source keeps them."""
    if callable(getattr(ds, "raw", None)):
        return ds.raw(i)
    if getattr(ds, "files", None) is not None:
        try:
            return Path(ds.files[i]).read_bytes()
        except OSError as e:
            raise CorruptImage(f"{ds.files[i]}: {e.strerror}") from None
    return None


def stored_jpeg(ds: FaceDataset, i: int) -> tuple[bytes | None, tuple[int, int] | None]:
    """``(JPEG bytes, (h, w))`` of image ``i`` when it is stored as a decodable JPEG, else (None, None)."""
    data = _stored(ds, i)
    if data is None or data[:2] != b"\xff\xd8":
        return None, None
    return data, decode_image(data, f"image {i}").shape[:2]


def _encoded(ds: FaceDataset, i: int, quality: int) -> tuple[bytes, tuple[int, int]]:
    """JPEG bytes of image ``i`` (the stored bytes when they already are a decodable JPEG)."""
    import cv2

    jpeg, shape = stored_jpeg(ds, i)
    if jpeg is not None:
        return jpeg, shape
    data = _stored(ds, i)
    img = decode_image(data, f"image {i}") if data is not None else ds.read(i)
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CorruptImage(f"image {i}: cannot encode")
    return enc.tobytes(), img.shape[:2]


def convert(src: str, to: str, dst: str | Path, quality: int = 95, size: tuple[int, int] = (112, 112),
            workers: int | None = None, progress: bool = False) -> dict:
    if to not in FORMATS:
        raise UserError(f"--to: unknown format '{to}' (valid: {', '.join(FORMATS)})")
    ds = open_any(src)
    dst = Path(dst)
    if to == "packed":
        from faceforge.data.tools.pack import pack_dataset

        return pack_dataset(ds, dst, size=size, workers=workers, progress=progress)
    if to == "lst":
        files = getattr(ds, "files", None)
        if files is None:
            raise UserError(f"{src}: a .lst lists image files and this source has none; convert to folder")
        from faceforge.data.readers.lists import write_lst

        write_lst(dst, [Path(f).resolve() for f in files], ds.labels)
        return {"output": str(dst), "images": len(files), "classes": ds.num_classes, "skipped": 0}
    order = np.argsort(ds.labels, kind="stable")
    skipped: list[str] = []
    if to == "folder":
        if dst.exists() and any(dst.iterdir()):
            raise UserError(f"{dst}: output folder exists and is not empty")
        names = ds.names or [str(c) for c in range(ds.num_classes)]
        folders = {}
        for c, n in enumerate(names):
            folders[c] = safe_name(str(n), f"id{c}")
        written = 0
        for i in order:
            try:
                data, _ = _encoded(ds, int(i), quality)
            except CorruptImage as e:
                skipped.append(str(e))
                continue
            atomic_write_bytes(dst / folders[int(ds.labels[i])] / f"{int(i):08d}.jpg", data)
            written += 1
        return {"output": str(dst), "images": written, "classes": ds.num_classes, "skipped": len(skipped),
                "skipped_examples": skipped[:20]}
    # rec: InsightFace layout in the folder dst
    from faceforge.data.recordio import write_insightface

    shape: list[tuple[int, int]] = []

    def items():
        for i in order:
            try:
                data, hw = _encoded(ds, int(i), quality)
            except CorruptImage as e:
                skipped.append(str(e))
                continue
            if not shape:
                shape.append(hw)
            yield int(ds.labels[i]), data

    if dst.suffix == ".rec":
        dst = dst.parent
    info = write_insightface(dst, items(), num_classes=ds.num_classes, image_size=size)
    if shape and tuple(shape[0]) != tuple(size):
        from faceforge.atomic import atomic_write_text

        atomic_write_text(dst / "property", f"{ds.num_classes},{shape[0][0]},{shape[0][1]}\n")
    return {"output": str(dst), **info, "skipped": len(skipped), "skipped_examples": skipped[:20]}
