"""Semi-siamese training (Du et al., ECCV 2020, "Semi-Siamese Training for Shallow Face Learning").

For shallow data (2 images per identity) a classifier with one weight per identity over-fits:
each weight sees two images. SST instead trains a *probe* network against prototypes produced by a
*gallery* network that is a moving average of the probe. Each step takes B identities × 2 views;
view 1 of the probe is classified against [view-2 gallery features of the batch ; a queue of
earlier gallery features], and symmetrically, with the margin applied at the batch's own column.
The queue (FIFO) replaces the classifier, so no per-identity weight exists at all.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from faceforge.models import build_margin
from faceforge.registry import MODES
from faceforge.train.modes.base import TrainingMode


class SemiSiamese(TrainingMode):
    plan = "pairs"
    plan_k = 2

    def __init__(self, backbone, cfg, queue_size: int = 4096, momentum: float = 0.999):
        super().__init__()
        self.margin = build_margin(cfg.head.name, **cfg.head.options)
        self.momentum = momentum
        self.gallery = copy.deepcopy(backbone)
        for p in self.gallery.parameters():
            p.requires_grad_(False)
        d = backbone.embedding_size
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, d), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("flip_coin", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def _logits(self, probe: torch.Tensor, gallery: torch.Tensor):
        protos = torch.cat([gallery, self.queue.to(gallery.dtype)])
        cos = (F.normalize(probe.float(), dim=1) @ protos.float().t()).clamp(-1, 1)
        labels = torch.arange(probe.shape[0], device=probe.device)
        out = self.margin(cos, labels)
        logits = out["logits"] if isinstance(out, dict) else out
        return F.cross_entropy(logits, labels), (cos.argmax(1) == labels).float().mean()

    def step(self, backbone, images, labels):
        x1, x2 = images.chunk(2)
        p1, p2 = backbone(x1), backbone(x2)
        self.gallery.train(backbone.training)
        with torch.no_grad():
            g1 = F.normalize(self.gallery(x1).float(), dim=1)
            g2 = F.normalize(self.gallery(x2).float(), dim=1)
        loss1, acc1 = self._logits(p1, g2)
        loss2, acc2 = self._logits(p2, g1)
        # alternate which view's gallery features enter the queue (deterministic, resumable)
        self._pending = g1 if int(self.flip_coin) % 2 == 0 else g2
        return {"loss": (loss1 + loss2) / 2, "acc": (acc1 + acc2) / 2}

    @torch.no_grad()
    def after_step(self, backbone):
        m = self.momentum
        for pg, pp in zip(self.gallery.parameters(), backbone.parameters()):
            pg.mul_(m).add_(pp.detach(), alpha=1 - m)
        for bg, bp in zip(self.gallery.buffers(), backbone.buffers()):
            bg.copy_(bp)
        if self._pending is not None:
            n, q = self._pending.shape[0], self.queue.shape[0]
            idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % q
            self.queue[idx] = self._pending.to(self.queue.dtype)
            self.queue_ptr.copy_((self.queue_ptr + n) % q)
            self.flip_coin.add_(1)
            self._pending = None


@MODES.register("semi_siamese")
def semi_siamese(backbone, num_classes, cfg, queue_size: int = 4096, momentum: float = 0.999) -> SemiSiamese:
    return SemiSiamese(backbone, cfg, queue_size=queue_size, momentum=momentum)
