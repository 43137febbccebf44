"""MV-Softmax (Wang et al. 2020): margin on the target, mis-classified negatives re-weighted.

A negative j is mis-classified when cos θ_j > f(m, θ_y) (the target after its margin); it becomes
h = t·cos θ_j + t − 1 (the paper's "fixed" variant, t = ``mv_weight``). ``variant="am"`` uses
f = cos θ_y − m, ``variant="arc"`` f = cos(θ_y + m) (with the ArcFace fallback where θ_y + m > π).

``facex_compat=True`` reproduces FaceX-Zoo ``head/MV_Softmax.py``: the AM target margin is applied
only where cos θ_y > m and the arc margin only where cos θ_y > 0 (no fallback), while the
mis-classified test still uses the unconditional f. Rows with label −1 pass through.
"""

import torch

from faceforge.errors import UserError
from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("mv_softmax")
class MVSoftmax(Margin):
    def __init__(
        self, s: float = 32.0, m: float = 0.35, mv_weight: float = 1.12, variant: str = "am",
        facex_compat: bool = False,
    ):
        super().__init__()
        if variant not in ("am", "arc"):
            raise UserError(f"head.variant: '{variant}' is not one of am, arc")
        self.s, self.m, self.t, self.variant, self.compat = s, m, mv_weight, variant, facex_compat

    def forward(self, cos, labels, **ctx):
        labels = labels.reshape(-1)
        has = labels >= 0
        c_y = target_cos(cos, labels).clamp(-1.0, 1.0)
        if self.variant == "am":
            f = c_y - self.m
            target = torch.where(c_y > self.m, f, c_y) if self.compat else f
        else:
            f = arc_target(c_y, self.m, "none")
            target = torch.where(c_y > 0, f, c_y) if self.compat else arc_target(c_y, self.m, "msinm")
        hard = (cos > f.detach().unsqueeze(1)) & has.unsqueeze(1)
        out = torch.where(hard, self.t * cos + self.t - 1.0, cos)
        return replace_target(out, labels, target) * self.s
