"""Process-group helpers. Single process first: every function is the identity there.

Launch with ``torchrun --nproc_per_node=N -m faceforge train CONFIG`` (or ``--nnodes`` and a
rendezvous endpoint for several machines); the engine calls :func:`init_from_env`.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def check_device(name: str, where: str = "--device") -> str:
    """``name`` (cpu, auto, cuda, cuda:N, mps) if this machine has it, else a one-line UserError:
    ``cuda:7`` on a CPU-only build fails here, not deep inside the first ``.to()``."""
    from faceforge.errors import UserError

    text = str(name).strip().lower()
    if text in ("cpu", "auto"):
        return text
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise UserError(f"{where}: mps is not available on this machine")
        return text
    index = text.removeprefix("cuda").removeprefix(":")
    if not text.startswith("cuda") or (text != "cuda" and not (text.startswith("cuda:") and index.isdigit())):
        raise UserError(f"{where}: '{name}' is not a device (cpu, cuda, cuda:N, mps or auto)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError(f"{where}: '{name}': this build/machine has no CUDA device (use cpu)")
    if index and int(index) >= count:
        raise UserError(f"{where}: '{name}': only {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return text


def init_from_env(device: str = "auto") -> bool:
    """Initialise the default process group when launched by torchrun (WORLD_SIZE > 1)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    use_cuda = torch.cuda.is_available() and device != "cpu"
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return True


def shutdown(wait: bool = True) -> None:
    """Destroy the default process group, after a final barrier when every rank ends normally.

    A process that exits with a live gloo/NCCL group leaves its background threads to the
    interpreter's teardown, which aborts (``terminate called without an active exception``,
    exit -6) and makes torchrun report a finished job as failed. On an error path there is no
    barrier: the other ranks may be inside a collective that will never complete; destroying
    the group makes theirs fail promptly instead of waiting for the timeout.
    """
    if not is_distributed():
        return
    if wait:
        with contextlib.suppress(RuntimeError):  # a peer that already failed: still destroy ours
            dist.barrier()
    # Objects in reference cycles (DDP's reducer and autograd hooks) keep the group's backend alive
    # after destroy_process_group; left to the interpreter's exit, its threads are destroyed while
    # joinable and the process aborts. Collecting them here tears the backend down in order.
    gc.collect()
    dist.destroy_process_group()
    gc.collect()


@contextlib.contextmanager
def process_group(device: str = "auto"):
    """Own the default process group for a block: created on entry when launched by torchrun,
    destroyed on the way out (normal end, ``UserError``, divergence, budget, Ctrl-C).

    A group that already existed on entry (a caller's) is left to its owner.
    """
    owned = not is_distributed() and init_from_env(device)
    try:
        yield
    except BaseException:
        if owned:
            shutdown(wait=False)
        raise
    if owned:
        shutdown(wait=True)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_(t: torch.Tensor, op=None) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def _sizes(n: int, device) -> list[int]:
    t = torch.tensor([n], device=device)
    parts = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t)
    return [int(p.item()) for p in parts]


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor along dim 0 (no gradient). Ranks may hold different
    numbers of rows (a rank that skipped a corrupt image); rows are padded for the transfer."""
    if not is_distributed():
        return t
    sizes = _sizes(t.shape[0], t.device)
    biggest = max(sizes)
    padded = t.new_zeros((biggest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def all_gather_objects(obj):
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class _AllGatherGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    The loss computed on the gathered batch is the same global loss on every rank, and each rank's
    classifier shard contributes its own part of d(loss)/d(embeddings); summing them gives the full
    gradient. It is multiplied by the world size so that DDP's gradient *averaging* of the backbone
    yields exactly the gradient of one process holding the whole global batch.
    """

    @staticmethod
    def forward(ctx, t):
        ctx.sizes = _sizes(t.shape[0], t.device)
        return all_gather_cat(t)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: rank()])
        return grad[start : start + ctx.sizes[rank()]] * world_size()


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return t
    return _AllGatherGrad.apply(t)
