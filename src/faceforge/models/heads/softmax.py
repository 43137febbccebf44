"""Plain softmax over scaled cosines (normalised weights and features, no margin)."""

from faceforge.models.heads.base import Margin
from faceforge.registry import MARGINS


@MARGINS.register("softmax")
class Softmax(Margin):
    def __init__(self, s: float = 30.0):
        super().__init__()
        self.s = s

    def forward(self, cos, labels, **ctx):
        return cos * self.s
