"""ArcFace (Deng et al. 2019, Eq. 3): target logit s·cos(θ + m).

Where θ + m > π, cos(θ + m) is no longer decreasing in θ; by default the target falls back to
``cos θ − m·sin m`` as InsightFace's released code does. ``fallback="cos"`` keeps cos θ there
(FaceX-Zoo ``head/ArcFace.py`` with its ``margin_am: 0``), ``fallback="none"`` keeps cos(θ + m)
(arcface_torch). ``easy_margin`` applies the margin only where cos θ > 0.
"""

import torch

from faceforge.errors import UserError
from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS

FALLBACKS = ("msinm", "cos", "none")


@MARGINS.register("arcface")
class ArcFace(Margin):
    def __init__(self, s: float = 64.0, m: float = 0.5, easy_margin: bool = False, fallback: str = "msinm"):
        super().__init__()
        if fallback not in FALLBACKS:
            raise UserError(f"head.fallback: '{fallback}' is not one of {', '.join(FALLBACKS)}")
        self.s, self.m, self.easy_margin, self.fallback = s, m, easy_margin, fallback

    def forward(self, cos, labels, **ctx):
        c = target_cos(cos, labels).clamp(-1.0, 1.0)
        if self.easy_margin:
            phi = torch.where(c > 0, arc_target(c, self.m, "none"), c)
        else:
            phi = arc_target(c, self.m, self.fallback)
        return replace_target(cos, labels, phi) * self.s
