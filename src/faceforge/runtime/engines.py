"""The engines an ONNX graph can run on, behind one small session interface.

:class:`Session` answers the part of ONNX Runtime's ``InferenceSession`` that faceforge uses
(``run``, ``get_inputs``, ``get_outputs``, ``get_modelmeta``, ``get_providers``), whichever engine
runs it, and says what it runs on (``engine``, ``precision``, ``label``).

Precisions: ``fp32`` everywhere; ``bf16`` on OpenVINO where the CPU computes bf16 natively
(``cpu.has_bf16``: weights and activations in bf16, accumulation in fp32). An int8 (QDQ) file runs in
int8 on both engines: that precision belongs to the file (``faceforge export --int8``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from faceforge.errors import UserError
from faceforge.runtime import cpu

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
ENV = "FACEFORGE_ENGINE"  # the process default (the CLI's --engine sets it; workers inherit it)
HELP = ("ENGINE[:PRECISION]: auto (default: measured once per model and machine), onnxruntime, "
        "openvino, openvino:bf16, openvino:fp32, auto:fp32")


@dataclass(frozen=True)
class Choice:
    engine: str
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"


REFERENCE = Choice("onnxruntime", "fp32")


def parse_engine(spec: str | None) -> tuple[str, str]:
    """``(engine, precision)`` of ``ENGINE[:PRECISION]``; each part may be ``auto``."""
    spec = default_engine() if spec is None else str(spec).strip().lower()
    engine, _, precision = spec.partition(":")
    engine = {"ort": "onnxruntime", "ov": "openvino", "": "auto"}.get(engine, engine)
    precision = precision or "auto"
    if engine not in ("auto", *ENGINES) or precision not in ("auto", *PRECISIONS):
        raise UserError(f"engine '{spec}': expected {HELP}")
    if engine == "onnxruntime" and precision == "bf16":
        raise UserError(f"engine '{spec}': ONNX Runtime runs fp32 graphs in fp32 on a CPU; bf16 is "
                        "openvino:bf16")
    return engine, precision


def default_engine() -> str:
    return os.environ.get(ENV, "").strip().lower() or "auto"


def set_default_engine(spec: str) -> None:
    """Make ``spec`` this process's (and its workers') default engine."""
    parse_engine(spec)
    os.environ[ENV] = spec.strip().lower()


def installed(engine: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(engine) is not None


def candidates(spec: str | None, auto_precisions: tuple[str, ...] = PRECISIONS) -> list[Choice]:
    """The engine/precision pairs ``spec`` allows on this machine, the reference first; a forced
    choice this machine cannot run is a UserError naming why. ``auto_precisions``: what a network
    may run in when ``spec`` leaves the precision to faceforge (a forced precision is obeyed)."""
    engine, precision = parse_engine(spec)
    out = []
    for e in ENGINES:
        if engine not in ("auto", e) or not installed(e):
            continue
        for p in PRECISIONS:
            if precision not in ("auto", p) or (e == "onnxruntime" and p == "bf16"):
                continue
            if precision == "auto" and p not in auto_precisions:
                continue
            if p == "bf16" and not cpu.has_bf16():
                continue
            out.append(Choice(e, p))
    if not out:
        if engine == "openvino" and not installed("openvino"):
            raise UserError("engine 'openvino': OpenVINO is not installed: pip install openvino")
        if precision == "bf16":
            raise UserError(f"engine '{engine}:bf16': this CPU ({cpu.cpu_model()}) has no native bf16 "
                            f"(features: {' '.join(cpu.shown_flags()) or 'none found'})")
        raise UserError("no ONNX engine installed: pip install onnxruntime")
    return out


class Session:
    """One compiled graph on one engine; ``run(names | None, {input: array}) -> [arrays]``."""

    engine = precision = ""
    reason = "forced"  # how it was chosen: forced, measured (cached) ...
    threads = 0  # intra-op threads asked for (0: the engine's default)

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"

    def get_providers(self) -> list[str]:
        return [self.label]


class OrtSession(Session):
    engine, precision = "onnxruntime", "fp32"

    def __init__(self, model: bytes | str, threads: int = 0, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort

        self.threads = max(int(threads or 0), 0)
        opts = ort.SessionOptions()
        if threads and threads > 0:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.ort = ort.InferenceSession(model, sess_options=opts, providers=list(providers))
        self.run = self.ort.run
        self.get_inputs, self.get_outputs = self.ort.get_inputs, self.ort.get_outputs
        self.get_modelmeta, self.get_session_options = self.ort.get_modelmeta, self.ort.get_session_options

    def get_providers(self) -> list[str]:
        return self.ort.get_providers()


_OV_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "u8": "tensor(uint8)", "i64": "tensor(int64)"}


class OpenVinoSession(Session):
    engine = "openvino"

    def __init__(self, model: bytes | str, precision: str = "fp32", threads: int = 0):

        core = cpu.openvino_core()
        self.threads = max(int(threads or 0), 0)
        self.model_source = model
        net = core.read_model(model)  # a path or the ONNX bytes
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                  # worker pools run one process per core: pinning would stack them on the same cores
                  "ENABLE_CPU_PINNING": False}
        if threads and threads > 0:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(net, "CPU", config)
        self.precision = precision
        self._ports = list(self.compiled.outputs)
        self._names = [p.get_any_name() for p in self._ports]
        self._local = threading.local()  # an infer request per thread (the service runs threads)

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds)  # copies the outputs (share_outputs=False)
        names = output_names or self._names
        return [np.asarray(result[self._ports[self._names.index(n)]]) for n in names]

    def get_inputs(self):
        out = []
        for p in self.compiled.inputs:
            kind = _OV_TYPES.get(p.get_element_type().get_type_name(), "tensor(float)")
            shape = [d.get_length() if d.is_static else None for d in p.get_partial_shape()]
            out.append(SimpleNamespace(name=p.get_any_name(), type=kind, shape=shape))
        return out

    def get_outputs(self):
        return [SimpleNamespace(name=n) for n in self._names]

    def get_session_options(self):
        """ONNX Runtime's view of the threads: OpenVINO's ``INFERENCE_NUM_THREADS``, read back."""
        return SimpleNamespace(intra_op_num_threads=int(self.compiled.get_property("INFERENCE_NUM_THREADS")))

    def get_modelmeta(self):
        """The ONNX ``metadata_props`` (OpenVINO does not keep them), read with ``onnx``."""
        import onnx

        src = self.model_source
        proto = (onnx.load_from_string(src) if isinstance(src, bytes)
                 else onnx.load(src, load_external_data=False))
        return SimpleNamespace(custom_metadata_map={p.key: p.value for p in proto.metadata_props})


def open_choice(model: bytes | str | Path, choice: Choice, threads: int = 0, providers=None) -> Session:
    model = str(model) if isinstance(model, Path) else model
    if choice.engine == "openvino":
        return OpenVinoSession(model, choice.precision, threads)
    return OrtSession(model, threads, providers or ("CPUExecutionProvider",))
