"""Learning-rate schedules as a factor of the base rate, per optimiser step."""

from __future__ import annotations

import math

from faceforge.errors import UserError


def lr_factor(step: int, optim, steps_per_epoch: int, total_steps: int) -> float:
    """Linear warmup over ``warmup_epochs``, then ``step`` (``lr_steps`` in epochs, ×gamma each),
    ``poly`` ((1 - t)^power) or ``cosine``, where t is the post-warmup progress."""
    warmup = int(round(optim.warmup_epochs * steps_per_epoch))
    if warmup and step < warmup:
        return (step + 1) / warmup
    if optim.schedule == "step":
        epoch = step / max(1, steps_per_epoch)
        return optim.gamma ** sum(1 for m in optim.lr_steps if epoch >= m)
    t = (step - warmup) / max(1, total_steps - warmup)
    t = min(max(t, 0.0), 1.0)
    if optim.schedule == "poly":
        return (1.0 - t) ** optim.power
    if optim.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    raise UserError(f"optim.schedule: unknown schedule '{optim.schedule}' (valid: step, poly, cosine)")
