"""Conventional training: backbone → normalised classifier with a margin (Partial FC)."""

from __future__ import annotations

from faceforge.models import build_margin
from faceforge.models.heads.classifier import PartialFC
from faceforge.registry import MODES
from faceforge.train.modes.base import TrainingMode


class Conventional(TrainingMode):
    def __init__(self, backbone, num_classes: int, cfg, sample_rate: float = 1.0):
        super().__init__()
        from faceforge.registry import MARGINS

        options = dict(cfg.head.options)
        if "num_classes" in MARGINS.entry(cfg.head.name).parameters():
            options.setdefault("num_classes", num_classes)  # per-class margins (AdaM-Softmax, AdaCos)
        margin = build_margin(cfg.head.name, **options)
        self.classifier = PartialFC(margin, backbone.embedding_size, num_classes, sample_rate)

    def step(self, backbone, images, labels):
        return self.classifier(backbone(images), labels)

    def sharded(self):
        return {"classifier.weight": self.classifier.num_classes}

    def classifier_weight(self):
        return self.classifier.full_weight()


@MODES.register("conventional")
def conventional(backbone, num_classes, cfg, sample_rate: float = 1.0) -> Conventional:
    return Conventional(backbone, num_classes, cfg, sample_rate)
