"""A one-line progress bar on stderr (images/s and ETA) for long commands."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool, label: str = "align", stream=None, unit: str = "img"):
        self.total, self.enabled, self.label, self.stream = total, enabled, label, stream or sys.stderr
        self.unit = unit
        self.start = self.last = time.perf_counter()
        self.done = 0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.5 or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            width = 30
            fill = int(width * self.done / max(self.total, 1))
            self.stream.write(
                f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                f"{rate:.1f} {self.unit}/s eta {int(eta) // 60:d}:{int(eta) % 60:02d}"
            )
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def progress_callback(label: str, enabled: bool = True, stream=None, unit: str = "img"):
    """A ``progress(done, total)`` callback (what ``embed_images`` calls) drawing a :class:`Progress`
    — only on a terminal: redirected to a file or a pipe, stderr keeps just the messages (a
    one-line error stays one line)."""
    stream = stream or sys.stderr
    enabled = enabled and bool(getattr(stream, "isatty", lambda: False)())
    state: dict[str, Progress] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = Progress(total, enabled, label, stream, unit)
        bar = state["bar"]
        bar.step(done - bar.done)

    return update
