"""SphereFace-R (Liu et al., "SphereFace Revived", 2022), as in OpenSphere ``spherefacer.py``.

The target angle is multiplied by m, then mapped back to a "cosine" by one of three functions
(``magn_type``): ``v0`` ψ(mθ) = (−1)^k cos(mθ) − 2k; ``v1`` cos(clamp(mθ, 1e-5, 3.14159)); ``v2``
cos(θ'/m) with θ' the multiplied angles, i.e. cos θ at the target and cos(θ/m) elsewhere (the margin
moves to the negatives). With d = (that − cos θ) detached ("characteristic gradient detachment"),
logits are scale·(cos θ + d): the gradient w.r.t. cos is the scale. θ = acos(clamp(cos, ±(1 − 1e-5))).

``feature_norm``: ``hard`` scale = s (SphereFace-R H); ``none`` scale = ‖x‖ (N); ``soft`` scale = ‖x‖
plus ``loss_norm`` = (s/lw)·t·mean|‖x‖ − s| (S). OpenSphere's S loss is lw·CE/s + t·mean|‖x‖ − s|;
the engine adds plain CE, so ``loss_norm`` is scaled by s/lw to keep the peer's balance (the whole
loss is then s/lw times the peer's). For H and N the peer's lw/s (lw) factor is a constant loss scale
that the engine does not apply; the tests multiply it in.

m grows during training: m_it = m + dm·#{step in steps: step < it}, with the iteration counter
``iter`` (a registered buffer) incremented before use in training mode only.
OpenSphere v0's ``SphereFace`` head is ``magn_type="v0", feature_norm="hard"``.
"""

import torch

from faceforge.errors import UserError
from faceforge.models.heads._angular import psi_of_angle
from faceforge.models.heads.base import Margin, target_mask
from faceforge.registry import MARGINS


def sphere_r_shift(cos: torch.Tensor, labels: torch.Tensor, m: float, magn_type: str) -> torch.Tensor:
    """d = f(θ') − cos θ, detached, for θ' = θ with the target entry multiplied by m."""
    with torch.no_grad():
        _, onehot = target_mask(cos, labels)
        theta = torch.acos(cos.clamp(-1.0 + 1e-5, 1.0 - 1e-5))
        m_theta = torch.where(onehot, theta * m, theta)
        if magn_type == "v0":
            value = psi_of_angle(m_theta)
        elif magn_type == "v1":
            value = torch.cos(m_theta.clamp(1e-5, 3.14159))
        else:
            value = torch.cos(m_theta / m)
        return value - cos


@MARGINS.register("sphereface_r")
class SphereFaceR(Margin):
    needs = ("norms",)

    def __init__(
        self,
        s: float = 60.0,
        m: float = 1.4,
        magn_type: str = "v2",
        feature_norm: str = "hard",
        dm: float = 0.0,
        steps: tuple[int, ...] = (),
        t: float = 0.01,
        lw: float = 50.0,
    ):
        super().__init__()
        if magn_type not in ("v0", "v1", "v2"):
            raise UserError(f"head.magn_type: '{magn_type}' is not one of v0, v1, v2")
        if feature_norm not in ("hard", "none", "soft"):
            raise UserError(f"head.feature_norm: '{feature_norm}' is not one of hard, none, soft")
        if m < 1:
            raise UserError(f"head.m: must be >= 1, got {m}")
        self.s, self.m, self.magn_type, self.feature_norm = s, m, magn_type, feature_norm
        self.dm, self.steps, self.t, self.lw = dm, tuple(int(x) for x in steps), t, lw
        self.register_buffer("iter", torch.zeros((), dtype=torch.int64))

    @property
    def current_m(self) -> float:
        return self.m + self.dm * sum(1 for step in self.steps if step < int(self.iter))

    def forward(self, cos, labels, norms=None, **ctx):
        if self.training:
            self.iter += 1
        d = sphere_r_shift(cos, labels, self.current_m, self.magn_type)
        if self.feature_norm == "hard":
            return self.s * (cos + d)
        if norms is None:
            raise UserError(f"head: sphereface_r with feature_norm={self.feature_norm} needs norms=...")
        x = norms.reshape(-1, 1).to(cos.dtype)
        logits = x * (cos + d)
        if self.feature_norm == "none":
            return logits
        loss = (self.s / self.lw) * self.t * (x - self.s).abs().mean()
        return {"logits": logits, "loss_norm": loss}

