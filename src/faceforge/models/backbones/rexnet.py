"""ReXNet (Han et al., 2020, "Rethinking channel dimensions") as FaceX-Zoo trains it
(``backbone/ReXNets.py``).

Every inverted bottleneck widens the channels linearly (``final_ch / n_blocks`` per block), and a
block whose output is wider than its input adds the input to its first channels only. For faces
the stem has stride 1 (total stride 16: 112 -> 7x7), the last 1x1 convolution is fixed at 512
channels (``final_ch`` only sets the growth rate) and the head is BN2d -> Dropout -> Flatten ->
Linear(512*7*7, D) -> BN1d. FaceX-Zoo's yaml switches squeeze-excitation off (``use_se: 0``).
"""

from __future__ import annotations

from math import ceil

import torch
from torch import nn

from faceforge.models.backbones._output_layer import facex_output_layer
from faceforge.registry import BACKBONES


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout)]


class SE(nn.Module):
    def __init__(self, channels: int, se_ratio: int = 12):
        super().__init__()
        reduced = channels // se_ratio
        self.fc = nn.Sequential(
            nn.Conv2d(channels, reduced, 1), nn.BatchNorm2d(reduced), nn.ReLU(inplace=True),
            nn.Conv2d(reduced, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


class LinearBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int, use_se: bool = False,
                 se_ratio: int = 12):
        super().__init__()
        self.cin = cin
        self.use_shortcut = stride == 1 and cin <= cout
        layers: list[nn.Module] = []
        mid = cin
        if expand != 1:
            mid = cin * expand
            layers += [*_conv_bn(cin, mid), nn.SiLU()]
        layers += _conv_bn(mid, mid, 3, stride, groups=mid)
        if use_se:
            layers.append(SE(mid, se_ratio))
        layers.append(nn.ReLU6())
        layers += _conv_bn(mid, cout)
        self.out = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out(x)
        if self.use_shortcut:
            # the residual covers the first ``cin`` channels of the wider output
            out = torch.cat([out[:, : self.cin] + x, out[:, self.cin:]], dim=1)
        return out


class ReXNet(nn.Module):
    def __init__(self, embedding_size: int = 512, input_ch: int = 16, final_ch: int = 180,
                 width_mult: float = 1.0, depth_mult: float = 1.0, use_se: bool = False, se_ratio: int = 12,
                 dropout_ratio: float = 0.2, layers: tuple = (1, 2, 2, 3, 3, 5),
                 strides: tuple = (1, 2, 2, 2, 1, 2), head: int = 512, input_size: int = 112):
        super().__init__()
        self.embedding_size = embedding_size
        use_ses = (False, False, True, True, True, True)
        layers = [ceil(n * depth_mult) for n in layers]
        block_strides = sum(([s] + [1] * (n - 1) for s, n in zip(strides, layers)), [])
        block_se = sum(([se and use_se] * n for se, n in zip(use_ses, layers)), [])
        expands = [1] * layers[0] + [6] * sum(layers[1:])
        n_blocks = sum(layers)
        stem = 32 / width_mult if width_mult < 1.0 else 32
        inplanes = input_ch / width_mult if width_mult < 1.0 else input_ch
        # linear channel growth (peer arithmetic kept verbatim: float accumulation + round())
        ins, outs = [], []
        for i in range(n_blocks):
            if i == 0:
                ins.append(int(round(stem * width_mult)))
                outs.append(int(round(inplanes * width_mult)))
            else:
                ins.append(int(round(inplanes * width_mult)))
                inplanes += final_ch / (n_blocks * 1.0)
                outs.append(int(round(inplanes * width_mult)))
        features: list[nn.Module] = [*_conv_bn(3, int(round(stem * width_mult)), 3, 1), nn.SiLU()]
        for cin, cout, t, s, se in zip(ins, outs, expands, block_strides, block_se):
            features.append(LinearBottleneck(cin, cout, t, s, se, se_ratio))
        pen = int(head * width_mult)
        features += [*_conv_bn(outs[-1], pen), nn.SiLU()]
        self.features = nn.Sequential(*features)
        stride = 1
        for s in block_strides:
            stride *= s
        side = input_size // stride
        self.output_layer = facex_output_layer(pen, side * side, embedding_size, dropout_ratio)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.features(x))


@BACKBONES.register("rexnet_1_0", input_size=(112, 112), template="arcface",
                    published_params=15.20e6, published_macs=429.64e6)
def rexnet_1_0(embedding_size: int = 512, use_se: bool = False, se_ratio: int = 12,
               dropout_ratio: float = 0.2) -> ReXNet:
    """FaceX-Zoo ReXNet 1.0 (yaml: input_ch 16, final_ch 180, width/depth 1.0, use_se 0)."""
    return ReXNet(embedding_size, 16, 180, 1.0, 1.0, use_se, se_ratio, dropout_ratio)


@BACKBONES.register("rexnet_tiny", input_size=(112, 112), template="arcface")
def rexnet_tiny(embedding_size: int = 512) -> ReXNet:
    """Six blocks, narrow, with SE on, for interface tests."""
    return ReXNet(embedding_size, input_ch=8, final_ch=24, use_se=True, se_ratio=4,
                  layers=(1, 1, 1, 1, 1, 1), head=64)
