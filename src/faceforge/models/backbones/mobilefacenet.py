"""MobileFaceNet (Chen et al., arXiv 1804.07573) in two checkpoint layouts.

* ``mobilefacenet`` — FaceX-Zoo's ``MobileFaceNet(512, 7, 7)``: 64 wide, ``conv/bn/prelu`` key
  names, GDC head then ``Linear(512, D, bias=False)`` + ``BatchNorm1d``. State-dict keys and shapes
  are identical, so FaceX-Zoo checkpoints load after ``faceforge import --from facex``.
* ``mbf`` — InsightFace arcface_torch ``get_mbf`` (blocks (1,4,6,2), scale 2), ``layers.N``
  sequential keys. Copied peer facts: the second conv is *grouped* (64 groups on 128 channels), the
  expansion widths of the bottlenecks stay 128/256/512/256 while ``scale`` doubles the outer widths,
  and the GDC head is hard-coded to 512 channels and a 7x7 kernel.

``mobilefacenet_tiny`` is a reduced FaceX-layout net (16 wide, one bottleneck per stage) that trains
in seconds on a CPU; it is for tests and demos, not for accuracy.
"""

from __future__ import annotations

from torch import nn

from faceforge.registry import BACKBONES

# ---------------------------------------------------------------------------------------------
# FaceX-Zoo layout (attribute names are part of the checkpoint format: do not rename)


class ConvBlock(nn.Module):
    """conv -> BN -> PReLU (FaceX ``Conv_block``)."""

    def __init__(self, cin, cout, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x):
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """conv -> BN, no activation (FaceX ``Linear_block``: the bottleneck's linear projection)."""

    def __init__(self, cin, cout, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``expand`` -> 3x3 depthwise -> 1x1 linear projection."""

    def __init__(self, cin, cout, expand, stride=2, residual=False):
        super().__init__()
        self.conv = ConvBlock(cin, expand)
        self.conv_dw = ConvBlock(expand, expand, 3, stride, 1, groups=expand)
        self.project = LinearBlock(expand, cout)
        self.residual = residual

    def forward(self, x):
        y = self.project(self.conv_dw(self.conv(x)))
        return x + y if self.residual else y


class Residual(nn.Module):
    def __init__(self, c, num_block, expand):
        super().__init__()
        self.model = nn.Sequential(*[DepthWise(c, c, expand, 1, residual=True) for _ in range(num_block)])

    def forward(self, x):
        return self.model(x)


class MobileFaceNet(nn.Module):
    """FaceX-Zoo ``MobileFaceNet(feat_dim, out_h, out_w)`` generalised by ``width`` and ``blocks``.

    ``width`` is the stem width (64 in the paper); expansions are 2x/4x/8x/4x it as in FaceX-Zoo.
    ``out_hw`` is the final feature-map size (input / 16), which sets the GDC kernel.
    """

    def __init__(self, embedding_size=512, out_hw=(7, 7), width=64, blocks=(4, 6, 2), head_channels=512):
        super().__init__()
        w = width
        self.conv1 = ConvBlock(3, w, 3, 2, 1)
        self.conv2_dw = ConvBlock(w, w, 3, 1, 1, groups=w)
        self.conv_23 = DepthWise(w, w, 2 * w)
        self.conv_3 = Residual(w, blocks[0], 2 * w)
        self.conv_34 = DepthWise(w, 2 * w, 4 * w)
        self.conv_4 = Residual(2 * w, blocks[1], 4 * w)
        self.conv_45 = DepthWise(2 * w, 2 * w, 8 * w)
        self.conv_5 = Residual(2 * w, blocks[2], 4 * w)
        self.conv_6_sep = ConvBlock(2 * w, head_channels)
        # GDC: a global depthwise conv whose kernel covers the whole final map (paper, section 3.2)
        self.conv_6_dw = LinearBlock(head_channels, head_channels, tuple(out_hw), groups=head_channels)
        self.conv_6_flatten = nn.Flatten()
        self.linear = nn.Linear(head_channels, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)
        self.embedding_size = embedding_size
        self.num_features = embedding_size
        _kaiming_init(self)

    def forward_features(self, x):
        for stage in (self.conv1, self.conv2_dw, self.conv_23, self.conv_3, self.conv_34, self.conv_4,
                      self.conv_45, self.conv_5, self.conv_6_sep):
            x = stage(x)
        return x

    def forward(self, x):
        x = self.conv_6_flatten(self.conv_6_dw(self.forward_features(x)))
        return self.bn(self.linear(x))


def _kaiming_init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _out_hw(input_size) -> tuple[int, int]:
    h, w = input_size
    return (-(-h // 16), -(-w // 16))  # four stride-2 stages, padding 1: ceil(n / 16)


@BACKBONES.register(
    "mobilefacenet", input_size=(112, 112), template="arcface", mean=0.5, std=0.5,
    published_params=1.19e6, published_macs=227.57e6, source="FaceX-Zoo MobileFaceNet(512, 7, 7)",
)
def mobilefacenet(embedding_size: int = 512, input_size=(112, 112)) -> MobileFaceNet:
    return MobileFaceNet(embedding_size, _out_hw(input_size))


@BACKBONES.register("mobilefacenet_tiny", input_size=(112, 112), template="arcface", mean=0.5, std=0.5,
                    tiny=True)
def mobilefacenet_tiny(embedding_size: int = 64, input_size=(112, 112), width: int = 16) -> MobileFaceNet:
    return MobileFaceNet(embedding_size, _out_hw(input_size), width=width, blocks=(1, 1, 1),
                         head_channels=8 * width)


# ---------------------------------------------------------------------------------------------
# arcface_torch layout: every block keeps its sub-modules in a ``layers`` Sequential


class _Seq(nn.Module):
    def __init__(self, *mods):
        super().__init__()
        self.layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.layers(x)


def _conv_block(cin, cout, kernel=1, stride=1, padding=0, groups=1) -> _Seq:
    return _Seq(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.PReLU(cout))


def _linear_block(cin, cout, kernel=1, stride=1, padding=0, groups=1) -> _Seq:
    return _Seq(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                nn.BatchNorm2d(cout))


class _ArcDepthWise(_Seq):
    def __init__(self, cin, cout, expand, stride=2, residual=False):
        super().__init__(_conv_block(cin, expand), _conv_block(expand, expand, 3, stride, 1, groups=expand),
                         _linear_block(expand, cout))
        self.residual = residual

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


def _arc_residual(c, num_block, expand) -> _Seq:
    return _Seq(*[_ArcDepthWise(c, c, expand, 1, residual=True) for _ in range(num_block)])


class ArcMobileFaceNet(nn.Module):
    """arcface_torch ``backbones/mobilefacenet.py: MobileFaceNet`` (``get_mbf`` / ``get_mbf_large``)."""

    def __init__(self, embedding_size=512, blocks=(1, 4, 6, 2), scale=2):
        super().__init__()
        c = 64 * scale
        self.layers = nn.ModuleList([_conv_block(3, c, 3, 2, 1)])
        if blocks[0] == 1:
            # the peer's groups=64 regardless of scale: grouped, not depthwise, when scale > 1
            self.layers.append(_conv_block(c, c, 3, 1, 1, groups=64))
        else:
            self.layers.append(_arc_residual(c, blocks[0], 128))
        self.layers.extend([
            _ArcDepthWise(c, c, 128),
            _arc_residual(c, blocks[1], 128),
            _ArcDepthWise(c, 2 * c, 256),
            _arc_residual(2 * c, blocks[2], 256),
            _ArcDepthWise(2 * c, 2 * c, 512),
            _arc_residual(2 * c, blocks[3], 256),
        ])
        self.conv_sep = _conv_block(2 * c, 512)
        self.features = _Seq(_linear_block(512, 512, 7, groups=512), nn.Flatten(),
                             nn.Linear(512, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))
        self.embedding_size = embedding_size
        self.num_features = embedding_size
        _kaiming_init(self)

    def forward_features(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.conv_sep(x)

    def forward(self, x):
        return self.features(self.forward_features(x))


@BACKBONES.register(
    "mbf", input_size=(112, 112), template="arcface", mean=0.5, std=0.5,
    source="arcface_torch get_mbf(blocks=(1,4,6,2), scale=2)",
)
def mbf(embedding_size: int = 512, blocks=(1, 4, 6, 2), scale: int = 2) -> ArcMobileFaceNet:
    return ArcMobileFaceNet(embedding_size, tuple(blocks), scale)


@BACKBONES.register("mbf_large", input_size=(112, 112), template="arcface", mean=0.5, std=0.5,
                    source="arcface_torch get_mbf_large(blocks=(2,8,12,4), scale=4)")
def mbf_large(embedding_size: int = 512) -> ArcMobileFaceNet:
    return ArcMobileFaceNet(embedding_size, (2, 8, 12, 4), 4)

