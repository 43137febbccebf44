"""FaceX-Zoo's common embedding head, shared by its CNN families (not a registered backbone).

``BatchNorm2d → Dropout → Flatten → Linear(C·H·W, D) → BatchNorm1d`` as ``output_layer.0..4``, so
FaceX-Zoo checkpoints load unchanged.
"""

from __future__ import annotations

from torch import nn


def facex_output_layer(channels: int, spatial: int, embedding_size: int, drop_ratio: float) -> nn.Sequential:
    """``spatial`` is the flattened map size H·W of the last feature map."""
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.Dropout(drop_ratio),
        nn.Flatten(),
        nn.Linear(channels * spatial, embedding_size),
        nn.BatchNorm1d(embedding_size),
    )
