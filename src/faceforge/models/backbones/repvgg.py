"""RepVGG (Ding et al., CVPR 2021) as FaceX-Zoo trains it (``backbone/RepVGG.py``).

This is the training-time form: every block sums a 3x3 conv+BN branch, a 1x1 conv+BN branch and,
when the shapes allow, an identity BN, then applies ReLU. ``fuse()`` folds the three branches into
one 3x3 convolution with bias (the paper's structural re-parameterisation) for inference; the
output does not change. For faces stage 0 has stride 1 (total stride 16: 112 -> 7x7) and the head
is BN2d -> Flatten -> Linear(C*7*7, D) -> BN1d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.registry import BACKBONES


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, padding: int, groups: int = 1) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False))
    seq.add_module("bn", nn.BatchNorm2d(cout))
    return seq


def _fold(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    std = (bn.running_var + bn.eps).sqrt()
    return kernel * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std


class RepVGGBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.cin, self.groups = cin, groups
        self.rbr_identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.rbr_dense = _conv_bn(cin, cout, 3, stride, 1, groups)
        self.rbr_1x1 = _conv_bn(cin, cout, 1, stride, 0, groups)
        self.rbr_reparam: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return F.relu(self.rbr_reparam(x))
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return F.relu(y)

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the three branches by one equivalent 3x3 convolution (deploy form)."""
        k, b = _fold(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = _fold(F.pad(self.rbr_1x1.conv.weight, [1, 1, 1, 1]), self.rbr_1x1.bn)
        k, b = k + k1, b + b1
        if self.rbr_identity is not None:
            per_group = self.cin // self.groups
            ident = torch.zeros_like(k)
            for i in range(self.cin):
                ident[i, i % per_group, 1, 1] = 1.0
            ki, bi = _fold(ident, self.rbr_identity)
            k, b = k + ki, b + bi
        conv = self.rbr_dense.conv
        self.rbr_reparam = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1,
                                     groups=conv.groups, bias=True)
        self.rbr_reparam.weight.copy_(k)
        self.rbr_reparam.bias.copy_(b)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_identity = None


class RepVGG(nn.Module):
    def __init__(self, embedding_size: int = 512, num_blocks: tuple = (4, 6, 16, 1),
                 width: tuple = (2, 2, 2, 4), input_size: int = 112):
        super().__init__()
        self.embedding_size = embedding_size
        planes = min(64, int(64 * width[0]))
        self.stage0 = RepVGGBlock(3, planes, 1)
        for i, (n, base, w) in enumerate(zip(num_blocks, (64, 128, 256, 512), width), start=1):
            cout = int(base * w)
            blocks = []
            for j in range(n):
                blocks.append(RepVGGBlock(planes, cout, 2 if j == 0 else 1))
                planes = cout
            self.add_module(f"stage{i}", nn.Sequential(*blocks))
        side = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(planes),
            nn.Flatten(),
            nn.Linear(planes * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage0(x)
        return self.stage4(self.stage3(self.stage2(self.stage1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))

    def fuse(self) -> RepVGG:
        """Re-parameterise every block in place for inference; returns ``self``."""
        for m in self.modules():
            if isinstance(m, RepVGGBlock):
                m.fuse()
        return self


# published figures: FaceX-Zoo README (THOP 0.0.31 counts reproduce them exactly)
@BACKBONES.register("repvgg_a0", input_size=(112, 112), template="arcface",
                    published_params=39.94e6, published_macs=1.55e9)
def repvgg_a0(embedding_size: int = 512) -> RepVGG:
    """FaceX-Zoo RepVGG-A0 (yaml blocks 2, 4, 14, 1; width 0.75, 0.75, 0.75, 2.5)."""
    return RepVGG(embedding_size, (2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5))


@BACKBONES.register("repvgg_b0", input_size=(112, 112), template="arcface",
                    published_params=46.65e6, published_macs=3.44e9)
def repvgg_b0(embedding_size: int = 512) -> RepVGG:
    """FaceX-Zoo RepVGG-B0 (yaml blocks 4, 6, 16, 1; width 1, 1, 1, 2.5)."""
    return RepVGG(embedding_size, (4, 6, 16, 1), (1, 1, 1, 2.5))


@BACKBONES.register("repvgg_b1", input_size=(112, 112), template="arcface",
                    published_params=106.75e6, published_macs=13.21e9)
def repvgg_b1(embedding_size: int = 512) -> RepVGG:
    """FaceX-Zoo RepVGG-B1 (yaml blocks 4, 6, 16, 1; width 2, 2, 2, 4)."""
    return RepVGG(embedding_size, (4, 6, 16, 1), (2, 2, 2, 4))


@BACKBONES.register("repvgg_tiny", input_size=(112, 112), template="arcface")
def repvgg_tiny(embedding_size: int = 512) -> RepVGG:
    """One or two narrow blocks per stage, for interface tests."""
    return RepVGG(embedding_size, (1, 2, 1, 1), (0.125, 0.125, 0.125, 0.125))
