"""ArcFace (Deng et al. 2019): target logit s·cos(θ + m).

When θ + m > π, cos(θ + m) is no longer monotonic in θ; following the paper's released code the
target falls back to ``cos θ − m·sin m`` (``easy_margin`` instead keeps cos θ when cos θ < 0).
"""

import math

import torch

from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("arcface")
class ArcFace(Margin):
    def __init__(self, s: float = 64.0, m: float = 0.5, easy_margin: bool = False):
        super().__init__()
        self.s, self.m, self.easy_margin = s, m, easy_margin

    def forward(self, cos, labels, **ctx):
        c = target_cos(cos, labels).clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - c * c).clamp(min=0.0))
        phi = c * math.cos(self.m) - sin * math.sin(self.m)
        if self.easy_margin:
            phi = torch.where(c > 0, phi, c)
        else:
            phi = torch.where(c > math.cos(math.pi - self.m), phi, c - self.m * math.sin(self.m))
        return replace_target(cos, labels, phi) * self.s
