"""SphereFace / A-Softmax (Liu et al., CVPR 2017), with the λ annealing of the authors' Caffe code.

Logits are ‖x‖·cos θ_j (weights normalised, features not); the target becomes
‖x‖·(λ·cos θ_y + ψ(θ_y)) / (1 + λ), ψ(θ) = (−1)^k cos(mθ) − 2k, k = ⌊mθ/π⌋, cos(mθ) evaluated as
the Chebyshev polynomial T_m(cos θ) (integer m = 1..4). Gradients flow through T_m and ‖x‖; k is
piecewise constant. ``needs = ("norms",)``.

λ = max(λ_min, base·(1 + γ·it)^(−power)); ``it`` is a registered buffer (saved in checkpoints) that
is incremented before use on every training-mode forward and left alone in ``eval()``. Defaults are
the Caffe prototxt's (base 1000, γ 0.12, power 1, λ_min 5); clcarwin/sphereface_pytorch uses
``lambda_base=1500, lambda_gamma=0.1`` (same power and floor).
"""

import torch

from faceforge.errors import UserError
from faceforge.models.heads._angular import sphere_psi
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("sphereface")
class SphereFace(Margin):
    needs = ("norms",)

    def __init__(
        self,
        m: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
    ):
        super().__init__()
        if int(m) != m or not 1 <= m <= 4:
            raise UserError(f"head.m: A-Softmax needs an integer margin 1..4, got {m}")
        self.m = int(m)
        self.base, self.gamma = lambda_base, lambda_gamma
        self.power, self.lambda_min = lambda_power, lambda_min
        self.register_buffer("it", torch.zeros((), dtype=torch.int64))

    @property
    def lamb(self) -> float:
        value = self.base * (1.0 + self.gamma * int(self.it)) ** (-self.power)
        return max(self.lambda_min, value)

    def forward(self, cos, labels, norms=None, **ctx):
        if norms is None:
            raise UserError("head: sphereface needs the embedding norms (norms=...)")
        if self.training:
            self.it += 1
        lam = self.lamb
        x = norms.reshape(-1, 1).to(cos.dtype)
        logits = cos * x
        c_y = target_cos(cos, labels)
        cx, px = c_y * x[:, 0], sphere_psi(c_y, self.m) * x[:, 0]
        # the authors' form: λ·cos + ψ over (1 + λ), written as cos − cos/(1+λ) + ψ/(1+λ)
        target = cx - cx / (1.0 + lam) + px / (1.0 + lam)
        return replace_target(logits, labels, target)
