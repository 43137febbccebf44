"""Launching several processes from a test without ports that collide or children that outlive it.

- :func:`spawn` runs a function in N processes (``torch.multiprocessing``) under a deadline; each
  test gives its workers a ``file://`` rendezvous inside its own ``tmp_path``, so no TCP port is
  involved and two test processes running at once cannot meet.
- :func:`torchrun` runs ``python -m torch.distributed.run --standalone``: the rendezvous store binds
  port 0, so the OS hands out a free port (no bind-then-release race). The launcher and its workers
  run in a session of their own and are killed as a group if the deadline passes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch.multiprocessing as mp

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def spawn(fn, nprocs: int, args: tuple, timeout: float = 240.0) -> None:
    """``fn(rank, *args)`` in ``nprocs`` processes; raises if one fails or the deadline passes."""
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{nprocs} worker processes still running after {timeout:.0f} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(5)


def torchrun(nproc: int, argv: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc ARGV``; the output is returned (and printed
    on failure, so a rank's last words reach the test report)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.Popen(
        cmd + argv,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"torchrun still running after {timeout:.0f} s:\n{out[-4000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun exited {proc.returncode}:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd + argv, proc.returncode, out, None)
