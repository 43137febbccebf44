"""FaceX-Zoo's Residual Attention Network (``backbone/AttentionNets.py``; Wang et al., CVPR 2017).

Each attention module multiplies a trunk branch by ``1 + mask``, where the mask comes from a
bottom-up/top-down hourglass of pre-activation bottleneck blocks (eq. 3 of the paper). The three
stages use hourglasses of 3, 2 and 1 pooling levels at 56, 28 and 14 pixels (112x112 input, a
stride-2 stem and no max-pool). Attention-56 has one module per stage, Attention-92 has 1/2/3.

``state_dict`` keys, order and shapes equal FaceX-Zoo's ``ResidualAttentionNet``. Like FaceX-Zoo,
every residual block owns a ``conv4`` projection even where the shortcut is the identity and
``conv4`` never runs (29 of them in Attention-56, 50 in Attention-92): they are kept so checkpoints
load unchanged, which also means DDP needs ``find_unused_parameters`` for these models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.errors import UserError
from faceforge.registry import BACKBONES

WIDTHS = (64, 256, 512, 1024, 2048)  # stem, stage 1..3, final blocks


class ResidualBlock(nn.Module):
    """Pre-activation bottleneck (BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        mid = out_ch // 4
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, 1, bias=False)
        self.conv4 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
        self.project = in_ch != out_ch or stride != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (self.conv4(pre) if self.project else x)


def _mask_head(ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch, 1, bias=False),
        nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch, 1, bias=False),
        nn.Sigmoid(),
    )


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # nn.UpsamplingBilinear2d in FaceX-Zoo, i.e. align_corners=True, to the skip's size
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class AttentionModule(nn.Module):
    """One attention module with a ``levels``-deep hourglass mask branch.

    Attribute names follow FaceX-Zoo's ``AttentionModule_stage{1,2,3}`` (levels 3, 2, 1): on the way
    down ``softmax{i}_blocks`` + ``skip{i}_connection_residual_block`` per level, two blocks at the
    bottom, one ``softmax{k}_blocks`` per level on the way up, then the sigmoid mask head.
    """

    def __init__(self, ch: int, levels: int):
        super().__init__()
        self.levels = levels
        self.first_residual_blocks = ResidualBlock(ch, ch)
        self.trunk_branches = nn.Sequential(ResidualBlock(ch, ch), ResidualBlock(ch, ch))
        for i in range(1, levels):
            setattr(self, f"softmax{i}_blocks", ResidualBlock(ch, ch))
            setattr(self, f"skip{i}_connection_residual_block", ResidualBlock(ch, ch))
        setattr(self, f"softmax{levels}_blocks", nn.Sequential(ResidualBlock(ch, ch), ResidualBlock(ch, ch)))
        for i in range(levels + 1, 2 * levels):
            setattr(self, f"softmax{i}_blocks", ResidualBlock(ch, ch))
        setattr(self, f"softmax{2 * levels}_blocks", _mask_head(ch))
        self.last_blocks = ResidualBlock(ch, ch)

    def _block(self, i: int) -> nn.Module:
        return getattr(self, f"softmax{i}_blocks")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.levels
        x = self.first_residual_blocks(x)
        trunk = self.trunk_branches(x)
        down, skips = [], []
        h = x
        for i in range(1, levels):
            h = self._block(i)(F.max_pool2d(h, 3, 2, 1))
            down.append(h)
            skips.append(getattr(self, f"skip{i}_connection_residual_block")(h))
        h = self._block(levels)(F.max_pool2d(h, 3, 2, 1))
        for k in range(levels - 1, 0, -1):
            h = self._block(2 * levels - k)(_up(h, down[k - 1]) + down[k - 1] + skips[k - 1])
        mask = self._block(2 * levels)(_up(h, trunk) + trunk)
        return self.last_blocks((1 + mask) * trunk)


class ResidualAttentionNet(nn.Module):
    def __init__(
        self,
        stage_modules: Sequence[int] = (1, 1, 1),
        widths: Sequence[int] = WIDTHS,
        embedding_size: int = 512,
        out_hw: tuple[int, int] = (7, 7),
    ):
        super().__init__()
        if len(stage_modules) != 3 or min(stage_modules) < 0:
            raise UserError(f"model.stage_modules: need 3 counts >= 0, got {list(stage_modules)}")
        if len(widths) != 5:
            raise UserError(f"model.widths: need 5 widths (stem, 3 stages, final), got {list(widths)}")
        self.embedding_size = embedding_size
        stem, w1, w2, w3, w4 = widths
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        body: list[nn.Module] = [ResidualBlock(stem, w1)]
        body += [AttentionModule(w1, 3) for _ in range(stage_modules[0])]
        body.append(ResidualBlock(w1, w2, 2))
        body += [AttentionModule(w2, 2) for _ in range(stage_modules[1])]
        body.append(ResidualBlock(w2, w3, 2))
        body += [AttentionModule(w3, 1) for _ in range(stage_modules[2])]
        body += [ResidualBlock(w3, w4, 2), ResidualBlock(w4, w4), ResidualBlock(w4, w4)]
        self.attention_body = nn.Sequential(*body)
        self.output_layer = nn.Sequential(
            nn.Flatten(),
            nn.Linear(w4 * out_hw[0] * out_hw[1], embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention_body(self.conv1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register(
    "attention56", input_size=(112, 112), template="arcface",
    published_params=98.96e6, published_macs=6.34e9,
)
def attention56(embedding_size: int = 512) -> ResidualAttentionNet:
    return ResidualAttentionNet((1, 1, 1), WIDTHS, embedding_size)


@BACKBONES.register(
    "attention92", input_size=(112, 112), template="arcface",
    published_params=134.56e6, published_macs=10.62e9,
)
def attention92(embedding_size: int = 512) -> ResidualAttentionNet:
    return ResidualAttentionNet((1, 2, 3), WIDTHS, embedding_size)


@BACKBONES.register("attention_tiny", input_size=(112, 112), template="arcface")
def attention_tiny(embedding_size: int = 32) -> ResidualAttentionNet:
    """Attention-56 layout at 1/8-1/32 width, for interface tests."""
    return ResidualAttentionNet((1, 1, 1), (8, 16, 32, 32, 64), embedding_size)
