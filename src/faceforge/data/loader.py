"""The training loader: deterministic, resumable batches of normalised images from any FaceDataset.

Every random choice is made up front from ``(seed, epoch)``: the epoch's permutation and one flip bit
per position. Batch ``b`` of epoch ``e`` is therefore the same whatever the worker count, and
``iter_from(e, b)`` restarts exactly there (what exact resume needs). Each DataLoader item is a whole
batch (the sampler yields index arrays, the dataset's ``__getitem__`` builds one batch), so a packed
dataset is sliced once per batch straight from its memmap; other datasets decode image by image and
skip (and count) corrupt images. Workers hand over uint8 batches; flip and normalisation
``(x/255 - mean)/std`` then run on the whole batch tensor (:func:`~faceforge.data.batches.to_model_input`).

The training engine reads through the same plan and batch builder (:mod:`faceforge.data.batches`,
which adds per-rank slicing and identity plans); this class is the single-process API::

    loader = build_train_loader(ds, 128, seed=cfg.seed, workers=4)
    for epoch in range(start_epoch, epochs):
        for images, labels in loader.iter_from(epoch, start_batch if epoch == start_epoch else 0):
            ...
            state = loader.state_dict()   # {"epoch", "batch"}: batch = index of the next batch
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from faceforge.data.batches import epoch_permutation, flip_bits, per_channel
from faceforge.data.dataset import FaceDataset
from faceforge.errors import UserError


def epoch_plan(num_images: int, seed: int, epoch: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The permutation of epoch ``epoch`` and the flip bit of each position; a pure function
    (the same one the training engine uses)."""
    order = epoch_permutation(num_images, seed, epoch)
    flips = flip_bits(order, seed, epoch) if flip else np.zeros(num_images, dtype=bool)
    return order, flips


class TrainLoader:
    """Iterable of ``(images, labels)`` batches; see the module docstring for the resume contract."""

    def __init__(
        self,
        dataset: FaceDataset,
        batch_size: int,
        flip: bool = True,
        workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
        mean: float | Sequence[float] = 0.5,
        std: float | Sequence[float] = 0.5,
        image_size: tuple[int, int] | None = None,
        pin_memory: bool = False,
    ):
        if batch_size < 1:
            raise UserError(f"loader.batch_size: must be at least 1, got {batch_size}")
        if workers < 0:
            raise UserError(f"loader.workers: must be >= 0, got {workers}")
        if len(dataset) == 0:
            raise UserError(f"{dataset.description or 'dataset'}: holds no images")
        if drop_last and len(dataset) < batch_size:
            raise UserError(
                f"loader.batch_size: {batch_size} is larger than the dataset ({len(dataset)} images) "
                "and drop_last is set, so an epoch would hold no batch"
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.workers = int(workers)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.pin_memory = pin_memory
        from faceforge.data.batches import first_image_size

        self.image_size = tuple(image_size) if image_size else first_image_size(dataset)
        self.mean, self.std = per_channel(mean, "mean"), per_channel(std, "std")
        self.skipped = 0
        self.epoch = 0
        self.batch_index = 0  # index of the next batch of ``self.epoch``

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.batch_index = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch_index, "seed": self.seed, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch_index = int(state["epoch"]), int(state["batch"])
        self.skipped = int(state.get("skipped", 0))

    def batch_indices(self, epoch: int, batch_index: int) -> np.ndarray:
        """Dataset indices of batch ``batch_index`` of ``epoch`` (before skipping corrupt images)."""
        order, _ = epoch_plan(len(self.dataset), self.seed, epoch, self.flip)
        return order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]

    def iter_from(self, epoch: int, batch_index: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``batch_index, batch_index+1, ...`` of ``epoch``; a batch whose images are all
        corrupt is not yielded, but ``self.batch_index`` still advances past it."""
        if not 0 <= batch_index <= len(self):
            raise UserError(f"loader: batch index {batch_index} outside [0, {len(self)}] for this dataset")
        from faceforge.data.batches import BatchPlan, epoch_batches, to_model_input

        self.epoch, self.batch_index = int(epoch), int(batch_index)
        plan = BatchPlan(len(self.dataset), self.batch_size, self.seed, drop_last=self.drop_last)
        scale, shift = 1.0 / (255.0 * self.std), -self.mean / self.std
        for step, raw, flips, labels, skipped in epoch_batches(
            self.dataset,
            plan,
            epoch,
            batch_index,
            flip=self.flip,
            workers=self.workers,
            size=self.image_size,
            pin_memory=self.pin_memory,
        ):
            self.skipped += int(skipped)
            self.batch_index = step + 1
            if len(labels):
                yield to_model_input(raw, flips, scale, shift), labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(self.epoch, self.batch_index if self.batch_index < len(self) else 0)


def build_train_loader(dataset: FaceDataset, batch_size: int, **options) -> TrainLoader:
    """The training loader over ``dataset``; options as :class:`TrainLoader`."""
    return TrainLoader(dataset, batch_size, **options)
