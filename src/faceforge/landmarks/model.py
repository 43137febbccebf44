"""The landmark regressor: any registered backbone with ``2 x 88`` outputs, read as points.

Default: MobileNetV1 alpha 0.3, shallow (32 -> 64 -> 128x2 -> 256x2 -> 512x2 -> 1024), 160x160
input, average pool, fully connected 176 outputs. The outputs are offsets from the crop centre in
crop widths, so ``forward`` returns normalised crop coordinates ``(x + 0.5) / S`` in ``[0, 1]``
(a zero-initialised output is the crop centre, not a corner).

Checkpoints are faceforge checkpoints (``models/checkpoint.py``) whose ``backbone`` entry is the
176-output trunk, plus a ``landmarks`` entry: ``num_points``, ``input_size``, ``crop_scale``,
``coords: "normalised"``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from faceforge.data.synthetic import NUM_LANDMARKS
from faceforge.errors import UserError

DEFAULT_BACKBONE = "mobilenet_v1_shallow"
# How a detector box is moved before cropping (``predict.adjust_box``): down by ``box_shift`` sides and
# scaled by ``box_scale``. The defaults are the synthetic-label calibration (labelled boxes are the
# landmark extent); a model trained on detector boxes (``landmarks label``) records 0 and 1.
SYNTHETIC_BOX_SHIFT, SYNTHETIC_BOX_SCALE = 0.07, 1 / 1.05


class LandmarkNet(nn.Module):
    def __init__(self, backbone: nn.Module, crop_scale: float = 1.25, num_points: int = NUM_LANDMARKS,
                 box_shift: float = SYNTHETIC_BOX_SHIFT, box_scale: float = SYNTHETIC_BOX_SCALE):
        super().__init__()
        self.box_shift, self.box_scale = float(box_shift), float(box_scale)
        self.backbone = backbone
        self.num_points = num_points
        meta = getattr(backbone, "meta", {})
        size = tuple(meta.get("input_size", (160, 160)))
        if size[0] != size[1]:
            raise UserError(f"model: landmark crops are square; backbone input is {size[0]}x{size[1]}")
        self.input_size = int(size[0])
        self.mean, self.std = float(meta.get("mean", 0.5)), float(meta.get("std", 0.5))
        self.crop_scale = float(crop_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).view(-1, self.num_points, 2) + 0.5

    def record(self) -> dict:
        return {"num_points": self.num_points, "input_size": self.input_size, "crop_scale": self.crop_scale,
                "coords": "normalised", "mean": self.mean, "std": self.std,
                "box_shift": self.box_shift, "box_scale": self.box_scale}


def build_landmark_model(backbone: str = DEFAULT_BACKBONE, input_size: int = 160, crop_scale: float = 1.25,
                         box_shift: float = SYNTHETIC_BOX_SHIFT, box_scale: float = SYNTHETIC_BOX_SCALE,
                         **options) -> LandmarkNet:
    """A fresh regressor; ``input_size`` reaches backbones that take one, others keep their own."""
    from faceforge.models import build_backbone
    from faceforge.registry import BACKBONES

    opts = dict(options)
    if "input_size" in BACKBONES.entry(backbone).parameters():
        opts["input_size"] = (int(input_size), int(input_size))
    trunk = build_backbone(backbone, embedding_size=2 * NUM_LANDMARKS, **opts)
    fc = getattr(trunk, "fc", None)
    if isinstance(fc, nn.Linear):  # start at the crop centre with small outputs
        nn.init.normal_(fc.weight, std=1e-3)
        nn.init.zeros_(fc.bias)
    return LandmarkNet(trunk, crop_scale, box_shift=box_shift, box_scale=box_scale)


def save_landmark_model(path: str | Path, net: LandmarkNet, **extra) -> None:
    from faceforge.models.checkpoint import save_checkpoint

    save_checkpoint(path, net.backbone, landmarks=net.record(), **extra)


def load_landmark_model(path: str | Path) -> LandmarkNet:
    """The eval-mode regressor of a checkpoint written by ``faceforge landmarks train``."""
    from faceforge.models.checkpoint import load_backbone, read_checkpoint

    rec = read_checkpoint(path).get("landmarks")
    if not rec:
        raise UserError(f"{path}: not a landmark checkpoint (no 'landmarks' entry); "
                        "train one with 'faceforge landmarks train'")
    trunk = load_backbone(path)
    net = LandmarkNet(trunk, rec.get("crop_scale", 1.25), rec.get("num_points", NUM_LANDMARKS),
                      rec.get("box_shift", SYNTHETIC_BOX_SHIFT), rec.get("box_scale", SYNTHETIC_BOX_SCALE))
    return net.eval()
