"""``engine: auto``: measure once per model and machine, keep the fastest engine that is correct.

The first session of a model on a machine runs the caller's probe inputs through every candidate
(:func:`faceforge.runtime.engines.candidates`: ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16 where
the CPU has it), rejects a candidate whose outputs fail the caller's check against ONNX Runtime fp32,
and keeps the fastest of the rest (the sum over probes of its time relative to the reference; the
minimum of a few interleaved runs, in CPU time for one-thread sessions: what a busy machine distorts
least). The answer is written to
``engines.json`` in the cache folder -- ``$FACEFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/faceforge``,
else ``~/.cache/faceforge`` -- keyed by the model's hash, the probe shapes, the thread count and the
machine (:func:`faceforge.runtime.cpu.machine_key`: CPU model, features, cores, engine versions).
Later sessions read it and measure nothing. A cache that cannot be written only costs a re-measure.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforge.runtime import cpu
from faceforge.runtime.engines import PRECISIONS, REFERENCE, Choice, Session, candidates, open_choice

CACHE_ENV = "FACEFORGE_CACHE_DIR"
CACHE_FILE = "engines.json"
REPS = 3  # timed runs per probe after the warm-up (the minimum counts)
BUDGET_S = 0.5  # ... or fewer when a candidate is slow

# check(reference outputs, candidate outputs) -> None when equivalent, else why not
Check = Callable[[list[np.ndarray], list[np.ndarray]], "str | None"]

_memory: dict[str, dict] = {}  # this process's answers (also when the cache cannot be written)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faceforge"


def cosine_check(min_cosine: float = 0.9999, output: int = 0) -> Check:
    """Row-wise cosine of output ``output`` (embeddings) at least ``min_cosine``."""

    def check(ref, got):
        a = ref[output].reshape(len(ref[output]), -1).astype(np.float64)
        b = got[output].reshape(len(got[output]), -1).astype(np.float64)
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
        return None if cos.min() >= min_cosine else f"min cosine {cos.min():.6f} < {min_cosine}"

    return check


def close_check(tolerance: float) -> Check:
    """Every output within ``tolerance`` x its largest reference magnitude (relative max error)."""

    def check(ref, got):
        for k, (a, b) in enumerate(zip(ref, got)):
            err = float(np.abs(a.astype(np.float64) - b).max()) / max(float(np.abs(a).max()), 1e-12)
            if not np.isfinite(err) or err > tolerance:
                return f"output {k}: relative error {err:.2g} > {tolerance:g}"
        return None

    return check


def model_hash(model: bytes | str | Path) -> str:
    h = hashlib.sha256()
    if isinstance(model, bytes):
        h.update(model)
    else:
        with open(model, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def cache_key(model: bytes | str | Path, probes: list[dict], threads: int, spec: str) -> str:
    shapes = ";".join(",".join(f"{k}{list(v.shape)}" for k, v in sorted(p.items())) for p in probes)
    return f"{model_hash(model)}|{shapes}|t{threads}|{spec}|{cpu.machine_key()}"


def _read_cache() -> dict:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # absent or damaged: measured again, rewritten
        return {}


def _write_cache(key: str, record: dict) -> None:
    from faceforge.atomic import atomic_write_text

    data = _read_cache()
    data[key] = record
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_dir() / CACHE_FILE, json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass


def recall(key: str) -> dict | None:
    """A record stored under ``key`` (this process's, else the cache file's)."""
    record = _memory.get(key) or _read_cache().get(key)
    if record:
        _memory[key] = record
    return record


def remember(key: str, record: dict) -> None:
    _memory[key] = record
    _write_cache(key, record)


def _clock(threads: int) -> Callable[[], float]:
    """Process CPU time for one-thread sessions (what an idle core would take, however busy the machine
    is); wall time when the engine may use several cores (then the wall time is what a user gets)."""
    return time.process_time if threads == 1 else time.perf_counter


def measure(model: bytes | str | Path, options: list[Choice], probes: list[dict], check: Check | None,
            threads: int = 0) -> tuple[dict, dict[Choice, Session]]:
    """Run ``probes`` on each option (the reference too, for the check); the record and the sessions.

    The options take turns probe by probe (a load spike hits them alike) and each keeps its fastest
    run per probe."""
    opened: dict[Choice, Session] = {}
    rejected: dict[str, str] = {}
    ref_out = None
    for choice in [REFERENCE] + [c for c in options if c != REFERENCE]:
        try:
            session = open_choice(model, choice, threads)
            outs = [session.run(None, p) for p in probes]  # also the warm-up
        except Exception as e:  # an engine that cannot compile this graph is not a candidate
            rejected[choice.label] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            continue
        if choice == REFERENCE:
            ref_out = outs
        why = None
        if check and ref_out is not None and choice != REFERENCE:
            why = next((w for r, o in zip(ref_out, outs) if (w := check(r, o))), None)
        if why:
            rejected[choice.label] = why
        else:
            opened[choice] = session
    clock = _clock(threads)
    best = {c: [float("inf")] * len(probes) for c in opened}
    start = time.perf_counter()
    for _ in range(REPS):
        for c, session in opened.items():
            for k, p in enumerate(probes):
                t = clock()
                session.run(None, p)
                best[c][k] = min(best[c][k], clock() - t)
        if time.perf_counter() - start > BUDGET_S * len(opened):
            break
    ms = {c.label: [round(1000 * t, 3) for t in times] for c, times in best.items()}
    ref_ms = ms.get(REFERENCE.label)
    sessions = {c: s for c, s in opened.items() if c in options}
    scores = {c: (sum(t / r for t, r in zip(ms[c.label], ref_ms)) if ref_ms else sum(ms[c.label]))
              for c in sessions}
    pick = min(scores, key=scores.get) if scores else None
    record = {"choice": pick.label if pick else None, "ms": ms, "rejected": rejected,
              "speedup": {c.label: round(len(ref_ms) / s, 3) for c, s in scores.items()} if ref_ms else {},
              "clock": "cpu" if threads == 1 else "wall", "threads": threads,
              "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu.cpu_model()}
    return record, sessions


def _from_label(label: str) -> Choice:
    engine, precision = label.split(" ")
    return Choice(engine, precision)


def choose(model: bytes | str | Path, spec: str | None = None, probes: list[dict] | None = None,
           check: Check | None = None, threads: int = 0, name: str = "",
           auto_precisions: tuple[str, ...] = PRECISIONS) -> tuple[Choice, dict, Session | None]:
    """The engine/precision for ``model`` under ``spec`` on this machine: ``(choice, record, session)``;
    ``session`` is the measured one when a measurement ran now (else None: open it)."""
    from faceforge.runtime.engines import parse_engine

    options = candidates(spec, auto_precisions)
    if len(options) == 1 or not probes:
        pick = options[0] if len(options) == 1 else REFERENCE
        if len(options) > 1:
            how = "no probe"
        else:
            how = "forced" if parse_engine(spec) != ("auto", "auto") else "only candidate"
        return pick, {"choice": pick.label, "how": how}, None
    key = cache_key(model, probes, threads, ":".join(parse_engine(spec)) + "/" + ",".join(auto_precisions))
    record = recall(key)
    if record and record.get("choice") and _from_label(record["choice"]) in options:
        return _from_label(record["choice"]), dict(record, how="cached"), None
    record, sessions = measure(model, options, probes, check, threads)
    record["model"] = name
    if record["choice"] is None:
        from faceforge.errors import UserError

        raise UserError(f"{name or 'ONNX model'}: no engine can run it here ({record['rejected']})")
    remember(key, record)
    pick = _from_label(record["choice"])
    return pick, dict(record, how="measured now"), sessions[pick]


def open_session(model: bytes | str | Path, engine: str | None = None, threads: int = 0,
                 probes: list[dict] | None = None, check: Check | None = None, name: str = "",
                 providers=None, auto_precisions: tuple[str, ...] = PRECISIONS) -> Session:
    """A session for ``model`` on the engine ``engine`` names (``auto``: :func:`choose`)."""
    choice, record, session = choose(model, engine, probes, check, threads, name, auto_precisions)
    if session is None:
        session = open_choice(model, choice, threads, providers)
    session.reason = record.get("how", "")
    session.record = record
    return session
