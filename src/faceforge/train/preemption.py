"""SIGTERM/SIGINT during training: finish the step, write a checkpoint, stop.

A cluster scheduler sends SIGTERM some seconds before it preempts a job (torchrun forwards it to
every rank); Ctrl-C sends SIGINT. :class:`StopSignals` turns the first one into a request that the
loop reads after each step; :meth:`StopSignals.requested` all-reduces it, so every rank stops after
the same step even when only one of them got the signal, and the checkpoint (a collective) is
written by all together. A second SIGINT interrupts at once (the default behaviour), for a user
who does not want to wait for the step.
"""

from __future__ import annotations

import signal
import threading

import torch

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    def __init__(self, device: torch.device):
        self.device = device
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum
        if signum == signal.SIGINT:  # a second Ctrl-C: no more waiting
            signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # only there can Python catch them
            for s in SIGNALS:
                self._previous[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
