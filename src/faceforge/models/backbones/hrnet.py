"""FaceX-Zoo's HRNet (``backbone/HRNet.py``, after HRNet-Image-Classification ``cls_hrnet``).

High-resolution network (Wang et al., TPAMI 2020): parallel branches at 1/2, 1/4, 1/8 and 1/16 of
the input that exchange information after every module (sum fusion: 1x1 conv + nearest upsampling
from coarser branches, chains of stride-2 3x3 convs from finer ones). The classification head turns
the branches into 128/256/512/1024 channels with one bottleneck each, merges them coarse-ward with
stride-2 convs, and FaceX-Zoo replaces the pooled classifier by Linear(2048*7*7) -> BN1d.

FaceX-Zoo changes the stem's second conv to stride 1, so a 112x112 face gives a 7x7 final grid.
``state_dict`` keys, order and shapes equal FaceX-Zoo's ``HighResolutionNet`` with the
``backbone_conf.yaml`` HRNet section (W18: 18/36/72/144 channels, 1/1/4/3 modules of 4 blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from faceforge.errors import UserError
from faceforge.registry import BACKBONES


@dataclass(frozen=True)
class Stage:
    modules: int
    block: str  # "basic" | "bottleneck"
    blocks: tuple[int, ...]  # per branch
    channels: tuple[int, ...]  # per branch, before the block's expansion


# backbone_conf.yaml, section HRNet (FaceX-Zoo 16b793a7); STAGE1 is a single branch
W18 = (
    Stage(1, "bottleneck", (4,), (64,)),
    Stage(1, "basic", (4, 4), (18, 36)),
    Stage(4, "basic", (4, 4, 4), (18, 36, 72)),
    Stage(3, "basic", (4, 4, 4, 4), (18, 36, 72, 144)),
)
HEAD_CHANNELS = (32, 64, 128, 256)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True, bias: bool = False):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(cin, planes, stride, self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _shortcut(cin, planes, stride, self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _shortcut(cin: int, planes: int, stride: int, expansion: int) -> nn.Module | None:
    if stride == 1 and cin == planes * expansion:
        return None
    return nn.Sequential(
        nn.Conv2d(cin, planes * expansion, 1, stride, bias=False), nn.BatchNorm2d(planes * expansion)
    )


def _layer(block: type, cin: int, planes: int, n: int) -> nn.Sequential:
    layers = [block(cin, planes)]
    layers += [block(planes * block.expansion, planes) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Run every branch, then give each output branch the sum of all branches resampled to it."""

    def __init__(self, block: type, blocks: Sequence[int], in_ch: Sequence[int], channels: Sequence[int]):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(_layer(block, in_ch[i], channels[i], blocks[i]) for i in range(n))
        self.out_channels = [c * block.expansion for c in channels]
        ch = self.out_channels
        self.fuse_layers = None
        if n > 1:
            # Identity stands where FaceX-Zoo stores None (i == j), keeping the key indices
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(self._fuse(ch, j, i) for j in range(n)) for i in range(n)
            )

    @staticmethod
    def _fuse(ch: Sequence[int], j: int, i: int) -> nn.Module:
        if j == i:
            return nn.Identity()
        if j > i:  # coarser -> finer
            return nn.Sequential(
                nn.Conv2d(ch[j], ch[i], 1, bias=False), nn.BatchNorm2d(ch[i]),
                nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
            )
        steps = [_conv_bn(ch[j], ch[j], 3, 2) for _ in range(i - j - 1)]
        steps.append(_conv_bn(ch[j], ch[i], 3, 2, relu=False))
        return nn.Sequential(*steps)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for fuse in self.fuse_layers:
            y = fuse[0](xs[0])
            for j in range(1, len(xs)):
                y = y + fuse[j](xs[j])
            out.append(torch.relu(y))
        return out


class HRNet(nn.Module):
    def __init__(
        self,
        stages: Sequence[Stage] = W18,
        head_channels: Sequence[int] = HEAD_CHANNELS,
        final_channels: int = 2048,
        embedding_size: int = 512,
        out_hw: tuple[int, int] = (7, 7),
        stem: int = 64,
    ):
        super().__init__()
        if len(stages) != 4 or len(stages[0].channels) != 1:
            raise UserError("model.stages: HRNet needs 4 stages, the first with one branch")
        for k, s in enumerate(stages):
            if s.block not in BLOCKS or len(s.blocks) != len(s.channels):
                raise UserError(f"model.stages[{k}]: block must be basic|bottleneck, one count per branch")
        if len(head_channels) != len(stages[-1].channels):
            raise UserError("model.head_channels: need one width per final branch")
        self.embedding_size = embedding_size
        self.conv1 = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, 1, 1, bias=False)  # stride 1 in FaceX-Zoo (2 in cls_hrnet)
        self.bn2 = nn.BatchNorm2d(stem)
        s1 = stages[0]
        block = BLOCKS[s1.block]
        self.layer1 = _layer(block, stem, s1.channels[0], s1.blocks[0])
        pre = [s1.channels[0] * block.expansion]
        for k, stage in enumerate(stages[1:], start=1):
            block = BLOCKS[stage.block]
            cur = [c * block.expansion for c in stage.channels]
            setattr(self, f"transition{k}", self._transition(pre, cur))
            modules: list[HighResolutionModule] = []
            for _ in range(stage.modules):
                in_ch = modules[-1].out_channels if modules else cur
                modules.append(HighResolutionModule(block, stage.blocks, in_ch, stage.channels))
            setattr(self, f"stage{k + 1}", nn.Sequential(*modules))
            pre = modules[-1].out_channels
        self.incre_modules = nn.ModuleList(
            _layer(Bottleneck, c, h, 1) for c, h in zip(pre, head_channels)
        )
        wide = [h * Bottleneck.expansion for h in head_channels]
        self.downsamp_modules = nn.ModuleList(
            _conv_bn(wide[i], wide[i + 1], 3, 2, bias=True) for i in range(len(wide) - 1)
        )
        self.final_layer = _conv_bn(wide[-1], final_channels, 1, bias=True)
        self.output_layer = nn.Sequential(
            nn.Flatten(),
            nn.Linear(final_channels * out_hw[0] * out_hw[1], embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    @staticmethod
    def _transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        layers: list[nn.Module] = []
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(nn.Identity() if c == pre[i] else _conv_bn(pre[i], c, 3))
            else:  # a new, coarser branch grown from the coarsest existing one
                steps = [_conv_bn(pre[-1], pre[-1], 3, 2) for _ in range(i - len(pre))]
                steps.append(_conv_bn(pre[-1], c, 3, 2))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for k in (1, 2, 3):
            trans = getattr(self, f"transition{k}")
            xs = [t(ys[i]) if i < len(ys) else t(ys[-1]) for i, t in enumerate(trans)]
            ys = getattr(self, f"stage{k + 1}")(xs)
        y = self.incre_modules[0](ys[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](ys[i + 1]) + down(y)
        return self.final_layer(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register(
    "hrnet", input_size=(112, 112), template="arcface",
    published_params=70.63e6, published_macs=4.35e9,
)
def hrnet(embedding_size: int = 512) -> HRNet:
    """FaceX-Zoo's HRNet-W18 face backbone."""
    return HRNet(W18, HEAD_CHANNELS, 2048, embedding_size)


@BACKBONES.register("hrnet_tiny", input_size=(112, 112), template="arcface")
def hrnet_tiny(embedding_size: int = 32) -> HRNet:
    """Four branches, one module of one block each, narrow head; for interface tests."""
    stages = (
        Stage(1, "bottleneck", (1,), (8,)),
        Stage(1, "basic", (1, 1), (4, 8)),
        Stage(1, "basic", (1, 1, 1), (4, 8, 16)),
        Stage(1, "basic", (1, 1, 1, 1), (4, 8, 16, 32)),
    )
    return HRNet(stages, (4, 8, 8, 16), 32, embedding_size, stem=8)
