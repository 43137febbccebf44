"""AdaM-Softmax (Liu et al. 2019, "AdaptiveFace"): AM-Softmax with a learnable margin per class.

Target logit s·(cos θ − m_y); the extra term ``loss_margin`` = λ·(1 − mean_c m_c) pushes the
margins up (the paper's L_ad). This is the one margin that holds a parameter: the per-class margins
``margins`` [num_classes] live here, not in the classifier, because they are indexed by the same
columns as ``cos``. It therefore needs the full set of class columns (no Partial FC sampling):
``cos.shape[1]`` must equal ``num_classes``.

During training the margins are projected onto [0, 1] in place before use (as FaceX-Zoo
``head/AdaM_Softmax.py`` does), which makes the update a projected gradient step. The regulariser
averages over all classes, like the peer.
"""

import torch
from torch import nn

from faceforge.errors import UserError
from faceforge.models.heads.base import Margin, replace_target, target_cos
from faceforge.registry import MARGINS


@MARGINS.register("adam_softmax")
class AdaMSoftmax(Margin):
    def __init__(self, num_classes: int, s: float = 32.0, lamda: float = 70.0, m_init: float = 0.35):
        super().__init__()
        if num_classes < 1:
            raise UserError(f"head.num_classes: must be >= 1, got {num_classes}")
        self.s, self.lamda = s, lamda
        self.margins = nn.Parameter(torch.full((num_classes,), float(m_init)))

    def forward(self, cos, labels, **ctx):
        if cos.shape[1] != self.margins.shape[0]:
            raise UserError(
                f"head.num_classes: adam_softmax has {self.margins.shape[0]} class margins but got "
                f"{cos.shape[1]} class columns (it cannot be used with sampled/sharded classes)"
            )
        if self.training:
            with torch.no_grad():
                self.margins.clamp_(0.0, 1.0)
        m = self.margins.to(cos.dtype)
        labels = labels.reshape(-1)
        m_y = m[labels.clamp(min=0)]
        logits = replace_target(cos, labels, target_cos(cos, labels) - m_y) * self.s
        return {"logits": logits, "loss_margin": self.lamda * (1.0 - m.mean())}
