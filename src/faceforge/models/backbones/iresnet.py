"""IResNet (Deng et al., ArcFace; Duta et al. "Improved Residual Networks") in arcface_torch layout.

State-dict keys and shapes are identical to InsightFace ``recognition/arcface_torch/backbones/
iresnet.py``, so a ``backbone.pth`` trained there loads unchanged (``faceforge import --from
arcface_torch``) and a faceforge iresnet checkpoint loads back into arcface_torch.

Peer facts kept for compatibility: every BatchNorm uses eps=1e-5; the pre-activation residual unit is
BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN; the head is BN2d -> flatten -> dropout ->
``fc = Linear(512*7*7, D)`` -> ``features = BatchNorm1d(D)`` whose weight is frozen at 1, so the
input must be 112x112.

``iresnet_tiny`` keeps the layout with 8/16/32/64 channels and one unit per stage, for tests.
"""

from __future__ import annotations

from torch import nn

from faceforge.registry import BACKBONES

EPS = 1e-5


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=EPS)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, embedding_size=512, widths=(64, 128, 256, 512), dropout=0.0,
                 out_hw=(7, 7)):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=EPS)
        self.prelu = nn.PReLU(widths[0])
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1])
        self.layer3 = self._make_layer(widths[2], layers[2])
        self.layer4 = self._make_layer(widths[3], layers[3])
        self.bn2 = nn.BatchNorm2d(widths[3], eps=EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(widths[3] * out_hw[0] * out_hw[1], embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # as in arcface_torch: a scale-free embedding BN
        self.embedding_size = embedding_size
        self.num_features = embedding_size
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)

    def _make_layer(self, planes, blocks, stride=2):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes, eps=EPS),
            )
        units = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        units += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def forward_features(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(x)

    def forward(self, x):
        x = self.dropout(self.forward_features(x).flatten(1))
        return self.features(self.fc(x))


DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6)}


def _register(depth: int) -> None:
    name = f"iresnet{depth}"
    meta = {"input_size": (112, 112), "template": "arcface", "mean": 0.5, "std": 0.5,
            "source": f"arcface_torch {name} (r{depth})"}

    def build(embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
        return IResNet(DEPTHS[depth], embedding_size, dropout=dropout)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"arcface_torch ``{name}``: units {DEPTHS[depth]}."
    BACKBONES.register(name, **meta)(build)


for _depth in DEPTHS:
    _register(_depth)


@BACKBONES.register("iresnet_tiny", input_size=(112, 112), template="arcface", mean=0.5, std=0.5, tiny=True)
def iresnet_tiny(embedding_size: int = 64, dropout: float = 0.0) -> IResNet:
    return IResNet((1, 1, 1, 1), embedding_size, widths=(8, 16, 32, 64), dropout=dropout)
