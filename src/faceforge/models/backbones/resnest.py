"""FaceX-Zoo's ResNeSt (``backbone/resnest/``, after zhanghang1989/ResNeSt; Zhang et al., 2020).

Split-attention bottlenecks (radix 2, cardinality 1, width 64) in a ResNet-D body: strided blocks
average-pool before the 3x3 split-attention conv is applied at stride 1 ("avd", avd_first=False),
and projection shortcuts average-pool then use a stride-1 1x1 conv ("avg_down"). FaceX-Zoo drops the
ImageNet stem and max-pool for a 3x3 stride-1 conv+BN+PReLU and lets every stage, the first
included, halve the resolution: 112 -> 56 -> 28 -> 14 -> 7. The head is
BN -> dropout -> flatten -> Linear(2048*7*7) -> BN1d.

``state_dict`` keys, order and shapes equal FaceX-Zoo's ``ResNeSt(50, ...)``. FaceX-Zoo's
``forward`` ends in ``l2_norm``; ours returns the raw embedding like every faceforge backbone (the
peer fixture is therefore compared after L2-normalising our output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.errors import UserError
from faceforge.models.backbones._output_layer import facex_output_layer
from faceforge.registry import BACKBONES

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 200: (3, 24, 36, 3), 269: (3, 30, 48, 8)}
PLANES = (64, 128, 256, 512)


class SplitAttentionConv(nn.Module):
    """Split-attention 3x3 conv (ResNeSt eq. 1-3): ``radix`` grouped convs, softmax-weighted sum.

    Keys ``conv``, ``bn0``, ``fc1``, ``bn1``, ``fc2`` as in ResNeSt's ``SplAtConv2d``.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, radix: int = 2, cardinality: int = 1,
                 reduction: int = 4):
        super().__init__()
        self.radix, self.cardinality = radix, cardinality
        inter = max(cin * radix // reduction, 32)
        self.conv = nn.Conv2d(cin, cout * radix, 3, stride, 1, groups=cardinality * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(cout * radix)
        self.fc1 = nn.Conv2d(cout, inter, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, cout * radix, 1, groups=cardinality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.conv(x)))
        b, c = x.shape[:2]
        splits = torch.split(x, c // self.radix, dim=1)
        gap = sum(splits).mean((2, 3), keepdim=True)
        att = self.fc2(F.relu(self.bn1(self.fc1(gap))))
        if self.radix > 1:
            # r-softmax: across the radix splits, separately per cardinal group
            att = att.view(b, self.cardinality, self.radix, -1).transpose(1, 2)
            att = F.softmax(att, dim=1).reshape(b, -1, 1, 1)
        else:
            att = torch.sigmoid(att)
        return sum(a * s for a, s in zip(torch.split(att, c // self.radix, dim=1), splits))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, radix: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # avd: average-pool the 3x3 output instead of striding the conv (no parameters)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv2 = SplitAttentionConv(planes, planes, 1, radix)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(cin, planes * 4, 1, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Body(nn.Module):
    """Holds ``layer1..4`` so keys read ``body.layerN...`` as in FaceX-Zoo."""

    def __init__(self, blocks: Sequence[int], planes: Sequence[int], cin: int, radix: int):
        super().__init__()
        for k, (n, p) in enumerate(zip(blocks, planes), start=1):
            layers = [Bottleneck(cin, p, 2, radix)]
            layers += [Bottleneck(p * 4, p, 1, radix) for _ in range(n - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*layers))
            cin = p * 4
        self.num_layers = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, self.num_layers + 1):
            x = getattr(self, f"layer{k}")(x)
        return x


class ResNeSt(nn.Module):
    def __init__(
        self,
        blocks: Sequence[int],
        planes: Sequence[int] = PLANES,
        stem: int = 64,
        radix: int = 2,
        embedding_size: int = 512,
        drop_ratio: float = 0.4,
        out_hw: tuple[int, int] = (7, 7),
    ):
        super().__init__()
        if len(blocks) != len(planes):
            raise UserError(f"model.blocks: {len(blocks)} stages but {len(planes)} widths")
        self.embedding_size = embedding_size
        width = planes[-1] * Bottleneck.expansion
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem)
        )
        self.output_layer = facex_output_layer(width, out_hw[0] * out_hw[1], embedding_size, drop_ratio)
        self.body = Body(blocks, planes, stem, radix)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register(
    "resnest50", input_size=(112, 112), template="arcface",
    published_params=76.79e6, published_macs=5.55e9,
)
def resnest50(embedding_size: int = 512, drop_ratio: float = 0.4) -> ResNeSt:
    return ResNeSt(DEPTHS[50], PLANES, 64, 2, embedding_size, drop_ratio)


@BACKBONES.register("resnest_tiny", input_size=(112, 112), template="arcface")
def resnest_tiny(embedding_size: int = 32) -> ResNeSt:
    """One split-attention block per stage at 1/8-1/16 width, for interface tests."""
    return ResNeSt((1, 1, 1, 1), (4, 8, 8, 8), 8, 2, embedding_size, 0.0)
