"""Step terms kept on the device between log records, so that a training step never waits."""

from __future__ import annotations

import math

import torch


class Meter:
    """A log window's step terms, summed on the device, and its first non-finite loss.

    ``add`` only launches device ops; ``read`` is the window's single device->host transfer
    (one ``tolist`` of one stacked tensor), made at ``log_every`` steps.
    """

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self.bad_step: torch.Tensor | None = None  # inf while every loss was finite
        self.bad_value: torch.Tensor | None = None

    def add(self, out: dict[str, torch.Tensor], step: int) -> None:
        for k, v in out.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += 1
        total = out["loss_total"]
        here = torch.where(torch.isfinite(total), torch.inf, float(step))
        if self.bad_step is None:
            self.bad_step, self.bad_value = here, total
        else:
            self.bad_value = torch.where(here < self.bad_step, total, self.bad_value)
            self.bad_step = torch.minimum(self.bad_step, here)

    def read(self, extra: torch.Tensor | None = None) -> tuple[dict, int | None, float, float]:
        """``(mean terms, first bad step or None, its loss, extra)`` and a fresh window."""
        keys = list(self.sums)
        parts = [self.sums[k].reshape(1) / max(self.n, 1) for k in keys]
        tail = [self.bad_step, self.bad_value] if self.bad_step is not None else []
        if extra is not None:
            tail.append(extra.to(parts[0].device).float())
        values = torch.cat([*parts, *(t.reshape(1).float() for t in tail)]).tolist() if parts else []
        means = dict(zip(keys, values[: len(keys)]))
        rest = values[len(keys) :]
        bad_step = bad_value = None
        if self.bad_step is not None:
            bad_step, bad_value = rest[0], rest[1]
            rest = rest[2:]
        over = rest[0] if extra is not None else 0.0
        self.__init__()
        ok = bad_step is None or math.isinf(bad_step)
        return means, None if ok else int(bad_step), bad_value, over

    def first_bad(self) -> tuple[int, float] | None:
        """``(step, loss)`` of the window's first non-finite loss, read without ending the window."""
        if self.bad_step is None:
            return None
        step, value = torch.stack([self.bad_step, self.bad_value.float()]).tolist()
        return None if math.isinf(step) else (int(step), value)
