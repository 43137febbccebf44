"""TF-NAS-A (Hu et al., ECCV 2020) as FaceX-Zoo trains it (``backbone/TF_NAS.py``).

A searched MobileNetV2-style network: inverted residual blocks with per-block expansion widths,
kernel sizes, optional squeeze-excitation and ReLU (early) or Swish (later) activations. For faces
the stem has stride 1 (total stride 16: 112 -> 7x7) and the head is
Dropout -> Flatten -> Linear(1280*7*7, D) -> BN1d (no BN2d before it, unlike its siblings).

State_dict compatibility note: in ``first_stem`` and ``feature_mix_layer`` the BatchNorm is
registered before the convolution (the peer's base class builds it first), so those keys come
``bn`` first even though the convolution runs first.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.registry import BACKBONES

# (in, mid, se, out, kernel, stride, activation) per block, grouped by stage (FaceX-Zoo TF_NAS_A)
TF_NAS_A_STAGES = (
    ((16, 83, 32, 24, 3, 2, "relu"), (24, 128, 0, 24, 5, 1, "relu")),
    ((24, 138, 48, 40, 3, 2, "swish"), (40, 297, 0, 40, 3, 1, "swish"), (40, 170, 80, 40, 5, 1, "swish")),
    ((40, 248, 80, 80, 5, 2, "swish"), (80, 500, 0, 80, 3, 1, "swish"), (80, 424, 0, 80, 3, 1, "swish"),
     (80, 477, 0, 80, 3, 1, "swish")),
    ((80, 504, 160, 112, 3, 1, "swish"), (112, 796, 0, 112, 3, 1, "swish"),
     (112, 723, 224, 112, 3, 1, "swish"), (112, 555, 224, 112, 3, 1, "swish")),
    ((112, 813, 0, 192, 3, 2, "swish"), (192, 1370, 0, 192, 3, 1, "swish"),
     (192, 1138, 384, 192, 3, 1, "swish"), (192, 1359, 384, 192, 3, 1, "swish")),
    ((192, 1203, 384, 320, 5, 1, "swish"),),
)


def _act(kind: str) -> nn.Module:
    return {"relu": nn.ReLU, "swish": nn.SiLU, "none": nn.Identity}[kind]()


class ConvLayer(nn.Module):
    """Conv -> BN -> activation, with the BN registered first (peer key order)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: str = "relu"):
        super().__init__()
        self.bn = nn.BatchNorm2d(cout)
        self.act = _act(act)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBInvertedResBlock(nn.Module):
    def __init__(self, cin: int, mid: int, se: int, cout: int, kernel: int = 3, stride: int = 1,
                 act: str = "relu"):
        super().__init__()
        if mid > cin:
            self.inverted_bottleneck = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(cin, mid, 1, 1, 0, bias=False), bn=nn.BatchNorm2d(mid), act=_act(act)
            ))
        else:  # no expansion: the depthwise conv runs on the input width
            self.inverted_bottleneck = None
            mid = cin
        self.depth_conv = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            bn=nn.BatchNorm2d(mid),
            act=_act(act),
        ))
        if se > 0:
            self.squeeze_excite = nn.Sequential(OrderedDict(
                conv_reduce=nn.Conv2d(mid, se, 1, 1, 0, bias=True),
                act=_act(act),
                conv_expand=nn.Conv2d(se, mid, 1, 1, 0, bias=True),
            ))
        else:
            self.squeeze_excite = None
        self.point_linear = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(mid, cout, 1, 1, 0, bias=False), bn=nn.BatchNorm2d(cout)
        ))
        self.has_residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.inverted_bottleneck is None else self.inverted_bottleneck(x)
        y = self.depth_conv(y)
        if self.squeeze_excite is not None:
            y = y * torch.sigmoid(self.squeeze_excite(F.adaptive_avg_pool2d(y, 1)))
        y = self.point_linear(y)
        return y + x if self.has_residual else y


class TFNAS(nn.Module):
    def __init__(self, embedding_size: int = 512, drop_ratio: float = 0.2, stages: tuple = TF_NAS_A_STAGES,
                 stem: int = 32, head: int = 1280, input_size: int = 112):
        super().__init__()
        self.embedding_size = embedding_size
        self.first_stem = ConvLayer(3, stem, 3, 1, act="relu")
        first = stages[0][0][0]
        self.second_stem = MBInvertedResBlock(stem, stem, stem // 4, first, 3, 1, act="relu")
        stride = 1
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"stage{i}", nn.Sequential(*(MBInvertedResBlock(*b) for b in stage)))
            for b in stage:
                stride *= b[5]
        self.num_stages = len(stages)
        self.feature_mix_layer = ConvLayer(stages[-1][-1][3], head, 1, 1, act="none")
        side = input_size // stride
        self.output_layer = nn.Sequential(
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(head * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.second_stem(self.first_stem(x))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        return self.feature_mix_layer(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register("tf_nas_a", input_size=(112, 112), template="arcface",
                    published_params=39.59e6, published_macs=534.41e6)
def tf_nas_a(embedding_size: int = 512, drop_ratio: float = 0.2) -> TFNAS:
    """FaceX-Zoo TF-NAS-A (yaml: drop_ratio 0.2)."""
    return TFNAS(embedding_size, drop_ratio)


_TINY_STAGES = (
    ((8, 24, 8, 8, 3, 2, "relu"),),
    ((8, 24, 0, 16, 3, 2, "swish"),),
    ((16, 48, 8, 16, 5, 2, "swish"),),
    ((16, 48, 0, 16, 3, 1, "swish"),),
    ((16, 64, 16, 24, 3, 2, "swish"),),
    ((24, 64, 0, 32, 3, 1, "swish"),),
)


@BACKBONES.register("tf_nas_tiny", input_size=(112, 112), template="arcface")
def tf_nas_tiny(embedding_size: int = 512) -> TFNAS:
    """A narrow one-block-per-stage TF-NAS for interface tests."""
    return TFNAS(embedding_size, stages=_TINY_STAGES, stem=8, head=64)
