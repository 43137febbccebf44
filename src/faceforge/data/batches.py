"""Resumable, distributed training batches: the plan (which samples each rank reads at each step) and
the builder (those samples as one normalised batch).

The order of an epoch is one global permutation drawn from ``(seed, epoch)``. Step ``b`` of the
epoch takes samples ``[b·G, (b+1)·G)`` of it, where G = per-rank batch × world size, and each rank
takes its contiguous slice. A position is therefore just ``(epoch, samples consumed)``, which
survives a restart on a different number of processes. Flips are a hash of ``(seed, epoch, sample)``
so no random state needs saving.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from faceforge.align.transform import fit_to_input
from faceforge.data.dataset import FaceDataset
from faceforge.errors import UserError
from faceforge.io.images import CorruptImage


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


def per_channel(value: float | Sequence[float], name: str) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=torch.float32).flatten()
    if v.numel() == 1:
        v = v.repeat(3)
    if v.numel() != 3:
        raise UserError(f"loader.{name}: expected one value or three (RGB), got {v.numel()}")
    if name == "std" and bool((v <= 0).any()):
        raise UserError("loader.std: must be positive")
    return v.view(1, 3, 1, 1)


class BatchBuilder(torch.utils.data.Dataset):
    """``builder[(indices, flips)]`` -> ``(images uint8 [B,H,W,3], flips bool [B], labels int64 [B],
    skipped)``; corrupt images are dropped (with their flip bits and labels) and counted."""

    def __init__(
        self,
        dataset: FaceDataset,
        size: tuple[int, int],
        template: str = "arcface",
        keep_order: bool = False,
    ):
        self.dataset = dataset
        self.size = size
        self.template = template
        self.keep_order = keep_order  # identity-ordered plans (pairs, P x K) must not be re-sorted
        self.fast = callable(getattr(dataset, "read_batch", None)) and tuple(
            getattr(dataset, "image_shape", ())
        ) == (*size, 3)

    def __len__(self) -> int:
        return len(self.dataset)

    def _decode(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        images, kept = [], []
        h, w = self.size
        for pos, i in enumerate(indices):
            try:
                img = self.dataset.read(int(i))
            except CorruptImage:
                continue
            if img.shape[:2] != (h, w):
                img = fit_to_input(img, (h, w), self.template)
            images.append(img)
            kept.append(pos)
        if not images:
            return np.zeros((0, h, w, 3), np.uint8), np.zeros(0, np.int64), len(indices)
        return np.stack(images), np.asarray(kept, dtype=np.int64), len(indices) - len(images)

    def __getitem__(self, item):
        indices, flips = item
        indices = np.asarray(indices, dtype=np.int64)
        flips = np.asarray(flips, dtype=bool)
        if self.fast:
            # sorted indices read the memmap front to back; the order inside a batch is irrelevant
            if not self.keep_order:
                sort = np.argsort(indices, kind="stable")
                indices, flips = indices[sort], flips[sort]
            raw = self.dataset.read_batch(indices)
            skipped = 0
            check = getattr(self.dataset, "bad_records", None)  # packed files: per-record CRCs
            bad = check(indices, raw) if check is not None else None
            if bad is not None and bad.any():  # a damaged record is skipped and counted like a corrupt image
                keep = ~bad
                raw, indices, flips, skipped = raw[keep], indices[keep], flips[keep], int(bad.sum())
        else:
            raw, kept, skipped = self._decode(indices)
            indices, flips = indices[kept], flips[kept]
        # uint8 NHWC leaves the worker (a quarter of float32's bytes); flip, conversion and
        # normalisation run where the model runs (:func:`to_model_input`)
        images = torch.from_numpy(np.ascontiguousarray(raw))
        labels = torch.from_numpy(np.asarray(self.dataset.labels[indices], dtype=np.int64))
        return images, torch.from_numpy(flips), labels, skipped


def to_model_input(
    images: torch.Tensor,
    flips: torch.Tensor | None,
    scale: torch.Tensor,
    shift: torch.Tensor,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 ``[B,H,W,3]`` (+ flip bits) -> normalised float32 ``[B,3,H,W]`` on ``images``' device.

    ``x * scale + shift`` with ``scale = 1/(255·std)`` and ``shift = -mean/std`` is
    ``(x/255 - mean)/std``. On an accelerator the batch is flipped with one ``where`` (no value is
    read back to the host) and the NCHW view of the NHWC batch keeps its ``channels_last`` strides.
    On the CPU, per-image copies through flipped, transposed views are ~2x faster than any batched
    form (the loop the loader always ran), with the same values.
    """
    if images.device.type == "cpu":
        return _cpu_model_input(images, flips, scale, shift, channels_last)
    x = images.permute(0, 3, 1, 2)
    if flips is not None and flips.numel():
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    x = x.to(torch.float32)  # keeps the channels_last strides of the view
    x.mul_(scale.to(x.device)).add_(shift.to(x.device))
    return x if channels_last else x.contiguous()


def _cpu_model_input(images, flips, scale, shift, channels_last: bool) -> torch.Tensor:
    raw = images.numpy()
    bits = flips.numpy() if flips is not None and flips.numel() else np.zeros(len(raw), bool)
    b, h, w, c = raw.shape
    if channels_last:  # NHWC float memory, seen as NCHW: the channels_last layout
        out = np.empty((b, h, w, c), dtype=np.float32)
        for k in range(b):
            np.copyto(out[k], raw[k, :, ::-1] if bits[k] else raw[k])
        x = torch.from_numpy(out).permute(0, 3, 1, 2)
    else:
        out = np.empty((b, c, h, w), dtype=np.float32)
        for k in range(b):
            np.copyto(out[k], (raw[k, :, ::-1] if bits[k] else raw[k]).transpose(2, 0, 1))
        x = torch.from_numpy(out)
    return x.mul_(scale).add_(shift)


class DeviceBatches:
    """Wraps ``(step, images uint8, flips, labels, skipped)`` batches: copies each to ``device``
    (on a side CUDA stream, one batch ahead, from pinned memory) and yields
    ``(step, images float [B,3,H,W], labels, skipped)`` prepared by :func:`to_model_input` there.
    """

    def __init__(self, batches, device: torch.device, mean, std, channels_last: bool = False):
        self.batches = batches
        self.device = torch.device(device)
        self.scale = (1.0 / (255.0 * per_channel(std, "std"))).to(self.device)
        self.shift = (-per_channel(mean, "mean") / per_channel(std, "std")).to(self.device)
        self.channels_last = channels_last
        cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self.stream = torch.cuda.Stream(self.device) if cuda else None

    def _send(self, batch):
        step, images, flips, labels, skipped = batch
        if self.stream is None:
            return step, images.to(self.device), flips.to(self.device), labels.to(self.device), skipped, None
        with torch.cuda.stream(self.stream):
            out = [t.to(self.device, non_blocking=True) for t in (images, flips, labels)]
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return step, *out, skipped, ready

    def _finish(self, sent):
        step, images, flips, labels, skipped, ready = sent
        if ready is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            for t in (images, flips, labels):  # the allocator must not reuse them before this step ends
                t.record_stream(current)
        x = to_model_input(images, flips, self.scale, self.shift, self.channels_last)
        return step, x, labels, skipped

    def __iter__(self):
        it = iter(self.batches)
        pending = None
        for batch in it:
            sent = self._send(batch)  # batch k+1 travels while batch k is being trained on
            if pending is not None:
                yield self._finish(pending)
            pending = sent
        if pending is not None:
            yield self._finish(pending)

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()


class _BatchReader(torch.utils.data.Dataset):
    """One whole batch per item, built by :class:`BatchBuilder` (decoding or memmap slicing,
    fitting to the model's input, the flip bits; corrupt images dropped)."""

    def __init__(
        self,
        dataset: FaceDataset,
        plan: BatchPlan,
        epoch: int,
        start_step: int,
        flip: bool,
        size: tuple[int, int] | None = None,
        template: str = "arcface",
    ):
        self.flip = flip
        self.items = list(plan.batches(epoch, start_step))
        self.seed, self.epoch = plan.seed, epoch
        size = tuple(size) if size else first_image_size(dataset)
        ordered = type(plan) is not BatchPlan  # pairs / P x K plans rely on the order in a batch
        self.builder = BatchBuilder(
            dataset,
            size,
            template=template,
            keep_order=ordered,
        )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        step, idx = self.items[i]
        flips = flip_bits(idx, self.seed, self.epoch) if self.flip else np.zeros(len(idx), bool)
        images, flips, labels, skipped = self.builder[(idx, flips)]
        return step, images, flips, labels, skipped


def first_image_size(dataset: FaceDataset) -> tuple[int, int]:
    shape = getattr(dataset, "image_shape", None)
    if shape:
        return int(shape[0]), int(shape[1])
    for i in range(min(len(dataset), 64)):
        try:
            return tuple(dataset.read(i).shape[:2])
        except CorruptImage:
            continue
    raise UserError(f"{dataset.description or 'dataset'}: none of the first 64 images can be decoded")


def epoch_batches(
    dataset: FaceDataset,
    plan: BatchPlan,
    epoch: int,
    start_step: int = 0,
    *,
    flip: bool = True,
    workers: int = 0,
    size: tuple[int, int] | None = None,
    template: str = "arcface",
    pin_memory: bool = False,
):
    """Yield ``(step, images uint8 [B,H,W,3], flips bool [B], labels [B], skipped)`` for one epoch
    from ``start_step``; :class:`DeviceBatches` (or :func:`to_model_input`) makes model input of them."""
    reader = _BatchReader(dataset, plan, epoch, start_step, flip, size, template)
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
