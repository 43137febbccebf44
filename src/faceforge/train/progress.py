"""The training progress bar: steps against the budget that will actually stop the run.

A run ends at the first of three budgets: ``train.epochs`` x steps per epoch, ``train.max_steps``
and ``train.max_minutes``. The bar counts against whichever ends first (the step budgets are known
up front; the wall-clock one is compared with the step rate measured so far), and its ETA is the
time until then — not the end of the current epoch of a 1000-epoch schedule that a 3-minute budget
will cut short. Like every faceforge bar it is drawn on a terminal only (redirected, stderr keeps
the messages: the validation lines, the stop line); ``metrics.jsonl`` has every step for a log.
"""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainProgress:
    def __init__(self, total_steps: int, steps_per_epoch: int, epochs: int, budget_s: float = 0.0,
                 start_step: int = 0, enabled: bool = True, stream=None, every_s: float = 0.5):
        self.total, self.per_epoch, self.epochs = total_steps, steps_per_epoch, epochs
        self.budget_s, self.enabled, self.stream = budget_s, enabled, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.start_step = self.step = start_step
        self.t0 = self.last = time.perf_counter()
        self.postfix = ""
        self.drawn = False

    def limit(self, elapsed: float) -> tuple[str, float, float]:
        """``(budget name, fraction done, seconds left)`` of the budget that ends the run first."""
        done = self.step - self.start_step
        rate = done / elapsed if elapsed > 0 and done else 0.0
        steps_left = self.total - self.step
        steps_eta = steps_left / rate if rate else float("inf")
        name = "max_steps" if self.total < self.per_epoch * self.epochs else "epochs"
        if self.budget_s and self.budget_s - elapsed < steps_eta:
            return "max_minutes", min(1.0, elapsed / self.budget_s), max(0.0, self.budget_s - elapsed)
        return name, self.step / max(self.total, 1), steps_eta

    def line(self, elapsed: float | None = None) -> str:
        elapsed = time.perf_counter() - self.t0 if elapsed is None else elapsed
        name, frac, left = self.limit(elapsed)
        width = 24
        fill = int(width * frac)
        epoch = min(self.step // max(self.per_epoch, 1) + 1, self.epochs)
        if name == "max_minutes":
            where = f"{_clock(elapsed)}/{_clock(self.budget_s)} (max_minutes) step {self.step}"
        else:
            where = f"step {self.step}/{self.total} ({name})"
        eta = "?" if left == float("inf") else _clock(left)
        tail = f" {self.postfix}" if self.postfix else ""
        return (f"train [{'#' * fill}{'.' * (width - fill)}] {where} epoch {epoch}/{self.epochs} "
                f"eta {eta}{tail}")

    def update(self, step: int, **postfix: str) -> None:
        self.step = step
        if postfix:
            self.postfix = " ".join(f"{k}={v}" for k, v in postfix.items())
        now = time.perf_counter()
        if self.enabled and self.tty and (now - self.last >= self.every_s or step == self.total):
            self.last = now
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self.drawn = True

    def close(self) -> None:
        if self.enabled and self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def say(self, text: str) -> None:
        """A line of its own (validation, a signal), not overwritten by the bar."""
        if not self.enabled:
            return
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()
