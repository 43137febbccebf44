"""``folder:ROOT`` — one sub-folder per identity (``ROOT/<identity>/<image>``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.dataset import SOURCES, FaceDataset, read_image
from faceforge.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


def list_identity_folder(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files, labels and identity names of an identity-folder tree, in sorted order."""
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
    return files, np.asarray(labels, dtype=np.int64), kept


class FolderDataset(FaceDataset):
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.files, self.labels, self.names = list_identity_folder(self.root)
        self.description = f"folder:{self.root}"

    def read(self, index: int) -> np.ndarray:
        return read_image(self.files[index])


@SOURCES.register("folder")
def open_folder(path: str) -> FolderDataset:
    return FolderDataset(path)
