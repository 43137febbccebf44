"""SphereFace+ (Liu et al., NeurIPS 2018, "Learning towards Minimum Hyperspherical Energy").

SphereFace's loss plus λ_MHE·E over the normalised class weights ŵ of the classes in the mini-batch,
returned as ``loss_mhe``. ``needs = ("weight", "norms")`` (norms only for the A-Softmax form).

``form``: ``"a_softmax"`` (default, the paper's: :class:`SphereFace`, integer m, λ annealing) or
``"opensphere"`` (OpenSphere v0 ``SphereFacePlus``: SphereFace-R hard form, s·(cos + d), any m ≥ 1).

``mhe`` picks the energy (f_s(z) = z^(−s) for s > 0, log(1/z) for s = 0, s = ``mhe_power``):

* ``"paper"``: the paper's mini-batch approximation, E = 1/(B·(C−1)) Σ_i Σ_{j≠y_i} f_s(‖ŵ_{y_i} − ŵ_j‖),
  every sample's class against every other class of these columns (repeated labels count again);
  ``mhe_distance="angular"`` uses the angle arccos(ŵ_{y_i}·ŵ_j) instead of the chord (A-MHE).
* ``"opensphere"``: mean over pairs i < j of the *distinct* batch classes of
  arccos(clamp(ŵ_i·ŵ_j, ±(1 − 1e-5)))^(−s). OpenSphere returns NaN for a batch with one class;
  here that is 0 (no pairs).
* ``"layer"``: the MHE TensorFlow code's angular energy over all pairs of these columns,
  mean over i ≠ j of (θ_ij/π + 1e-4)^(−s) (its normalisation constant was not checked).

The Caffe SphereFace+ layer (``InterClass``, AMONG) is not offered: its backward is not the gradient
of the value it reports, so it cannot be reproduced as an energy under autograd.
"""

import math

import torch

from faceforge.errors import UserError
from faceforge.models.heads.base import Margin
from faceforge.models.heads.sphereface import SphereFace
from faceforge.models.heads.sphereface_r import SphereFaceR
from faceforge.registry import MARGINS

ENERGIES = ("paper", "opensphere", "layer")


def _f(z: torch.Tensor, s: float) -> torch.Tensor:
    return torch.log(1.0 / z) if s == 0 else z.pow(-s)


def mhe_energy(
    weight: torch.Tensor, labels: torch.Tensor, kind: str, s: float, distance: str = "euclidean"
) -> torch.Tensor:
    """The MHE energy of ``kind`` (see the module docstring) over the rows of ``weight`` [C, D]."""
    labels = labels.reshape(-1)
    labels = labels[labels >= 0]
    zero = weight.sum() * 0.0
    if kind == "paper":
        if labels.numel() == 0 or weight.shape[0] < 2:
            return zero
        w_y = weight[labels]
        gram = w_y @ weight.t()
        others = torch.ones_like(gram, dtype=torch.bool)
        others[torch.arange(labels.numel()), labels] = False
        if distance == "angular":
            eps = 1e-5
            z = torch.acos(gram[others].clamp(-1.0 + eps, 1.0 - eps))
        else:
            z = torch.sqrt((2.0 - 2.0 * gram[others]).clamp(min=1e-12))
        return _f(z, s).mean()
    if kind == "opensphere":
        classes = torch.unique(labels)
        if classes.numel() < 2:
            return zero
        w = weight[classes]
        i, j = torch.triu_indices(classes.numel(), classes.numel(), offset=1)
        theta = torch.acos((w @ w.t())[i, j].clamp(-1.0 + 1e-5, 1.0 - 1e-5))
        return _f(theta, s).mean()
    n = weight.shape[0]
    if n < 2:
        return zero
    off = ~torch.eye(n, dtype=torch.bool, device=weight.device)
    theta = torch.acos((weight @ weight.t())[off].clamp(-1.0, 1.0))
    return _f(theta / math.pi + 1e-4, s).mean()


@MARGINS.register("sphereface_plus")
class SphereFacePlus(Margin):
    needs = ("weight", "norms")

    def __init__(
        self,
        m: float = 4,
        lambda_mhe: float = 1.0,
        mhe_power: float = 2.0,
        mhe: str = "paper",
        mhe_distance: str = "euclidean",
        form: str = "a_softmax",
        s: float = 30.0,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
    ):
        super().__init__()
        if mhe not in ENERGIES:
            raise UserError(f"head.mhe: '{mhe}' is not one of {', '.join(ENERGIES)}")
        if mhe_distance not in ("euclidean", "angular"):
            raise UserError(f"head.mhe_distance: '{mhe_distance}' is not one of euclidean, angular")
        if mhe_power < 0:
            raise UserError(f"head.mhe_power: must be >= 0, got {mhe_power}")
        if form == "a_softmax":
            self.base = SphereFace(m, lambda_base, lambda_gamma, lambda_power, lambda_min)
        elif form == "opensphere":
            self.base = SphereFaceR(s=s, m=m, magn_type="v0", feature_norm="hard")
        else:
            raise UserError(f"head.form: '{form}' is not one of a_softmax, opensphere")
        self.lambda_mhe, self.mhe_power = lambda_mhe, mhe_power
        self.mhe, self.mhe_distance = mhe, mhe_distance

    def forward(self, cos, labels, weight=None, norms=None, **ctx):
        if weight is None:
            raise UserError("head: sphereface_plus needs the normalised class weights (weight=...)")
        logits = self.base(cos, labels, norms=norms)
        energy = mhe_energy(weight.to(cos.dtype), labels, self.mhe, self.mhe_power, self.mhe_distance)
        return {"logits": logits, "loss_mhe": self.lambda_mhe * energy}
