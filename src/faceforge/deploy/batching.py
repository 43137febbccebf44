"""Micro-batching: crops from many request threads embedded by one worker in shared batches.

One inference lock per request makes 8 concurrent clients queue for 8 batch-1 forward passes;
stacking what is waiting into one batch pays the model's per-call cost once. The worker takes the
first waiting request, then keeps collecting for at most ``window_s`` seconds (or until
``max_batch`` crops) — but only while ``upstream()`` says more requests are still decoding or
detecting, so a lone request is never held back by the window. One thread runs the model, so
memory stays that of one batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np


class _Pending:
    __slots__ = ("crops", "done", "result", "error")

    def __init__(self, crops: np.ndarray):
        self.crops, self.done, self.result, self.error = crops, threading.Event(), None, None


class MicroBatcher:
    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], window_s: float = 0.003,
                 max_batch: int = 32, upstream: Callable[[], int] = lambda: 0):
        self._embed, self._upstream = embed, upstream
        self.window_s, self.max_batch = float(window_s), int(max_batch)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.batches = 0  # forward passes run
        self.largest = 0  # most crops in one of them

    def embed(self, crops: np.ndarray, queued: Callable[[], None] | None = None) -> np.ndarray:
        """Embeddings of ``crops`` [B, H, W, 3] (blocks until their batch has run); ``queued`` is
        called once they wait in the queue (the caller leaves ``upstream`` then)."""
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="faceforge-embed", daemon=True)
                self._thread.start()
        item = _Pending(np.ascontiguousarray(crops))
        self._queue.put(item)
        if queued is not None:
            queued()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def close(self) -> None:
        with self._start:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=30)
                self._thread = None

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, n, stop = [first], len(first.crops), False
        deadline = time.monotonic() + self.window_s
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or self._upstream() <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                stop = True
                break
            batch.append(item)
            n += len(item.crops)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            try:
                out = self._embed(np.concatenate([b.crops for b in batch]))
                self.batches += 1
                self.largest = max(self.largest, len(out))
                start = 0
                for b in batch:
                    b.result, start = out[start:start + len(b.crops)], start + len(b.crops)
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request
                for b in batch:
                    b.error = e
            finally:
                for b in batch:
                    b.done.set()
