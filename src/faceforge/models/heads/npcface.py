"""NPCFace (Zeng et al. 2020): collaborative margins on the target and the hard negatives.

A negative j is hard when cos θ_j > cos(θ_y + m) (``m`` only sets this mask). Hard negatives become
t·cos θ_j + a. The target gets an ArcFace margin that grows with the row's mean hard-negative cosine,
m' = m0 + m1·mean_{j hard}(cos θ_j) (m' = m0 for a row with no hard negative), computed under
no_grad: target cos(θ_y + m') (fallback cos θ − m'·sin m' where θ + m' > π).
Constants t = 1.1, a = 0.2, m0 = 0.4, m1 = 0.2 are those FaceX-Zoo ``head/NPCFace.py`` hard-codes.

``facex_compat=True`` reproduces that file's target: the margin only where cos θ_y > 0, with no
fallback. (Its ``.cuda()`` call and float32 mask are not reproduced.) Rows with label −1 pass through.
"""

import torch

from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("npcface")
class NPCFace(Margin):
    def __init__(
        self, s: float = 32.0, m: float = 0.35, m0: float = 0.4, m1: float = 0.2, t: float = 1.1,
        a: float = 0.2, facex_compat: bool = False,
    ):
        super().__init__()
        self.s, self.m, self.m0, self.m1, self.t, self.a = s, m, m0, m1, t, a
        self.compat = facex_compat

    def forward(self, cos, labels, **ctx):
        labels = labels.reshape(-1)
        has = labels >= 0
        c_y = target_cos(cos, labels).clamp(-1.0, 1.0)
        with torch.no_grad():
            boundary = arc_target(c_y, self.m, "none")
            hard = (cos > boundary.unsqueeze(1)) & has.unsqueeze(1)
            hard[has, labels[has]] = False
            count = hard.sum(1).clamp(min=1).to(cos.dtype)
            mean_hard = torch.where(hard, cos, torch.zeros_like(cos)).sum(1) / count
            m_new = self.m0 + self.m1 * mean_hard
        if self.compat:
            target = torch.where(c_y > 0, arc_target(c_y, m_new, "none"), c_y)
        else:
            target = arc_target(c_y, m_new, "msinm")
        out = torch.where(hard, self.t * cos + self.a, cos)
        return replace_target(out, labels, target) * self.s
