"""Circle loss, class-level form (Sun et al. 2020, Eq. 6 with one positive per row).

Target γ·α_p·(s_p − Δ_p), negatives γ·α_n·(s_n − Δ_n) with α_p = [1 + m − s_p]_+,
α_n = [s_n + m]_+ (weights detached, as the paper prescribes), Δ_p = 1 − m, Δ_n = m. Cross-entropy
over these logits is the paper's loss. Rows with label −1 have only negatives among these columns,
so every column gets the negative form.
"""

import torch

from faceforge.models.heads.base import Margin, target_mask
from faceforge.registry import MARGINS


@MARGINS.register("circleloss")
class CircleLoss(Margin):
    def __init__(self, m: float = 0.25, gamma: float = 256.0):
        super().__init__()
        self.m, self.gamma = m, gamma

    def forward(self, cos, labels, **ctx):
        _, onehot = target_mask(cos, labels)
        c = cos.clamp(-1.0, 1.0)
        alpha_p = (1.0 + self.m - c.detach()).clamp(min=0.0)
        alpha_n = (c.detach() + self.m).clamp(min=0.0)
        pos = alpha_p * (c - (1.0 - self.m))
        neg = alpha_n * (c - self.m)
        return torch.where(onehot, pos, neg) * self.gamma
