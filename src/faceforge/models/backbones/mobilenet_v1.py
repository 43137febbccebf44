"""MobileNetV1 (Howard et al., arXiv 1704.04861) with width multiplier and a shallow variant.

Depthwise-separable stack 32 -> 64 -> 128x2 -> 256x2 -> 512x6 -> 1024x2 scaled by ``alpha``, global
average pool, then ``fc = Linear(C, embedding_size)``. ``shallow=True`` drops the five repeated
512-wide units and the last 1024 unit (32 -> 64 -> 128x2 -> 256x2 -> 512x2 -> 1024), the form used
with alpha=0.3 by light landmark regressors. The average pool makes the net input-size agnostic:
pass ``input_size`` for the record (e.g. 160x160) and ``embedding_size`` for the output width (e.g.
176 = 88 landmarks x 2).
"""

from __future__ import annotations

from torch import nn

from faceforge.registry import BACKBONES

# (output channels, stride) after the stem conv (32, stride 2)
FULL = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
SHALLOW = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (1024, 2)]


def _scaled(c: int, alpha: float) -> int:
    return max(8, int(round(c * alpha)))


def _conv_bn(cin, cout, kernel, stride, groups=1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = _conv_bn(cin, cin, 3, stride, groups=cin)
        self.pw = _conv_bn(cin, cout, 1, 1)

    def forward(self, x):
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    def __init__(self, embedding_size=512, alpha=1.0, shallow=False, input_size=(112, 112)):
        super().__init__()
        if alpha <= 0:
            raise ValueError("alpha must be > 0")
        c = _scaled(32, alpha)
        self.stem = _conv_bn(3, c, 3, 2)
        blocks = []
        for cout, stride in SHALLOW if shallow else FULL:
            blocks.append(DepthwiseSeparable(c, _scaled(cout, alpha), stride))
            c = _scaled(cout, alpha)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, embedding_size)
        self.embedding_size = embedding_size
        self.num_features = embedding_size
        self.input_size = tuple(input_size)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x):
        return self.blocks(self.stem(x))

    def forward(self, x):
        return self.fc(self.pool(self.forward_features(x)).flatten(1))


@BACKBONES.register("mobilenet_v1", input_size=(112, 112), template="arcface", mean=0.5, std=0.5,
                    source="MobileNetV1 (arXiv 1704.04861)")
def mobilenet_v1(embedding_size: int = 512, alpha: float = 1.0, shallow: bool = False,
                 input_size=(112, 112)) -> MobileNetV1:
    return MobileNetV1(embedding_size, float(alpha), bool(shallow), tuple(input_size))


@BACKBONES.register("mobilenet_v1_shallow", input_size=(160, 160), template="arcface", mean=0.5, std=0.5,
                    source="MobileNetV1 alpha 0.3, shallow (landmark regression trunk)")
def mobilenet_v1_shallow(embedding_size: int = 512, alpha: float = 0.3, input_size=(160, 160)) -> MobileNetV1:
    return MobileNetV1(embedding_size, float(alpha), True, tuple(input_size))
