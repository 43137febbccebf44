"""CurricularFace (Huang et al. 2020): ArcFace target plus adaptively weighted hard negatives.

Target T(cos θ_y) = cos(θ_y + m) (fallback cos θ − m·sin m where θ + m > π, as the authors' code);
a negative j is hard when cos θ_j > cos(θ_y + m) and becomes cos θ_j·(t + cos θ_j) (Eq. 7/8).
t is an exponential moving average of the batch's mean target cosine, updated before it is used:
t ← alpha·mean(cos θ_y) + (1 − alpha)·t, starting at 0. ``alpha`` defaults to 0.01, the weight the
authors' code (and FaceX-Zoo ``head/CurricularFace.py``) gives the new batch.

t is a registered buffer (saved in checkpoints). It is updated only in training mode; FaceX-Zoo
updates it on every forward, eval and no_grad included. Rows with label −1 neither update t nor have
hard negatives (their target is in another shard).
"""

import torch

from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("curricularface")
class CurricularFace(Margin):
    def __init__(self, s: float = 64.0, m: float = 0.5, alpha: float = 0.01):
        super().__init__()
        self.s, self.m, self.alpha = s, m, alpha
        self.register_buffer("t", torch.zeros((), dtype=torch.float64))

    def forward(self, cos, labels, **ctx):
        labels = labels.reshape(-1)
        has = labels >= 0
        c_y = target_cos(cos, labels).clamp(-1.0, 1.0)
        if self.training and bool(has.any()):
            with torch.no_grad():
                self.t.mul_(1.0 - self.alpha).add_(self.alpha * c_y[has].to(self.t.dtype).mean())
        boundary = arc_target(c_y, self.m, "none")
        hard = (cos > boundary.detach().unsqueeze(1)) & has.unsqueeze(1)
        t = self.t.to(cos.dtype)
        out = torch.where(hard, cos * (t + cos), cos)
        return replace_target(out, labels, arc_target(c_y, self.m, "msinm")) * self.s
