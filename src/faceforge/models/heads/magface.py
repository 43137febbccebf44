"""MagFace (Meng et al. 2021): ArcFace with a margin that grows with the feature norm a = ‖f‖.

a is clamped to [l_a, u_a]; m(a) = l_m + (u_m − l_m)·(a − l_a)/(u_a − l_a); target s·cos(θ + m(a));
the extra term ``loss_g`` = λ_g·mean(g(a)), g(a) = a/u_a² + 1/a (paper Eq. 5). Gradients reach the
norms through both m(a) and g(a) (zero outside [l_a, u_a], where the clamp is flat).

Where θ + m(a) > π the target falls back to cos θ − m·sin m (the authors' code, as ArcFace);
``fallback="cos"`` reproduces FaceX-Zoo ``head/MagFace.py`` with ``margin_am: 0`` (no margin there).
"""


from faceforge.errors import UserError
from faceforge.models.heads._angular import arc_target
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("magface")
class MagFace(Margin):
    needs = ("norms",)

    def __init__(
        self,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lamda_g: float = 20.0,
        fallback: str = "msinm",
    ):
        super().__init__()
        if not (0 < l_a < u_a):
            raise UserError(f"head.l_a/u_a: need 0 < l_a < u_a, got {l_a}, {u_a}")
        if fallback not in ("msinm", "cos", "none"):
            raise UserError(f"head.fallback: '{fallback}' is not one of msinm, cos, none")
        self.s, self.l_a, self.u_a, self.l_m, self.u_m = s, l_a, u_a, l_m, u_m
        self.lamda_g, self.fallback = lamda_g, fallback

    def forward(self, cos, labels, norms=None, **ctx):
        if norms is None:
            raise UserError("head: magface needs the embedding norms (norms=...)")
        a = norms.reshape(-1).to(cos.dtype).clamp(self.l_a, self.u_a)
        m = self.l_m + (self.u_m - self.l_m) * (a - self.l_a) / (self.u_a - self.l_a)
        phi = arc_target(target_cos(cos, labels), m, self.fallback)
        g = a / (self.u_a**2) + 1.0 / a
        return {"logits": replace_target(cos, labels, phi) * self.s, "loss_g": self.lamda_g * g.mean()}
