"""Resumable, distributed training batches.

The order of an epoch is one global permutation drawn from ``(seed, epoch)``. Step ``b`` of the
epoch takes samples ``[b·G, (b+1)·G)`` of it, where G = per-rank batch × world size, and each rank
takes its contiguous slice. A position is therefore just ``(epoch, samples consumed)``, which
survives a restart on a different number of processes. Flips are a hash of ``(seed, epoch, sample)``
so no random state needs saving.
"""

from __future__ import annotations

import numpy as np
import torch

from faceforge.data.dataset import CorruptImage, FaceDataset


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0xFACE]).permutation(n)


def flip_bits(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """A deterministic coin per (seed, epoch, sample index)."""
    x = indices.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= np.uint64((seed * 1_000_003 + epoch * 7919) & 0xFFFFFFFF)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return (x & np.uint64(1)).astype(bool)


class BatchPlan:
    """Which sample indices each rank reads at each step of each epoch."""

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, drop_last: bool = True
    ):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.global_batch = batch_size * world
        self.drop_last = drop_last
        if self.global_batch > n and drop_last:
            raise ValueError(f"global batch {self.global_batch} exceeds the dataset ({n} images)")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch if self.drop_last else -(-self.n // self.global_batch)

    def batches(self, epoch: int, start_step: int = 0):
        perm = epoch_permutation(self.n, self.seed, epoch)
        for step in range(start_step, self.steps_per_epoch):
            lo = step * self.global_batch + self.rank * self.batch_size
            yield step, perm[lo : lo + self.batch_size]


class _BatchReader(torch.utils.data.Dataset):
    """One whole batch per item, built by :class:`faceforge.data.loader._BatchBuilder` (decoding or
    memmap slicing, fitting to the model's input, flip, normalisation; corrupt images dropped)."""

    def __init__(
        self,
        dataset: FaceDataset,
        plan: BatchPlan,
        epoch: int,
        start_step: int,
        flip: bool,
        mean,
        std,
        size: tuple[int, int] | None = None,
        template: str = "arcface",
    ):
        from faceforge.data.loader import _BatchBuilder, _per_channel

        self.flip = flip
        self.items = list(plan.batches(epoch, start_step))
        self.seed, self.epoch = plan.seed, epoch
        size = tuple(size) if size else _first_image_size(dataset)
        ordered = type(plan) is not BatchPlan  # pairs / P x K plans rely on the order in a batch
        self.builder = _BatchBuilder(
            dataset,
            size,
            _per_channel(mean, "mean"),
            _per_channel(std, "std"),
            template=template,
            keep_order=ordered,
        )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        step, idx = self.items[i]
        flips = flip_bits(idx, self.seed, self.epoch) if self.flip else np.zeros(len(idx), bool)
        images, labels, skipped = self.builder[(idx, flips)]
        return step, images, labels, skipped


def _first_image_size(dataset: FaceDataset) -> tuple[int, int]:
    shape = getattr(dataset, "image_shape", None)
    if shape:
        return int(shape[0]), int(shape[1])
    for i in range(min(len(dataset), 64)):
        try:
            return tuple(dataset.read(i).shape[:2])
        except CorruptImage:
            continue
    from faceforge.errors import UserError

    raise UserError(f"{dataset.description or 'dataset'}: none of the first 64 images can be decoded")


def epoch_batches(
    dataset: FaceDataset,
    plan: BatchPlan,
    epoch: int,
    start_step: int = 0,
    *,
    flip: bool = True,
    mean: float = 0.5,
    std: float = 0.5,
    workers: int = 0,
    size: tuple[int, int] | None = None,
    template: str = "arcface",
    pin_memory: bool = False,
):
    """Yield ``(step, images[B,3,H,W] float, labels[B], skipped)`` for one epoch from ``start_step``."""
    reader = _BatchReader(dataset, plan, epoch, start_step, flip, mean, std, size, template)
    loader = torch.utils.data.DataLoader(
        reader,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )
    yield from loader
