"""CosFace / AM-Softmax (Wang et al. 2018): target logit s·(cos θ − m)."""

from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("cosface")
class CosFace(Margin):
    def __init__(self, s: float = 64.0, m: float = 0.4):
        super().__init__()
        self.s, self.m = s, m

    def forward(self, cos, labels, **ctx):
        return replace_target(cos, labels, target_cos(cos, labels) - self.m) * self.s
