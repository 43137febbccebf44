"""faceforge.runtime: CPU features, engine options, and engine auto's measurement cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from faceforge.errors import UserError
from faceforge.runtime import choice, cpu, engines

pytest.importorskip("onnxruntime")


def _tiny_graph() -> bytes:
    """y = relu(x @ W): a real ONNX graph both engines can run (no file needed)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


PROBES = [{"x": np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)}]


def test_cpu_features_come_from_this_machine():
    flags = cpu.cpu_flags()
    if Path("/proc/cpuinfo").is_file():
        assert flags, "no flags/Features line read from /proc/cpuinfo"
        assert cpu.cpu_model()
    assert set(cpu.shown_flags()) <= flags
    # bf16 is claimed only with a native instruction AND OpenVINO's word for it
    if cpu.has_bf16():
        assert flags & set(cpu.BF16_FLAGS) and "BF16" in cpu.openvino_capabilities()
    s = cpu.summary()
    assert s["cores"] == os.cpu_count() and s["bf16"] == cpu.has_bf16()
    assert len(cpu.machine_key()) == 16


def test_engine_option_parsing():
    assert engines.parse_engine("auto") == ("auto", "auto")
    assert engines.parse_engine("openvino:bf16") == ("openvino", "bf16")
    assert engines.parse_engine("ORT") == ("onnxruntime", "auto")
    assert engines.parse_engine("auto:fp32") == ("auto", "fp32")
    for bad in ("tensorrt", "openvino:int4", "onnxruntime:bf16"):
        with pytest.raises(UserError, match="engine"):
            engines.parse_engine(bad)


def test_candidates_follow_the_cpu(monkeypatch):
    got = engines.candidates("auto")
    assert got[0] == engines.REFERENCE
    assert (engines.Choice("openvino", "bf16") in got) == cpu.has_bf16()
    assert engines.candidates("auto:fp32") == [c for c in got if c.precision == "fp32"]
    assert all(c.precision == "fp32" for c in engines.candidates("auto", auto_precisions=("fp32",)))
    monkeypatch.setattr(cpu, "has_bf16", lambda: False)  # an AVX2-only machine
    assert all(c.precision == "fp32" for c in engines.candidates("auto"))
    if engines.installed("openvino"):
        with pytest.raises(UserError, match="no native bf16"):
            engines.candidates("openvino:bf16")


def test_default_engine_from_the_environment(monkeypatch):
    monkeypatch.delenv(engines.ENV, raising=False)
    assert engines.default_engine() == "auto"
    engines.set_default_engine("onnxruntime")
    assert engines.default_engine() == "onnxruntime" and os.environ[engines.ENV] == "onnxruntime"
    with pytest.raises(UserError):
        engines.set_default_engine("nonsense")


def test_auto_measures_once_then_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(choice.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(choice, "_memory", {})
    model = _tiny_graph()
    first = choice.open_session(model, "auto", 1, PROBES, choice.close_check(1e-5), "tiny")
    assert first.reason == "measured now"
    data = json.loads((tmp_path / "cache" / "engines.json").read_text())
    (key, record), = data.items()
    assert model_hash_in(key, model) and cpu.machine_key() in key
    # every candidate was timed, or rejected by the check (bf16 is not within 1e-5)
    assert set(record["ms"]) | set(record["rejected"]) == {c.label for c in engines.candidates("auto")}
    assert record["choice"] == first.label and record["cpu"] == cpu.cpu_model()
    monkeypatch.setattr(choice, "_memory", {})  # a new process: only the file remains
    second = choice.open_session(model, "auto", 1, PROBES, choice.close_check(1e-5), "tiny")
    assert second.reason == "cached" and second.label == first.label
    np.testing.assert_allclose(second.run(None, PROBES[0])[0], first.run(None, PROBES[0])[0], rtol=1e-5)
    # a damaged cache is measured again and rewritten, never an error
    (tmp_path / "cache" / "engines.json").write_text("{not json")
    monkeypatch.setattr(choice, "_memory", {})
    assert choice.open_session(model, "auto", 1, PROBES, None, "tiny").reason == "measured now"
    assert json.loads((tmp_path / "cache" / "engines.json").read_text())


def model_hash_in(key: str, model: bytes) -> bool:
    return key.startswith(choice.model_hash(model))


def test_a_failing_check_rejects_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv(choice.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(choice, "_memory", {})
    if len(engines.candidates("auto")) < 2:
        pytest.skip("only one engine installed")

    def never(ref, got):  # any engine but the reference differs "too much"
        return "differs"

    s = choice.open_session(_tiny_graph(), "auto", 1, PROBES, never, "tiny")
    assert s.label == engines.REFERENCE.label
    assert set(s.record["rejected"]) == {c.label for c in engines.candidates("auto")[1:]}


def test_forced_engine_skips_the_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv(choice.CACHE_ENV, str(tmp_path))
    s = choice.open_session(_tiny_graph(), "onnxruntime", 1, PROBES, None, "tiny")
    assert s.label == "onnxruntime fp32" and s.reason == "forced"
    assert not (tmp_path / "engines.json").exists()
    if engines.installed("openvino"):
        s = choice.open_session(_tiny_graph(), "openvino:fp32", 1, PROBES, None, "tiny")
        assert s.label == "openvino fp32"
        assert [i.name for i in s.get_inputs()] == ["x"] and s.get_inputs()[0].type == "tensor(float)"
        ref = choice.open_session(_tiny_graph(), "onnxruntime", 1).run(["y"], PROBES[0])[0]
        np.testing.assert_allclose(s.run(["y"], PROBES[0])[0], ref, rtol=1e-5, atol=1e-6)


def test_cache_dir_default_is_the_user_cache(monkeypatch):
    monkeypatch.delenv(choice.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert choice.cache_dir() == Path("/somewhere/faceforge")


def test_info_prints_the_cpu_and_each_networks_engine(capsys, monkeypatch):
    from conftest import need_retinaface
    from faceforge.cli.main import main

    need_retinaface()
    monkeypatch.delenv(engines.ENV, raising=False)
    assert main(["info", "--json", "--detector", "retinaface"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["cpu"]["model"] == cpu.cpu_model() and rep["cpu"]["bf16"] == cpu.has_bf16()
    rows = {r["network"]: r for r in rep["networks"]}
    assert set(rows) == {"retinaface", "landmarks (built-in)"}
    assert all(r["precision"] == "fp32" for r in rows.values())  # auto keeps these in fp32
    assert rep["cache"].startswith(os.environ[choice.CACHE_ENV])
    assert main(["--engine", "onnxruntime", "info", "--detector", "retinaface", "--no-landmarks"]) == 0
    out = capsys.readouterr().out
    assert "CPU: " in out and "retinaface" in out and "onnxruntime fp32  forced" in out
    monkeypatch.delenv(engines.ENV, raising=False)
    assert main(["--engine", "tensorrt", "info"]) == 2
    assert "engine 'tensorrt': expected" in capsys.readouterr().err


SESSIONS_FREED_OUT_OF_ORDER = r"""
import gc, signal, subprocess, sys
sys.path.insert(0, sys.argv[1])
from test_runtime import _tiny_graph
from faceforge.runtime.engines import OpenVinoSession
a, b = OpenVinoSession(_tiny_graph()), OpenVinoSession(_tiny_graph())
del a; gc.collect(); del b; gc.collect()  # not the reverse of their creation
signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler runs on the signal stack
for _ in range(20):
    subprocess.run(["true"])
print("alive")
"""


def test_openvino_sessions_freed_in_any_order_keep_the_signal_stack():
    """Each OpenVINO Core set the thread's signal stack and put back the previous one when freed; freed
    out of order they left a dangling stack, and the next Python signal handler (a child's SIGCHLD)
    killed the process with SIGSEGV (the test suite died with exit 139). One Core per process now."""
    import subprocess
    import sys

    pytest.importorskip("openvino")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", SESSIONS_FREED_OUT_OF_ORDER, tests], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "alive" in r.stdout, (r.returncode, r.stderr[-2000:])
