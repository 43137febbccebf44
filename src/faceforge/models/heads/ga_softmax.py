"""GA-Softmax (Liu et al., "Learning with Hyperspherical Uniformity"/OpenSphere ``gasoftmaxloss``):
a logit linear in the angle, s·(1 − (2/π)·θ'), with θ' = m·θ at the target. The margin's offset
(m − 1)·θ is detached, as in OpenSphere (its "characteristic gradient detachment": the gradient
w.r.t. θ is the plain −s·2/π everywhere); ``detach_margin=False`` differentiates through m·θ.
OpenSphere writes 2/π as 0.63662 (``slope=0.63662`` reproduces it)."""

import math

import torch

from faceforge.models.heads.base import Margin, target_mask
from faceforge.registry import MARGINS


@MARGINS.register("ga_softmax")
class GASoftmax(Margin):
    def __init__(
        self, s: float = 30.0, m: float = 1.5, slope: float = 2.0 / math.pi, detach_margin: bool = True
    ):
        super().__init__()
        self.s, self.m, self.slope, self.detach_margin = s, m, slope, detach_margin

    def forward(self, cos, labels, **ctx):
        _, onehot = target_mask(cos, labels)
        theta = torch.acos(cos.clamp(-1.0 + 1e-5, 1.0 - 1e-5))
        offset = theta * (self.m - 1.0)
        if self.detach_margin:
            offset = offset.detach()
        theta = torch.where(onehot, theta + offset, theta)
        return self.s * (1.0 - self.slope * theta)
