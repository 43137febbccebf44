"""LightCNN-29 v2 (Wu et al., TIFS 2018) as FaceX-Zoo trains it (``backbone/LightCNN.py``).

Every convolution is a Max-Feature-Map (MFM): it produces twice the channels and keeps the
element-wise maximum of the two halves. Downsampling is ``max_pool(2) + avg_pool(2)`` (four times:
112 -> 7x7). FaceX-Zoo takes RGB input (the original is grey) and replaces the fc/MFM classifier
with BN2d -> Dropout -> Flatten -> Linear(128*7*7, D) -> BN1d. There is no BatchNorm in the body.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceforge.models.backbones._output_layer import facex_output_layer
from faceforge.registry import BACKBONES


class MFM(nn.Module):
    """Convolution with 2x channels followed by a max over the two halves."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.cout = cout
        self.filter = nn.Conv2d(cin, 2 * cout, kernel, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.filter(x), self.cout, dim=1)
        return torch.maximum(a, b)


class Group(nn.Module):
    """1x1 MFM then kxk MFM (the "group" of the LightCNN paper)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv_a = MFM(cin, cin, 1, 1, 0)
        self.conv = MFM(cin, cout, kernel, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv_a(x))


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MFM(channels, channels)
        self.conv2 = MFM(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)


class LightCNN(nn.Module):
    def __init__(self, embedding_size: int = 512, layers: tuple = (1, 2, 3, 4),
                 widths: tuple = (48, 96, 192, 128, 128), dropout_ratio: float = 0.2, input_size: int = 112):
        super().__init__()
        self.embedding_size = embedding_size
        w0, w1, w2, w3, w4 = widths
        self.conv1 = MFM(3, w0, 5, 1, 2)
        self.block1 = nn.Sequential(*(ResBlock(w0) for _ in range(layers[0])))
        self.group1 = Group(w0, w1)
        self.block2 = nn.Sequential(*(ResBlock(w1) for _ in range(layers[1])))
        self.group2 = Group(w1, w2)
        self.block3 = nn.Sequential(*(ResBlock(w2) for _ in range(layers[2])))
        self.group3 = Group(w2, w3)
        self.block4 = nn.Sequential(*(ResBlock(w3) for _ in range(layers[3])))
        self.group4 = Group(w3, w4)
        side = input_size // 16
        self.output_layer = facex_output_layer(w4, side * side, embedding_size, dropout_ratio)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = _pool(self.conv1(x))
        x = _pool(self.group1(self.block1(x)))
        x = _pool(self.group2(self.block2(x)))
        x = self.group3(self.block3(x))
        return _pool(self.group4(self.block4(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_features(x))


@BACKBONES.register("lightcnn29", input_size=(112, 112), template="arcface",
                    published_params=11.60e6, published_macs=2.84e9)
def lightcnn29(embedding_size: int = 512, dropout_ratio: float = 0.2) -> LightCNN:
    """FaceX-Zoo LightCNN-29 v2 (yaml: depth 29, dropout_ratio 0.2)."""
    return LightCNN(embedding_size, dropout_ratio=dropout_ratio)


@BACKBONES.register("lightcnn_tiny", input_size=(112, 112), template="arcface")
def lightcnn_tiny(embedding_size: int = 512) -> LightCNN:
    """One residual block per stage, narrow, for interface tests."""
    return LightCNN(embedding_size, layers=(1, 1, 1, 1), widths=(8, 16, 16, 16, 16))
