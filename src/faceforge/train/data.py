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

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.global_batch = batch_size * world
        if self.global_batch > n:
            raise ValueError(f"global batch {self.global_batch} exceeds the dataset ({n} images)")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch

    def batches(self, epoch: int, start_step: int = 0):
        perm = epoch_permutation(self.n, self.seed, epoch)
        for step in range(start_step, self.steps_per_epoch):
            lo = step * self.global_batch + self.rank * self.batch_size
            yield step, perm[lo : lo + self.batch_size]


class _BatchReader(torch.utils.data.Dataset):
    """Reads one whole batch per item: decoding, flip, normalisation; corrupt images dropped."""

    def __init__(
        self,
        dataset: FaceDataset,
        plan: BatchPlan,
        epoch: int,
        start_step: int,
        flip: bool,
        mean: float,
        std: float,
        size: tuple[int, int] | None = None,
        template: str = "arcface",
    ):
        self.dataset, self.flip, self.mean, self.std = dataset, flip, mean, std
        self.size, self.template = size, template
        self.items = list(plan.batches(epoch, start_step))
        self.seed, self.epoch = plan.seed, epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        step, idx = self.items[i]
        reader = getattr(self.dataset, "read_batch", None)
        skipped = 0
        if reader is not None:
            images, keep = reader(idx)  # uint8 [n, H, W, 3] and the indices actually read
        else:
            imgs, keep = [], []
            for j in idx:
                try:
                    imgs.append(self.dataset.read(int(j)))
                    keep.append(j)
                except CorruptImage:
                    skipped += 1
            images = np.stack(imgs) if imgs else np.zeros((0, 1, 1, 3), np.uint8)
            keep = np.asarray(keep, dtype=np.int64)
        skipped = len(idx) - len(keep)
        if self.size and len(keep) and tuple(images.shape[1:3]) != tuple(self.size):
            from faceforge.eval.embedder import fit_batch

            images = fit_batch(images, self.size, self.template)
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if self.flip and len(keep):
            f = torch.from_numpy(flip_bits(np.asarray(keep), self.seed, self.epoch))
            x = torch.where(f[:, None, None, None], x.flip(3), x)
        x = x.float().div_(255.0).sub_(self.mean).div_(self.std)
        y = torch.from_numpy(self.dataset.labels[keep].astype(np.int64))
        return step, x, y, skipped


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
):
    """Yield ``(step, images[B,3,H,W] float, labels[B], skipped)`` for one epoch from ``start_step``."""
    reader = _BatchReader(dataset, plan, epoch, start_step, flip, mean, std, size, template)
    loader = torch.utils.data.DataLoader(
        reader,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    yield from loader
