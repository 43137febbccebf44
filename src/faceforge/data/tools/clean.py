"""``faceforge data clean SRC DST``: a copy of an identity-folder tree that training cannot trip over.

Every image is decoded; undecodable files are dropped, gray/RGBA/CMYK/palette images become RGB JPEG,
file and identity names become safe ASCII (``[A-Za-z0-9._-]``, collisions numbered), and exact
duplicates (same bytes, anywhere in the tree) are kept once. RGB JPEGs are copied byte for byte.
SRC is never written to.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_bytes, atomic_write_text
from faceforge.data.tools import check_new_output
from faceforge.io.folders import list_identity_folder
from faceforge.io.images import CorruptImage, decode_raw

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, fallback: str = "x") -> str:
    """ASCII transliteration with every other character replaced by ``_``; never empty or dotted."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE.sub("_", ascii_).strip("._") or fallback
    return safe[:120]


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, k = name, 2
    while candidate.lower() in taken:
        candidate = f"{stem}_{k}{dot}{ext}"
        k += 1
    taken.add(candidate.lower())
    return candidate


def _jpeg_is_rgb(data: bytes) -> bool:
    """True for a baseline/progressive JPEG with 3 components (YCbCr), i.e. safe to copy as is."""
    if data[:2] != b"\xff\xd8":
        return False
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[i + 9] == 3
        i += 2 + length
    return False


def _convert(data: bytes, quality: int) -> tuple[bytes | None, str]:
    """(output JPEG bytes or None if undecodable, what the input was)."""
    import cv2

    try:
        raw = decode_raw(data)
        if _jpeg_is_rgb(data) and raw.ndim == 3 and raw.shape[2] == 3:
            return data, "rgb-jpeg"
        # IMREAD_COLOR handles gray, palette, 16-bit and CMYK/YCCK JPEG colour conversion
        color = decode_raw(data, flags=cv2.IMREAD_COLOR)
    except CorruptImage:
        return None, "corrupt"
    if raw.ndim == 2:
        kind = "gray"
    elif raw.shape[2] == 4:
        kind = "cmyk" if data[:2] == b"\xff\xd8" else "rgba"
        if kind == "rgba":  # composite on white so transparent pixels do not turn black
            alpha = raw[..., 3:4].astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)
            rgb = raw[..., :3].astype(np.float32) / (257.0 if raw.dtype == np.uint16 else 1.0)
            color = np.clip(rgb * alpha + 255.0 * (1 - alpha), 0, 255).astype(np.uint8)
    elif data[:2] == b"\xff\xd8":
        kind = "cmyk"  # a 4-component JPEG decodes to 3 channels
    else:
        kind = "other-format"
    ok, enc = cv2.imencode(".jpg", color, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return (enc.tobytes() if ok else None), kind


def clean(src: str | Path, dst: str | Path, quality: int = 95, report: str | Path | None = None) -> dict:
    """Write the cleaned copy of ``src`` to ``dst`` and return (and save as JSON) the report."""
    src, dst = Path(src), Path(dst)
    files, labels, names = list_identity_folder(src, "clean")
    check_new_output(src, dst)
    dst.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    id_taken: set[str] = set()
    id_names: dict[int, str] = {}
    file_taken: dict[int, set[str]] = {}
    counts = {"images_in": len(files), "images_out": 0, "copied": 0, "converted": 0, "corrupt": 0,
              "duplicates": 0, "renamed_files": 0, "renamed_identities": 0, "identities_in": len(names),
              "identities_out": 0}
    changes: dict[str, list] = {"corrupt": [], "converted": [], "duplicates": [], "renamed": []}
    for path, label in zip(files, labels):
        rel = str(path.relative_to(src))
        try:
            data = path.read_bytes()
        except OSError as e:
            counts["corrupt"] += 1
            changes["corrupt"].append(f"{rel}: {e.strerror}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            counts["duplicates"] += 1
            changes["duplicates"].append({"file": rel, "same_as": seen[digest]})
            continue
        out, kind = _convert(data, quality)
        if out is None:
            counts["corrupt"] += 1
            changes["corrupt"].append(rel)
            continue
        seen[digest] = rel
        label = int(label)
        if label not in id_names:
            ident = _unique(safe_name(names[label], f"id{label}"), id_taken)
            id_names[label] = ident
            file_taken[label] = set()
            if ident != names[label]:
                counts["renamed_identities"] += 1
                changes["renamed"].append({"from": names[label], "to": ident})
            (dst / ident).mkdir(exist_ok=True)
        stem = safe_name(path.stem, "img")
        name = _unique(f"{stem}.jpg", file_taken[label])
        if name != path.name:
            if Path(name).stem != path.stem:
                counts["renamed_files"] += 1
                changes["renamed"].append({"from": rel, "to": f"{id_names[label]}/{name}"})
        if kind == "rgb-jpeg":
            counts["copied"] += 1
        else:
            counts["converted"] += 1
            changes["converted"].append({"file": rel, "was": kind})
        atomic_write_bytes(dst / id_names[label] / name, out)
        counts["images_out"] += 1
    counts["identities_out"] = len(id_names)
    result = {"source": str(src), "output": str(dst), "counts": counts, "changes": changes}
    report_path = Path(report) if report else dst / "clean_report.json"
    atomic_write_text(report_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    result["report"] = str(report_path)
    return result


def summary(result: dict) -> str:
    c = result["counts"]
    return (
        f"clean: {c['images_in']} images in {c['identities_in']} identities -> {c['images_out']} images in "
        f"{c['identities_out']} identities ({c['copied']} copied, {c['converted']} converted to RGB JPEG, "
        f"{c['corrupt']} corrupt dropped, {c['duplicates']} duplicates dropped, {c['renamed_files']} files "
        f"and {c['renamed_identities']} identities renamed); report: {result['report']}"
    )
