"""SphereFace networks (Liu et al., CVPR'17) and OpenSphere's SFNet variants.

Two layouts, each matching its peer's state_dict keys:

* ``sphere20a`` / ``sphere64a`` — ``clcarwin/sphereface_pytorch`` ``net_sphere.sphere20a``: flat
  ``convS_I`` / ``reluS_I`` names, convs with bias, PReLU, ``fc5 = Linear(512*7*6, D)`` for the
  112x96 SphereFace crop. The peer's classifier ``fc6`` (AngleLinear) is a head, not part of the
  backbone; ``faceforge import`` drops it.
* ``sfnet20`` / ``sfnet64`` (OpenSphere v0 ``sfnet.py``), ``sfnet20_deprecated`` /
  ``sfnet64_deprecated`` (``sfnet_deprecated.py``, what OpenSphere's VGGFace2 configs build) and
  ``sfnet64_bn`` (``sfnet.py`` with ``norm_layer=BatchNorm2d``): ``layerN.0`` is the stride-2 conv of
  stage N, ``layerN.i`` its residual units; ReLU everywhere; ``fc = Linear(512*7*7, D)`` (112x112).

The two SFNet code variants share keys but not arithmetic (README 6.1): a ``_deprecated`` unit
returns ``x + relu(conv2(relu(conv1(x))))`` (the CVPR'17 design), an ``sfnet.py`` unit returns
``relu(x + conv2(relu(conv1(x))))``. A checkpoint loads into either silently, so the variant is part
of the backbone name.
"""

from __future__ import annotations

from torch import nn

from faceforge.registry import BACKBONES

UNITS = {20: (1, 2, 4, 1), 64: (3, 8, 16, 3)}
WIDTHS = (64, 128, 256, 512)


def _final_hw(input_size) -> tuple[int, int]:
    h, w = input_size
    for _ in range(4):  # four 3x3 stride-2 convs with padding 1
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


# ---------------------------------------------------------------------------------------------
# sphereface_pytorch layout (sphere20a)


class SphereNet(nn.Module):
    """SphereFace-N with PReLU; modules named ``conv{stage}_{i}`` / ``relu{stage}_{i}`` as the peer."""

    def __init__(self, units=(1, 2, 4, 1), embedding_size=512, input_size=(112, 96), widths=WIDTHS):
        super().__init__()
        self.stages: list[tuple[str, int]] = []
        cin = 3
        for s, (n, c) in enumerate(zip(units, widths), start=1):
            setattr(self, f"conv{s}_1", nn.Conv2d(cin, c, 3, 2, 1))
            setattr(self, f"relu{s}_1", nn.PReLU(c))
            for i in range(2, 2 + 2 * n):
                setattr(self, f"conv{s}_{i}", nn.Conv2d(c, c, 3, 1, 1))
                setattr(self, f"relu{s}_{i}", nn.PReLU(c))
            self.stages.append((str(s), n))
            cin = c
        h, w = _final_hw(input_size)
        self.fc5 = nn.Linear(widths[-1] * h * w, embedding_size)
        self.embedding_size = embedding_size
        self.num_features = embedding_size

    def _layer(self, s, i, x):
        return getattr(self, f"relu{s}_{i}")(getattr(self, f"conv{s}_{i}")(x))

    def forward_features(self, x):
        for s, n in self.stages:
            x = self._layer(s, 1, x)
            for u in range(n):
                i = 2 + 2 * u
                x = x + self._layer(s, i + 1, self._layer(s, i, x))
        return x

    def forward(self, x):
        return self.fc5(self.forward_features(x).flatten(1))


_SPHERE_META = {"input_size": (112, 96), "template": "sphereface", "mean": 0.5, "std": 128 / 255}


@BACKBONES.register("sphere20a", **_SPHERE_META, source="sphereface_pytorch sphere20a(feature=True)")
def sphere20a(embedding_size: int = 512, input_size=(112, 96)) -> SphereNet:
    return SphereNet(UNITS[20], embedding_size, tuple(input_size))


@BACKBONES.register("sphere64a", **_SPHERE_META, source="SphereFace-64 (CVPR'17) in sphere20a layout")
def sphere64a(embedding_size: int = 512, input_size=(112, 96)) -> SphereNet:
    return SphereNet(UNITS[64], embedding_size, tuple(input_size))


# ---------------------------------------------------------------------------------------------
# OpenSphere layout (SFNet)


class _Down(nn.Module):
    def __init__(self, cin, cout, bn):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=not bn)
        if bn:
            self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv1(x)
        if hasattr(self, "bn1"):
            x = self.bn1(x)
        return self.relu(x)


class _Unit(nn.Module):
    def __init__(self, c, bn, relu_after_add):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.relu = nn.ReLU()
        self.relu_after_add = relu_after_add

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(x + y) if self.relu_after_add else x + self.relu(y)


class SFNet(nn.Module):
    """OpenSphere SFNet-N. ``relu_after_add``: ``sfnet.py`` (True) or ``sfnet_deprecated.py`` (False)."""

    def __init__(self, units, embedding_size=512, bn=False, relu_after_add=True, input_size=(112, 112),
                 widths=WIDTHS):
        super().__init__()
        if bn:  # registered first, as in the peer, so the state_dict order matches too
            self.features = nn.BatchNorm1d(embedding_size)
        cin = 3
        for s, (n, c) in enumerate(zip(units, widths), start=1):
            layer = [_Down(cin, c, bn)] + [_Unit(c, bn, relu_after_add) for _ in range(n)]
            setattr(self, f"layer{s}", nn.Sequential(*layer))
            cin = c
        h, w = _final_hw(input_size)
        self.fc = nn.Linear(widths[-1] * h * w, embedding_size)
        self.embedding_size = embedding_size
        self.num_features = embedding_size

    def forward_features(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        x = self.fc(self.forward_features(x).flatten(1))
        return self.features(x) if hasattr(self, "features") else x


_SFNET_META = {"input_size": (112, 112), "template": "arcface", "mean": 0.5, "std": 0.5}


def _register_sfnet(name: str, depth: int, bn: bool, relu_after_add: bool, source: str) -> None:
    def build(embedding_size: int = 512, input_size=(112, 112)) -> SFNet:
        return SFNet(UNITS[depth], embedding_size, bn, relu_after_add, tuple(input_size))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"OpenSphere v0 {source}."
    BACKBONES.register(name, **_SFNET_META, source=f"OpenSphere v0 {source}")(build)


_register_sfnet("sfnet20", 20, False, True, "sfnet.py sfnet20")
_register_sfnet("sfnet64", 64, False, True, "sfnet.py sfnet64")
_register_sfnet("sfnet20_deprecated", 20, False, False, "sfnet_deprecated.py sfnet20_deprecated")
_register_sfnet("sfnet64_deprecated", 64, False, False, "sfnet_deprecated.py sfnet64_deprecated")
_register_sfnet("sfnet64_bn", 64, True, True, "sfnet.py sfnet64(norm_layer=BatchNorm2d)")
