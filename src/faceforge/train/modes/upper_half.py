"""Upper-half-face training (FaceX-Zoo's "model2" for masked faces): the backbone sees only the
top half of the ArcFace-aligned face (eyes and brows, what a mask leaves visible), with its output
map shrunk to match (build the backbone with ``model.input_size: [56, 112]``). The checkpoint's
template becomes ``arcface_upper_half`` so evaluation crops probes the same way."""

from __future__ import annotations

from faceforge.errors import UserError
from faceforge.registry import MODES
from faceforge.train.modes.conventional import Conventional


class UpperHalf(Conventional):
    def __init__(self, backbone, num_classes, cfg, sample_rate: float = 1.0):
        h = backbone.meta["input_size"][0]
        if h > 64:
            raise UserError(
                "train.mode upper_half needs a half-height backbone: "
                f"set model.input_size=[56, 112] (got {h})"
            )
        super().__init__(backbone, num_classes, cfg, sample_rate)
        backbone.meta["template"] = "arcface_upper_half"
        self.rows = h

    def step(self, backbone, images, labels):
        return super().step(backbone, images[:, :, : self.rows, :], labels)


@MODES.register("upper_half")
def upper_half(backbone, num_classes, cfg, sample_rate: float = 1.0) -> UpperHalf:
    return UpperHalf(backbone, num_classes, cfg, sample_rate)
