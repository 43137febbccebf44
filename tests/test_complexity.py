"""Parameter / MAC counting and the ``faceforge models`` table."""

from __future__ import annotations

import json

import torch
from torch import nn

from faceforge.cli.main import main
from faceforge.models.complexity import backbone_complexity, count_macs, count_params


def test_mobilefacenet_within_2_percent_of_published():
    c = backbone_complexity("mobilefacenet")
    assert abs(c.macs - 227.57e6) / 227.57e6 < 0.02
    assert abs(c.params - 1.19e6) / 1.19e6 < 0.02
    # exact figures: FaceX-Zoo's THOP 0.0.31 MACs; all parameters (THOP drops the 7,552 PReLU slopes)
    assert c.macs == 227_574_016 and c.params == 1_200_512


def test_rules_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8), nn.PReLU(8),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    conv1 = 8 * 10 * 10 * (3 * 9 + 1)
    bn = 2 * 8 * 10 * 10
    dw = 8 * 5 * 5 * 9
    pool = 8 * (25 + 1)
    fc = 8 * 4
    assert count_macs(net, (10, 10)) == conv1 + bn + dw + pool + fc
    assert count_params(net) == (3 * 9 * 8 + 8) + 16 + 8 + 8 * 9 + (8 * 4 + 4)


def test_counting_on_meta_matches_cpu():
    from faceforge.models import build_backbone

    model = build_backbone("mbf")
    assert count_macs(model, (112, 112)) == backbone_complexity("mbf").macs
    with torch.device("meta"):
        big = build_backbone("iresnet100")
    manifest_params = 65_156_160  # arcface_r100_manifest.json num_parameters
    assert count_params(big) == manifest_params


def test_models_command_lists_registry(capsys):
    assert main(["models", "mobilefacenet", "iresnet_tiny", "sphere20a"]) == 0
    out = capsys.readouterr().out
    assert "mobilefacenet" in out and "227.57M" in out and "1.19M" in out and "112x96" in out
    assert main(["models", "--json", "mobilefacenet"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["macs"] == 227_574_016 and row["published_macs"] == 227.57e6
    assert main(["models", "no_such_net"]) == 2


def test_registry_table_reports_progress():
    from faceforge.models.complexity import registry_table

    seen = []
    rows = registry_table(["mobilefacenet_tiny", "iresnet_tiny"], progress=lambda d, t: seen.append((d, t)))
    assert [r.name for r in rows] == ["mobilefacenet_tiny", "iresnet_tiny"] and seen == [(1, 2), (2, 2)]
