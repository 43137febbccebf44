"""``folder:ROOT`` — one sub-folder per identity (``ROOT/<identity>/<image>``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.dataset import SOURCES, FaceDataset
from faceforge.io.folders import list_identity_folder
from faceforge.io.images import read_image


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
