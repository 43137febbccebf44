"""AdaCos (Zhang et al. 2019), the dynamic variant: logits s̃·cos θ with no margin.

Each training step sets (paper, Eq. 15 / Algorithm 1), from the current batch and under no_grad,

    s̃ = log(B_avg) / cos(min(π/4, θ_med)),  B_avg = mean_i Σ_{k≠y_i} exp(s̃_old·cos θ_{i,k}),

where θ_med is the median target angle, starting from s̃ = √2·log(C − 1); the new s̃ already scales
this step's logits. The scale is a registered buffer, so it is saved in checkpoints and survives
resume (FaceX-Zoo ``head/AdaCos.py`` keeps it as a plain attribute that resets). It is updated only
in training mode; in ``eval()`` the current scale is used unchanged (the peer updates on every
call). ``median="lower"`` takes the lower middle value like ``torch.median`` (FaceX-Zoo); the
default is the usual median (mean of the two middle values for an even count).
Rows with label −1 count in B_avg (all their columns are negatives) but not in θ_med.
"""

import math

import torch

from faceforge.errors import UserError
from faceforge.models.heads.base import Margin, target_cos, target_mask
from faceforge.registry import MARGINS


@MARGINS.register("adacos")
class AdaCos(Margin):
    def __init__(self, num_classes: int, median: str = "mean"):
        super().__init__()
        if num_classes < 2:
            raise UserError(f"head.num_classes: adacos needs at least 2 classes, got {num_classes}")
        if median not in ("mean", "lower"):
            raise UserError(f"head.median: '{median}' is not one of mean, lower")
        self.median = median
        init = math.sqrt(2.0) * math.log(num_classes - 1)
        self.register_buffer("scale", torch.tensor(init, dtype=torch.float64))

    def _update(self, cos, labels):
        has, onehot = target_mask(cos, labels)
        c = cos.detach()
        b_avg = torch.where(onehot, torch.zeros_like(c), torch.exp(self.scale.to(c.dtype) * c)).sum(1).mean()
        theta = torch.acos(target_cos(c, labels)[has].clamp(-1.0, 1.0))
        if theta.numel() == 0:
            return
        if self.median == "lower":
            med = theta.median()
        else:
            med = theta.quantile(0.5)
        new = torch.log(b_avg) / torch.cos(torch.clamp(med, max=math.pi / 4))
        self.scale.fill_(new.item())

    def forward(self, cos, labels, **ctx):
        if self.training:
            with torch.no_grad():
                self._update(cos, labels)
        return cos * self.scale.to(cos.dtype)
