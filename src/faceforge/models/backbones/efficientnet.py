"""EfficientNet-B0 as FaceX-Zoo trains it for faces (``backbone/EfficientNets.py``).

Differences from the ImageNet network (Tan & Le, 2019), kept so FaceX-Zoo checkpoints load and
give the same embeddings:

* the stem convolution has stride 1 (total stride 16, so 112x112 gives a 7x7 map), yet the
  TensorFlow-style "same" padding of every later convolution is computed as if the stem had
  stride 2. Only the stride-2 5x5 depthwise convolution of stage 6 notices: it pads (2, 2) where
  true "same" padding would be (1, 2);
* the ImageNet classifier ``_fc`` (1280 -> 1000) stays in the state_dict but never runs;
* the embedding head is BN2d -> Dropout -> Flatten -> Linear(1280*7*7, D) -> BN1d.

Body BatchNorms use eps 1e-3 and momentum 0.01 (TensorFlow's 0.99); the two head norms use
PyTorch defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.models.backbones._output_layer import facex_output_layer
from faceforge.registry import BACKBONES

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage; SE ratio 0.25
B0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by ``width`` and rounded to ``divisor`` (never down by more than 10%)."""
    filters = filters * width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding fixed at construction for a nominal input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, image_size: int = 112,
                 groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)
        out = math.ceil(image_size / stride)
        total = max((out - 1) * stride + kernel - image_size, 0)
        self.same_pad = (total // 2, total - total // 2) * 2  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.same_pad):
            x = F.pad(x, self.same_pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual with squeeze-excitation (MobileNetV2/V3, EfficientNet)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, image_size: int,
                 se_ratio: float = 0.25):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, image_size=image_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, image_size=image_size, groups=mid)
        self._bn1 = _bn(mid)
        squeezed = max(1, int(cin * se_ratio))
        self._se_reduce = SameConv2d(mid, squeezed, 1, image_size=1, bias=True)
        self._se_expand = SameConv2d(squeezed, mid, 1, image_size=1, bias=True)
        self._project_conv = SameConv2d(mid, cout, 1, image_size=math.ceil(image_size / stride))
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor, drop_rate: float = 0.0) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.silu(self._bn0(self._expand_conv(x)))
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        s = F.adaptive_avg_pool2d(x, 1)
        s = self._se_expand(F.silu(self._se_reduce(s)))
        x = torch.sigmoid(s) * x
        x = self._bn2(self._project_conv(x))
        if self.residual:
            if self.training and drop_rate > 0:
                # drop-connect (stochastic depth) per sample, as in the TF reference
                keep = 1.0 - drop_rate
                mask = torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device))
                x = x / keep * mask
            x = x + inputs
        return x


class EfficientNet(nn.Module):
    def __init__(self, embedding_size: int = 512, width: float = 1.0, depth: float = 1.0,
                 image_size: int = 112, drop_ratio: float = 0.2, drop_connect_rate: float = 0.2,
                 stages: tuple = B0_STAGES, head_channels: int = 1280, num_classes: int = 1000):
        super().__init__()
        self.embedding_size = embedding_size
        self.drop_connect_rate = drop_connect_rate
        stem = round_filters(32, width)
        self._conv_stem = SameConv2d(3, stem, 3, 1, image_size=image_size)
        self._bn0 = _bn(stem)
        # FaceX-Zoo removed the stem stride but kept the padding bookkeeping of a stride-2 stem
        nominal = math.ceil(image_size / 2)
        blocks = []
        cin = stem
        for repeats, kernel, stride, expand, _, out in stages:
            cout = round_filters(out, width)
            for i in range(round_repeats(repeats, depth)):
                s = stride if i == 0 else 1
                blocks.append(MBConvBlock(cin, cout, kernel, s, expand, nominal))
                if i == 0:
                    nominal = math.ceil(nominal / stride)
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        head = round_filters(head_channels, width)
        self._conv_head = SameConv2d(cin, head, 1, image_size=nominal)
        self._bn1 = _bn(head)
        # ImageNet classifier of the original network: in FaceX-Zoo's state_dict, never run
        self._fc = nn.Linear(head, num_classes)
        side = image_size // 16
        self.output_layer = facex_output_layer(head, side * side, embedding_size, drop_ratio)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self._bn0(self._conv_stem(x)))
        n = len(self._blocks)
        for idx, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * idx / n)
        return F.silu(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register("efficientnet_b0", input_size=(112, 112), template="arcface",
                    published_params=33.44e6, published_macs=77.83e6)
def efficientnet_b0(embedding_size: int = 512, width: float = 1.0, depth: float = 1.0,
                    drop_ratio: float = 0.2, drop_connect_rate: float = 0.2) -> EfficientNet:
    """FaceX-Zoo EfficientNet-B0 (yaml: width 1.0, depth 1.0, image_size 112, drop_ratio 0.2)."""
    return EfficientNet(embedding_size, width, depth, 112, drop_ratio, drop_connect_rate)


@BACKBONES.register("efficientnet_tiny", input_size=(112, 112), template="arcface")
def efficientnet_tiny(embedding_size: int = 512) -> EfficientNet:
    """Narrow, shallow B0 for interface tests (one block per stage)."""
    return EfficientNet(embedding_size, width=0.25, depth=0.25, head_channels=64)
