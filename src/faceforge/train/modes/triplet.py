"""Triplet fine-tuning of a (pretrained) backbone: P identities × K images, batch-hard or
semi-hard mining (Schroff et al., FaceNet 2015; Hermans et al., 2017). Used after margin training
to add a few tenths of a percent; start it from a checkpoint with ``model.init``."""

from __future__ import annotations

import torch.nn.functional as F

from faceforge.registry import MODES
from faceforge.train.modes.base import TrainingMode


class Triplet(TrainingMode):
    plan = "pk"

    def __init__(self, k: int = 4, margin: float = 0.2, mining: str = "batch_hard"):
        super().__init__()
        if mining not in ("batch_hard", "semi_hard"):
            from faceforge.errors import UserError

            raise UserError(f"train.mining: '{mining}' is not one of batch_hard, semi_hard")
        self.plan_k, self.margin, self.mining = k, margin, mining

    def step(self, backbone, images, labels):
        from faceforge.models.heads.triplet import triplet_loss

        emb = F.normalize(backbone(images).float(), dim=1)
        out = triplet_loss(emb, labels, margin=self.margin, mining=self.mining)
        return out if isinstance(out, dict) else {"loss": out}


@MODES.register("triplet")
def triplet(
    backbone, num_classes, cfg, k: int = 4, margin: float = 0.2, mining: str = "batch_hard"
) -> Triplet:
    return Triplet(k=k, margin=margin, mining=mining)
