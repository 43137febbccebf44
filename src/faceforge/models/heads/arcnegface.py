"""ArcNegFace (Liu et al. 2019, "Towards Flops-constrained Face Recognition").

Target: ArcFace, cos(θ_y + m) (fallback cos θ − m·sin m where θ + m > π). Every negative j is
re-weighted by g_j = α·exp(−(cos θ_j − T_y)²/σ), T_y the target after its margin, and becomes
g_j·cos θ_j + g_j − 1; g is detached. α = 1.2, σ = 2 as FaceX-Zoo ``head/ArcNegFace.py`` (whose
distance is between cosines, as here). Rows with label −1 pass through (their T_y is elsewhere).
"""

import torch

from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("arcnegface")
class ArcNegFace(Margin):
    def __init__(self, s: float = 64.0, m: float = 0.5, alpha: float = 1.2, sigma: float = 2.0):
        super().__init__()
        self.s, self.m, self.alpha, self.sigma = s, m, alpha, sigma

    def forward(self, cos, labels, **ctx):
        labels = labels.reshape(-1)
        has = labels >= 0
        target = arc_target(target_cos(cos, labels), self.m, "msinm")
        with torch.no_grad():
            g = self.alpha * torch.exp(-((cos - target.unsqueeze(1)) ** 2) / self.sigma)
            g = torch.where(has.unsqueeze(1), g, torch.ones_like(g))
        out = g * cos + g - 1.0
        return replace_target(out, labels, target) * self.s
