"""What runs each network on this machine: the report behind ``faceforge info``.

Every network is opened the way the commands open it (same threads, same engine option), so the
report is the choice they will get; opening one the first time on a machine runs ``engine: auto``'s
short measurement (``faceforge.runtime.choice``) and caches it.
"""

from __future__ import annotations

from faceforge.runtime import cpu
from faceforge.runtime.choice import cache_dir
from faceforge.runtime.engines import default_engine


def _row(network: str, session) -> dict:
    record = getattr(session, "record", {}) or {}
    return {"network": network, "engine": session.engine, "precision": session.precision,
            "how": getattr(session, "reason", ""), "ms": record.get("ms", {}),
            "rejected": record.get("rejected", {}), "speedup": record.get("speedup", {})}


def network_rows(models: list[str] = (), detectors: tuple[str, ...] = ("retinaface", "mtcnn"),
                 landmarks: bool = True) -> list[dict]:
    from faceforge.align.detectors import get_detector

    rows = []
    for name in detectors:
        det = get_detector(name)
        if name == "mtcnn":
            rows += [_row(f"mtcnn {n}", getattr(det, n)) for n in ("pnet", "rnet", "onet")]
        else:
            rows.append(_row(name, det.session))
    if landmarks:
        from faceforge.landmarks.predict import LandmarkPredictor

        rows.append(_row("landmarks (built-in)", LandmarkPredictor.load().session))
    for model in models:
        from faceforge.embed.loading import load_embedder

        emb = load_embedder(model)
        session = getattr(emb, "session", None)
        if session is None:  # a checkpoint or TorchScript file runs in PyTorch
            rows.append({"network": str(model), "engine": "torch", "precision": "fp32", "how": "not ONNX",
                         "ms": {}, "rejected": {}, "speedup": {}})
        else:
            rows.append(_row(str(model), session))
    return rows


def report(models: list[str] = (), detectors: tuple[str, ...] = ("retinaface", "mtcnn"),
           landmarks: bool = True) -> dict:
    return {"cpu": cpu.summary(), "default_engine": default_engine(),
            "cache": str(cache_dir() / "engines.json"),
            "networks": network_rows(models, detectors, landmarks)}


def format_report(rep: dict) -> str:
    c = rep["cpu"]
    lines = [f"CPU: {c['model']} ({c['cores']} cores, {c['arch']})",
             f"features: {' '.join(c['features']) or 'none of the listed ones'}",
             f"native bf16: {'yes' if c['bf16'] else 'no'}; "
             f"int8 dot product: {'yes' if c['int8_dot'] else 'no'}; "
             f"OpenVINO capabilities: {' '.join(c['openvino_capabilities']) or '(OpenVINO not installed)'}",
             "engines: " + ", ".join(f"{k} {v}" for k, v in c["versions"].items())
             + f"; engine option: {rep['default_engine']}",
             f"measurements cached in {rep['cache']}", ""]
    width = max([len(r["network"]) for r in rep["networks"]] + [7])
    lines.append(f"{'network':<{width}}  {'runs on':<17} {'chosen':<13} "
                 "measured (ms per probe; rejected: why)")
    for r in rep["networks"]:
        ms = " | ".join(f"{k} {'/'.join(f'{t:.1f}' for t in v)}" for k, v in r["ms"].items())
        bad = "; ".join(f"{k}: {v}" for k, v in r["rejected"].items())
        lines.append(f"{r['network']:<{width}}  {r['engine'] + ' ' + r['precision']:<17} {r['how']:<13} "
                     f"{ms}{'; rejected ' + bad if bad else ''}")
    return "\n".join(lines)
