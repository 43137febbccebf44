"""Identity-folder trees (``ROOT/<identity>/<image>``): listing them, naming outputs, and keeping
an output tree apart from its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


def list_identity_folder(root: Path, what: str | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files, labels and identity names of an identity-folder tree, in sorted order.

    With ``what`` (the command's name) a tree without images is a UserError, the same for every
    command that reads one."""
    if not root.exists():
        raise UserError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"dataset path is not a folder: {root}")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    kept: list[str] = []
    for name in names:
        imgs = sorted(
            p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not imgs:
            continue
        label = len(kept)
        kept.append(name)
        files.extend(imgs)
        labels.extend([label] * len(imgs))
    if what and not files:
        raise UserError(f"{what} source: no images under {root} (expected SRC/<identity>/<image>)")
    return files, np.asarray(labels, dtype=np.int64), kept


KEEP_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def output_name(name: str) -> str:
    """The aligned file's name: the source name when OpenCV can write its format, else ``name.png``."""
    return name if Path(name).suffix.lower() in KEEP_SUFFIXES else name + ".png"


def check_output_tree(src: Path, dst: Path, what: str = "align") -> tuple[Path, Path]:
    """Resolved (src, dst); a UserError unless dst is a folder apart from src (never inside it)."""
    if not src.exists():
        raise UserError(f"{what} source: folder not found: {src}")
    if not src.is_dir():
        raise UserError(f"{what} source: not a folder: {src}")
    s, d = src.resolve(), dst.resolve()
    if d == s:
        raise UserError(f"{what} destination: equals the source {src}; choose a separate folder")
    if s in d.parents:
        raise UserError(f"{what} destination: {dst} lies inside the source {src}; choose a folder outside it")
    if d in s.parents:
        raise UserError(f"{what} destination: {dst} contains the source {src}; choose a separate folder")
    if d.exists() and not d.is_dir():
        raise UserError(f"{what} destination: not a folder: {dst}")
    return s, d
