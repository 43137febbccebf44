"""GhostNet (Han et al., CVPR 2020) as FaceX-Zoo trains it (``backbone/GhostNet.py``).

A Ghost module makes half of its output channels with a 1x1 convolution and the other half with a
cheap depthwise 3x3 over those. For faces the stem has stride 1 (total stride 16: 112 -> 7x7) and
the ImageNet pooling/classifier is replaced by BN2d -> Dropout -> Flatten -> Linear(960*7*7, D) ->
BN1d. The embedding is returned raw (no L2 normalisation), like every faceforge backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.models.backbones._output_layer import facex_output_layer
from faceforge.registry import BACKBONES

# (kernel, expansion channels, out channels, SE ratio, stride); one inner tuple per stage
GHOSTNET_STAGES = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1),
     (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)),
)


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor``, never more than 10% down (TF MobileNet rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, se_ratio: float = 0.25, divisor: int = 4):
        super().__init__()
        reduced = make_divisible(channels * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)  # a module (not F.*) so MAC counters see it, as in the peer
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(F.relu(self.conv_reduce(self.avg_pool(x))))
        return x * (F.relu6(s + 3.0) / 6.0)  # hard sigmoid gate


class ConvBnAct(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv(x)))


def _relu(on: bool) -> list[nn.Module]:
    return [nn.ReLU(inplace=True)] if on else []


class GhostModule(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool = True, ratio: int = 2, dw_size: int = 3):
        super().__init__()
        self.cout = cout
        init = math.ceil(cout / ratio)
        new = init * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(cin, init, 1, 1, 0, bias=False), nn.BatchNorm2d(init), *_relu(relu)
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init, new, dw_size, 1, dw_size // 2, groups=init, bias=False),
            nn.BatchNorm2d(new),
            *_relu(relu),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        return torch.cat([x1, self.cheap_operation(x1)], dim=1)[:, : self.cout]


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, kernel: int = 3, stride: int = 1,
                 se_ratio: float = 0.0):
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(cin, mid, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, (kernel - 1) // 2, groups=mid, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, se_ratio) if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid, cout, relu=False)
        if cin == cout and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cin, kernel, stride, (kernel - 1) // 2, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.stride > 1:
            y = self.bn_dw(self.conv_dw(y))
        if self.se is not None:
            y = self.se(y)
        return self.ghost2(y) + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, embedding_size: int = 512, width: float = 1.0, drop_ratio: float = 0.2,
                 stages: tuple = GHOSTNET_STAGES, input_size: int = 112):
        super().__init__()
        self.embedding_size = embedding_size
        cin = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, cin, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        blocks = []
        stride = 1
        for stage in stages:
            layers = []
            for kernel, exp, c, se_ratio, s in stage:
                cout = make_divisible(c * width, 4)
                layers.append(GhostBottleneck(cin, make_divisible(exp * width, 4), cout, kernel, s, se_ratio))
                cin = cout
                stride *= s
            blocks.append(nn.Sequential(*layers))
        head = make_divisible(exp * width, 4)
        blocks.append(nn.Sequential(ConvBnAct(cin, head, 1)))
        self.blocks = nn.Sequential(*blocks)
        side = input_size // stride
        self.output_layer = facex_output_layer(head, side * side, embedding_size, drop_ratio)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.bn1(self.conv_stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register("ghostnet", input_size=(112, 112), template="arcface",
                    published_params=26.76e6, published_macs=194.49e6)
def ghostnet(embedding_size: int = 512, width: float = 1.0, drop_ratio: float = 0.2) -> GhostNet:
    """FaceX-Zoo GhostNet (yaml: width 1.0, drop_ratio 0.2)."""
    return GhostNet(embedding_size, width, drop_ratio)


# one bottleneck per resolution; same strides as the full net, so 112 -> 7x7
_TINY_STAGES = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((5, 72, 40, 0.25, 2),),
    ((3, 240, 80, 0.0, 2),),
    ((5, 672, 160, 0.25, 2), (5, 960, 160, 0.25, 1)),
)


@BACKBONES.register("ghostnet_tiny", input_size=(112, 112), template="arcface")
def ghostnet_tiny(embedding_size: int = 512) -> GhostNet:
    """A narrow five-stage GhostNet for interface tests."""
    return GhostNet(embedding_size, width=0.25, stages=_TINY_STAGES)
