"""FaceX-Zoo's ResNet-IR / ResNet-IR-SE (``backbone/ResNets.py``, after InsightFace_Pytorch).

Improved-residual units (Deng et al., ArcFace, sec. 3.3): BN -> conv3x3 -> PReLU -> conv3x3(stride)
-> BN, optionally followed by squeeze-excitation; the shortcut is a strided identity (a 1x1 max-pool)
or conv1x1+BN when the width changes. The head is BN -> dropout -> flatten -> Linear -> BN1d.

``state_dict`` keys, order and shapes equal FaceX-Zoo's ``Resnet`` so its checkpoints load as is;
``forward`` returns the raw embedding (FaceX-Zoo L2-normalises inside the backbone; faceforge leaves
that to the head).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from faceforge.errors import UserError
from faceforge.models.backbones._output_layer import facex_output_layer
from faceforge.registry import BACKBONES

# units per stage; every stage starts with a stride-2 unit
DEPTHS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)


class SqueezeExcite(nn.Module):
    """SE gate with bias-free 1x1 convs (keys ``fc1``, ``fc2``), reduction 16."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        # a module rather than x.mean() so hook-based MAC counters see the pooling, as THOP did
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.avg_pool(x)
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))
        return x * w


class IRUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, se: bool):
        super().__init__()
        if in_ch == out_ch:
            # FaceX-Zoo's MaxPool2d(1, stride): plain subsampling, no parameters
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        layers = [
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if se:
            layers.append(SqueezeExcite(out_ch))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class ResNetIR(nn.Module):
    """``units`` per stage at ``widths``; the input must give an ``out_hw`` grid after 4 halvings."""

    def __init__(
        self,
        units: Sequence[int],
        widths: Sequence[int] = WIDTHS,
        se: bool = False,
        embedding_size: int = 512,
        drop_ratio: float = 0.4,
        out_hw: tuple[int, int] = (7, 7),
    ):
        super().__init__()
        if len(units) != len(widths):
            raise UserError(f"model.units: {len(units)} stages but {len(widths)} widths")
        self.embedding_size = embedding_size
        stem = widths[0]
        # attribute order fixes state_dict order: input_layer, output_layer, body (as FaceX-Zoo)
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem)
        )
        self.output_layer = facex_output_layer(widths[-1], out_hw[0] * out_hw[1], embedding_size, drop_ratio)
        body = []
        in_ch = stem
        for n, width in zip(units, widths):
            for i in range(n):
                body.append(IRUnit(in_ch, width, 2 if i == 0 else 1, se))
                in_ch = width
        self.body = nn.Sequential(*body)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


def _resnet(depth: int, se: bool, embedding_size: int, drop_ratio: float) -> ResNetIR:
    if depth not in DEPTHS:
        raise UserError(f"model.depth: {depth} is not one of {sorted(DEPTHS)}")
    return ResNetIR(DEPTHS[depth], WIDTHS, se, embedding_size, drop_ratio)


@BACKBONES.register(
    "resnet50_ir", input_size=(112, 112), template="arcface",
    published_params=43.57e6, published_macs=6.31e9,
)
def resnet50_ir(embedding_size: int = 512, drop_ratio: float = 0.4) -> ResNetIR:
    return _resnet(50, False, embedding_size, drop_ratio)


@BACKBONES.register(
    "resnet152_irse", input_size=(112, 112), template="arcface",
    published_params=71.14e6, published_macs=12.33e9,
)
def resnet152_irse(embedding_size: int = 512, drop_ratio: float = 0.4) -> ResNetIR:
    return _resnet(152, True, embedding_size, drop_ratio)


@BACKBONES.register("resnet_ir_tiny", input_size=(112, 112), template="arcface")
def resnet_ir_tiny(embedding_size: int = 32, se: bool = True) -> ResNetIR:
    """One unit per stage at 1/8-1/16 width, for interface tests."""
    return ResNetIR((1, 1, 1, 1), (16, 16, 32, 32), se, embedding_size, 0.0)
