"""``train.precision: auto`` on a CPU: bf16 autocast (and channels_last) only where they pay here.

On CUDA ``auto`` is bf16 (as before). On a CPU it is fp32 unless the CPU computes bf16 natively
(AVX-512 BF16, AMX, Arm BF16: ``faceforge.runtime.cpu``) *and* a short measurement says so: a few
forward+backward steps of a copy of the backbone (the model and the random state are left untouched)
in fp32, bf16 autocast, and bf16 autocast with channels_last; bf16 is taken when it is at least
``MIN_GAIN`` faster. The answer is cached per backbone, batch and machine in the engine cache
(``faceforge.runtime.choice``), so later runs measure nothing. ``train.channels_last`` set in the
config is obeyed (then only the precision is measured); so is an explicit ``train.precision``.
"""

from __future__ import annotations

import copy
import time

import torch

from faceforge.errors import UserError
from faceforge.runtime import cpu

PRECISIONS = ("fp32", "bf16", "fp16")
MIN_GAIN = 1.05  # bf16 must save 5% of the step: smaller gains are within a busy machine's noise
STEPS = 2  # timed steps per variant after one warm-up (the faster counts)
MAX_BATCH = 16


def _step_seconds(net: torch.nn.Module, x: torch.Tensor, bf16: bool, channels_last: bool,
                  clock=time.perf_counter) -> float:
    net = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    best = float("inf")
    for k in range(STEPS + 1):
        t = clock()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().square().mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
        if k:
            best = min(best, clock() - t)
    return best


def measure(backbone: torch.nn.Module, input_size: tuple[int, int], batch: int,
            channels_last: bool | None = None) -> dict:
    """Seconds per step of each variant on a copy of ``backbone`` (train mode, random input)."""
    variants = {"fp32": (False, bool(channels_last)), "bf16": (True, bool(channels_last))}
    if channels_last is None:
        variants["bf16+channels_last"] = (True, True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = copy.deepcopy(backbone).cpu().train()
        x = torch.randn(min(batch, MAX_BATCH), 3, *input_size)
        times = {name: _step_seconds(net, x, *v) for name, v in variants.items()}
    return {"seconds": {k: round(v, 5) for k, v in times.items()}}


def channels_last_hazard(backbone: torch.nn.Module) -> str | None:
    """The first convolution that torch's CPU channels_last backward crashes on, or None.

    torch 2.13's CPU kernels corrupt the heap ("free(): invalid next size", SIGSEGV) in the backward
    pass of a strided 1x1 convolution with fewer than 16 input channels in channels_last (a 1x1
    stride-2 8->8 convolution reproduces it on its own; iresnet_tiny's downsample is one). Measured on
    an AVX-512 CPU: 3x3/2x2/5x5 kernels, 16 and more channels and forward passes are unaffected."""
    for name, m in backbone.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m.in_channels < 16 and tuple(m.kernel_size) == (1, 1) \
                and max(m.stride) > 1:
            return f"{name} ({m.in_channels} input channels, stride {m.stride[0]})"
    return None


def choose_precision(requested: str, channels_last: bool | None, device: torch.device,
                     backbone: torch.nn.Module, input_size: tuple[int, int], batch: int,
                     name: str = "") -> tuple[str, bool, str]:
    """``(precision, channels_last, why)`` for ``train.precision`` / ``train.channels_last``."""
    if requested not in ("auto", *PRECISIONS):
        raise UserError(f"train.precision: '{requested}' is not one of auto, fp32, bf16, fp16")
    cuda = device.type == "cuda"
    default_cl = cuda if channels_last is None else bool(channels_last)
    hazard = None if cuda else channels_last_hazard(backbone)
    if hazard and channels_last:
        raise UserError(f"train.channels_last: torch's CPU kernels crash in the backward pass of {hazard} "
                        "in channels_last (strided 1x1 convolutions under 16 input channels): set it false")
    if requested != "auto":
        return requested, default_cl, "train.precision"
    if cuda:
        return "bf16", default_cl, "CUDA"
    if device.type != "cpu":
        return "fp32", default_cl, f"no bf16 autocast measured on {device.type}"
    faster, cl, why = False, default_cl, f"no native bf16 on this CPU ({cpu.cpu_model()})"
    if cpu.native_bf16():
        # where channels_last would crash torch, only contiguous variants are measured
        faster, cl, why = _measured(backbone, input_size, batch, False if hazard else channels_last, name)
    # every process of a distributed run gets here, whatever its CPU, so the agreement never waits
    bf16, cl = _agree(faster, cl if faster else default_cl)
    return ("bf16", cl, why) if bf16 else ("fp32", default_cl, why)


def _measured(backbone, input_size, batch, channels_last, name) -> tuple[bool, bool, str]:
    """(bf16 faster by MIN_GAIN, channels_last with it, why) from the cache or a measurement now."""
    from faceforge.runtime.choice import recall, remember

    params = sum(p.numel() for p in backbone.parameters())  # the same name with other options differs
    key = (f"train|{name}|{params}|{tuple(input_size)}|b{min(batch, MAX_BATCH)}|cl{channels_last}"
           f"|t{torch.get_num_threads()}|{cpu.machine_key()}")
    record = recall(key)
    if record is None:
        record = measure(backbone, input_size, batch, channels_last)
        remember(key, record)
    s = record["seconds"]
    best = min(s, key=s.get)
    if best == "fp32" or s["fp32"] < MIN_GAIN * s[best]:
        return False, False, f"bf16 not faster here ({_ratios(s)})"
    return True, best.endswith("channels_last") or bool(channels_last), f"measured: {_ratios(s)}"


def _agree(bf16: bool, channels_last: bool) -> tuple[bool, bool]:
    """Every process of a distributed run takes bf16 / channels_last only if all measured it faster."""
    from faceforge import distributed as D

    if not D.is_distributed():
        return bf16, channels_last
    t = torch.tensor([int(bf16), int(channels_last)])
    D.all_reduce_(t, torch.distributed.ReduceOp.MIN)
    return bool(t[0]), bool(t[1])


def _ratios(seconds: dict) -> str:
    return ", ".join(f"{k} {seconds['fp32'] / v:.2f}x" for k, v in seconds.items())
