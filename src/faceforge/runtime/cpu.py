"""The CPU this process runs on: model name, instruction-set features, what OpenVINO reports.

Nothing assumes one CPU: features come from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``) and
from OpenVINO's ``OPTIMIZATION_CAPABILITIES`` where OpenVINO is installed. bf16 counts as present
when the CPU computes it natively (AVX-512 BF16, AMX-BF16, Arm BF16) *and* OpenVINO says it will
run bf16 there; an emulated bf16 is never chosen.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import threading

# features worth printing next to a speed figure (most of /proc/cpuinfo's 100+ flags are not)
SHOWN = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
         "amx_tile", "amx_bf16", "amx_int8", "asimd", "bf16", "i8mm", "sve")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: no flags, so no bf16 is assumed
        pass
    return model, frozenset(flags)


def cpu_model() -> str:
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


_CORE = None
_CORE_LOCK = threading.Lock()


def openvino_core():
    """The one ``openvino.Core`` of this process, never released.

    Each Core's CPU plugin points the calling thread's signal stack (``sigaltstack``) at memory of its
    own and gives the previous one back when it is destroyed. Cores destroyed out of order (as garbage
    collection does) left the main thread on a freed signal stack: the next Python signal handler (a
    SIGCHLD, a SIGTERM) then crashed the process with SIGSEGV. One Core for the process's life keeps
    that stack valid."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


@functools.lru_cache(maxsize=1)
def openvino_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` for the CPU (``BF16``, ``FP32``, ``INT8`` ...); empty
    when OpenVINO is not installed."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return ()
    try:
        return tuple(str(c) for c in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # an OpenVINO without a CPU plugin
        return ()


def native_bf16() -> bool:
    """A bf16 instruction in the CPU's features (what PyTorch's oneDNN kernels use)."""
    return any(f in cpu_flags() for f in BF16_FLAGS)


def has_bf16() -> bool:
    """Native bf16 arithmetic (not emulated) that OpenVINO will use."""
    return native_bf16() and "BF16" in openvino_capabilities()


def has_int8_dot() -> bool:
    """An int8 dot-product instruction (VNNI, AMX-INT8, Arm dot product): where int8 can pay."""
    return any(f in cpu_flags() for f in INT8_DOT_FLAGS)


def shown_flags() -> list[str]:
    return [f for f in SHOWN if f in cpu_flags()]


def versions() -> dict[str, str]:
    out = {}
    for name in ("onnxruntime", "openvino"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            pass
    return out


def machine_key() -> str:
    """Same CPU model, features, core count and engine versions -> same key (the speed cache's)."""
    text = "|".join([cpu_model(), " ".join(sorted(cpu_flags())), str(os.cpu_count()),
                     repr(sorted(versions().items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def summary() -> dict:
    return {"model": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
            "features": shown_flags(), "bf16": has_bf16(), "int8_dot": has_int8_dot(),
            "openvino_capabilities": list(openvino_capabilities()), "versions": versions()}
