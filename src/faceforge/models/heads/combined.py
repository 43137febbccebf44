"""Combined margin (ArcFace paper, Eq. 4): target logit s·(cos(m1·θ + m2) − m3).

(m1, m2, m3) = (1, 0.5, 0) is ArcFace, (1, 0, 0.35) CosFace, (m, 0, 0) the SphereFace-style
multiplicative margin without ψ. No θ + m > π correction is applied: the formula is the paper's.

``arcface_torch_compat=True`` reproduces InsightFace ``arcface_torch/losses.py: CombinedMarginLoss``:
with m3 > 0 it ignores m1 and m2 (target s·(cos − m3)); with m1 == 1 and m3 == 0 the target is
s·cos(arccos c + m2) and every other entry s·cos(arccos c); the margin is a constant shift for the
backward pass (gradient s everywhere, "straight-through"); anything else is refused (the peer
raises). ``interclass_filtering_threshold`` t > 0 zeroes (and stops the gradient of) every cosine
above t except the target, as the peer does before applying the margin.
"""

import math

import torch

from faceforge.errors import UserError
from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos, target_mask
from faceforge.registry import MARGINS


@MARGINS.register("combined")
class Combined(Margin):
    def __init__(
        self,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.5,
        m3: float = 0.0,
        interclass_filtering_threshold: float = 0.0,
        arcface_torch_compat: bool = False,
    ):
        super().__init__()
        # the peer's forward has exactly two branches: m3 > 0 (CosFace) and m1 == 1, m3 == 0 (ArcFace)
        if arcface_torch_compat and not (m3 > 0 or (m1 == 1.0 and m3 == 0.0)):
            raise UserError(
                f"head: arcface_torch_compat supports m3 > 0, or m1 == 1 with m3 == 0, only (got m1={m1}, "
                f"m3={m3}); arcface_torch raises for other settings"
            )
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.threshold = interclass_filtering_threshold
        self.compat = arcface_torch_compat

    def _paper_target(self, c: torch.Tensor) -> torch.Tensor:
        if self.m1 == 1.0:
            return arc_target(c, self.m2, "none") - self.m3
        eps = torch.finfo(c.dtype).eps
        theta = torch.acos(c.clamp(-1.0 + eps, 1.0 - eps))
        return torch.cos(self.m1 * theta + self.m2) - self.m3

    def forward(self, cos, labels, **ctx):
        filtered = None
        if self.threshold > 0:
            _, onehot = target_mask(cos, labels)
            filtered = (cos > self.threshold) & ~onehot
            cos = torch.where(filtered, cos.detach() * 0.0, cos)
        if not self.compat:
            return replace_target(cos, labels, self._paper_target(target_cos(cos, labels))) * self.s
        with torch.no_grad():
            if self.m3 > 0:
                value = replace_target(cos, labels, target_cos(cos, labels) - self.m3)
            else:
                theta = torch.acos(cos)
                has, onehot = target_mask(cos, labels)
                value = torch.cos(torch.where(onehot, theta + self.m2, theta))
        out = cos + (value - cos.detach())
        if filtered is not None:
            # filtered entries come out as s·cos(π/2) with zero gradient in the peer
            out = torch.where(filtered, torch.full_like(cos, math.cos(math.pi / 2)), out)
        return out * self.s


@MARGINS.register("arcface_torch")
def arcface_torch(
    s: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.5,
    m3: float = 0.0,
    interclass_filtering_threshold: float = 0.0,
) -> Combined:
    """arcface_torch's ``CombinedMarginLoss(s, m1, m2, m3, threshold)`` exactly: ``combined`` with
    ``arcface_torch_compat=True`` (its straight-through gradient and its m3 > 0 / m1 == 1 cases)."""
    return Combined(s, m1, m2, m3, interclass_filtering_threshold, arcface_torch_compat=True)
