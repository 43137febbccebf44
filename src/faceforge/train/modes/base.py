"""The training-mode contract: a mode is a small step function, never a copy of the loop.

A registered builder ``mode(backbone, num_classes, cfg, **options) -> TrainingMode`` returns an
object that owns the extra trainable modules of the mode (classifier, gallery net, queue, ...).
The engine calls ``step(backbone, images, labels)`` (``backbone`` may be DDP-wrapped) and sums
every ``loss*`` entry of the returned dict; ``after_step(backbone)`` runs after the optimiser
step (moving averages). ``plan`` says how batches are drawn: ``samples`` (a permutation of all
images), ``pairs`` (B identities × 2 images, ordered [first images..., second images...]) or
``pk`` (P identities × K images, identity-major).
"""

from __future__ import annotations

import torch
from torch import nn


class TrainingMode(nn.Module):
    plan: str = "samples"
    plan_k: int = 2  # images per identity for the pairs/pk plans

    def step(self, backbone: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
        raise NotImplementedError

    def after_step(self, backbone: nn.Module) -> None:
        pass

    def classifier_weight(self) -> torch.Tensor | None:
        """The full [C, D] class-weight matrix, if the mode has one (saved with checkpoints)."""
        return None
