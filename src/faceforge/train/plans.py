"""Batch plans by identity: pairs (semi-siamese) and P×K (triplet) on top of the sample plan."""

from __future__ import annotations

import numpy as np

from faceforge.errors import UserError
from faceforge.train.data import BatchPlan, epoch_permutation


class IdentityPlan(BatchPlan):
    """Each step takes ``batch_size // k`` identities per rank and ``k`` images of each.

    Order within a rank's batch is image-major: ``[id_0 img_0, id_1 img_0, ..., id_0 img_1, ...]``,
    so ``images.chunk(k)`` gives k aligned views of the same identities. Identities with fewer
    than k images are left out; images are drawn from ``(seed, epoch, identity)``.
    """

    def __init__(
        self, labels: np.ndarray, batch_size: int, seed: int, rank: int = 0, world: int = 1, k: int = 2
    ):
        if batch_size % k:
            raise UserError(f"data.batch_size: {batch_size} is not a multiple of {k} images per identity")
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        groups = np.split(order, bounds)
        self.groups = [g for g in groups if len(g) >= k]
        if len(self.groups) < 2:
            raise UserError(f"training needs at least 2 identities with {k}+ images each")
        self.k = k
        self.ids_per_rank = batch_size // k
        super().__init__(len(self.groups), self.ids_per_rank, seed, rank, world)
        self.batch_size = batch_size

    @property
    def steps_per_epoch(self) -> int:
        return self.n // (self.ids_per_rank * self.world)

    def batches(self, epoch: int, start_step: int = 0):
        perm = epoch_permutation(self.n, self.seed, epoch)
        per_step = self.ids_per_rank * self.world
        for step in range(start_step, self.steps_per_epoch):
            lo = step * per_step + self.rank * self.ids_per_rank
            ids = perm[lo : lo + self.ids_per_rank]
            picks = []
            for g in ids:
                rng = np.random.default_rng([self.seed, epoch, int(g), 0x5EED])
                picks.append(rng.choice(self.groups[g], size=self.k, replace=False))
            yield step, np.asarray(picks).T.reshape(-1)


def make_plan(kind: str, dataset, batch_size: int, seed: int, rank: int, world: int, k: int = 2) -> BatchPlan:
    if kind == "samples":
        if batch_size * world > len(dataset):
            raise UserError(
                f"data.batch_size: {batch_size} x {world} processes exceeds the "
                f"{len(dataset)} training images"
            )
        return BatchPlan(len(dataset), batch_size, seed, rank, world)
    if kind in ("pairs", "pk"):
        return IdentityPlan(dataset.labels, batch_size, seed, rank, world, k=k)
    raise ValueError(f"unknown batch plan '{kind}'")
