"""SphereFace2 (Wen et al., ICLR 2022): binary classification per class instead of a softmax.

Each (sample, class) entry is its own binary problem on logits r·(g(cos)∓m-shifted) + b with
g(c) = 2·((c+1)/2)^t − 1, the shift d = (margin-adjusted value − cos) detached (the gradient w.r.t.
cos is r), positives weighted α and negatives 1 − α, and a learnable bias b initialised in closed
form so that training starts balanced. ``magn_type``: ``C`` additive cosine margin (g(cos) − m at
the target, g(cos) + m elsewhere), ``A`` additive angular (θ + m at the target), ``M``
multiplicative angular (m·θ at the target), as in OpenSphere ``sphereface2.py``.

The loss replaces the softmax cross-entropy: this margin returns ``loss`` itself, the mean of
lw·C/r·weighted binary cross-entropy over all entries (OpenSphere's normalisation). It needs every
class column, so it runs without Partial FC sampling on one process.
"""

import math

import torch
import torch.nn.functional as F

from faceforge.errors import UserError
from faceforge.models.heads.base import Margin, target_mask
from faceforge.registry import MARGINS


def bias_init(num_classes: int, alpha: float, r: float, m: float, t: float, magn_type: str) -> float:
    """The closed-form initial bias of the paper (OpenSphere's a_y / a_i per margin type)."""
    z = alpha / ((1.0 - alpha) * (num_classes - 1.0))
    if magn_type == "C":
        ay = r * (2.0 * 0.5**t - 1.0 - m)
        ai = r * (2.0 * 0.5**t - 1.0 + m)
    else:
        theta_y = min(math.pi, math.pi / 2.0 + m) if magn_type == "A" else min(math.pi, m * math.pi / 2.0)
        ay = r * (2.0 * ((math.cos(theta_y) + 1.0) / 2.0) ** t - 1.0)
        ai = r * (2.0 * 0.5**t - 1.0)
    return (
        math.log(2.0 * z) - ai - math.log(1.0 - z + math.sqrt((1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai)))
    )


@MARGINS.register("sphereface2")
class SphereFace2(Margin):
    replaces_cross_entropy = True

    def __init__(
        self,
        num_classes: int,
        magn_type: str = "C",
        alpha: float = 0.7,
        r: float = 40.0,
        m: float = 0.4,
        t: float = 3.0,
        lw: float = 10.0,
    ):
        super().__init__()
        if magn_type not in ("C", "A", "M"):
            raise UserError(f"head.magn_type: '{magn_type}' is not one of C, A, M")
        self.num_classes, self.magn_type = num_classes, magn_type
        self.alpha, self.r, self.m, self.t, self.lw = alpha, r, m, t, lw
        b = bias_init(num_classes, alpha, r, m, t, magn_type)
        self.b = torch.nn.Parameter(torch.tensor([b], dtype=torch.float32))

    def _g(self, c):
        return 2.0 * ((c + 1.0) / 2.0) ** self.t - 1.0

    def forward(self, cos, labels, **ctx):
        if cos.shape[1] != self.num_classes:
            raise UserError("sphereface2 needs every class column: use train.sample_rate=1 on one process")
        _, onehot = target_mask(cos, labels)
        with torch.no_grad():
            if self.magn_type == "C":
                value = torch.where(onehot, self._g(cos) - self.m, self._g(cos) + self.m)
            else:
                theta = torch.acos(cos.clamp(-1.0, 1.0))
                theta = torch.where(
                    onehot, theta + self.m if self.magn_type == "A" else theta * self.m, theta
                )
                value = self._g(torch.cos(theta.clamp(1e-5, 3.14159)))
            d = value - cos
        logits = self.r * (cos + d) + self.b.to(cos.dtype)
        target = onehot.to(cos.dtype)
        weight = (
            self.lw * self.num_classes / self.r * (self.alpha * target + (1.0 - self.alpha) * (1.0 - target))
        )
        loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
        return {"logits": logits, "loss": loss}
