"""Params/MACs of the FaceX-Zoo part-C backbones against FaceX-Zoo's published table.

For each backbone prints the true counts (``faceforge.models.complexity``: all parameters; THOP-0.0.31
MAC rules applied to every Conv/Linear/Norm/pool module, subclasses included), the same hooks
restricted the way THOP 0.0.31 restricts them (exact module types only, no LayerNorm rule, params of
rule-less or never-run modules dropped), the peer's recorded THOP 0.0.31 counts
(../shared/reference/facex_backbone_complexity.json), the published figures and the formula that
reproduces each published figure.

    .venv/bin/python bench/complexity_facex_c.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from faceforge.models import backbone_meta, build_backbone
from faceforge.models.complexity import _macs_of, backbone_complexity, human

NAMES = {
    "efficientnet_b0": "facex_efficientnet_b0",
    "tf_nas_a": "facex_tf_nas_a",
    "ghostnet": "facex_ghostnet",
    "rexnet_1_0": "facex_rexnet_1_0",
    "lightcnn29": "facex_lightcnn29",
    "repvgg_a0": "facex_repvgg_a0",
    "repvgg_b0": "facex_repvgg_b0",
    "repvgg_b1": "facex_repvgg_b1",
    "swin_t": "facex_swin_t",
    "swin_s": "facex_swin_s",
}
# exact types THOP 0.0.31 has a rule for (that occur in these nets); anything else counts nothing
THOP_0031_TYPES = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear, nn.AdaptiveAvgPool2d, nn.AvgPool2d,
                   nn.ReLU, nn.ReLU6, nn.Dropout, nn.MaxPool2d, nn.Sequential)
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def thop_0031_like(name: str) -> tuple[int, int]:
    """(params, MACs) counted the way THOP 0.0.31 ``profile`` counts: exact types, modules that ran."""
    with torch.device("meta"):
        model = build_backbone(name)
    model.eval()
    ran: set[nn.Module] = set()
    macs = 0

    def hook(m, inputs, out):
        nonlocal macs
        ran.add(m)
        macs += int(_macs_of(m, inputs, out))

    leaves = [m for m in model.modules() if not list(m.children()) and type(m) in THOP_0031_TYPES]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad():
        model(torch.zeros(1, 3, *backbone_meta(name)["input_size"], device="meta"))
    for h in handles:
        h.remove()
    params = sum(p.numel() for m in ran for p in m.parameters())
    return params, macs


def main() -> None:
    peer = json.loads((REFERENCE / "facex_backbone_complexity.json").read_text())["backbones"]
    print("| backbone | input | true params | true MACs | THOP-0.0.31-like params / MACs (ours) "
          "| peer THOP 0.0.31 params / MACs | published | final Linear in×out |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fixture in NAMES.items():
        c = backbone_complexity(name)
        tp, tm = thop_0031_like(name)
        p = peer[fixture]
        thop = p["thop"]["thop-0.0.31.post2005241907"]
        pub = p["published"]
        print(f"| {name} | {c.input_size[0]}x{c.input_size[1]} | {c.params:,} | {c.macs:,} | {tp:,} / {tm:,} "
              f"| {thop['params']:,} / {thop['macs']:,} | {pub['params']} / {pub['macs']} "
              f"| {p['final_linear']['in_x_out']:,} |")
        assert c.params == p["params"], (name, c.params, p["params"])
        print(f"<!-- {name}: true {human(c.params)}/{human(c.macs)}; "
              f"like-THOP == peer THOP: params {tp == thop['params']}, MACs {tm == thop['macs']} -->")


if __name__ == "__main__":
    main()
