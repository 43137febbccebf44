"""ONNX export of a landmark model (dynamic batch) with a parity check against torch.

The graph takes ``images[B, 3, S, S]`` (normalised as the checkpoint says) and returns
``points[B, 88, 2]`` in normalised crop coordinates; the crop settings travel as the model's
``faceforge_landmarks`` metadata (JSON), which :meth:`LandmarkPredictor.from_onnx` reads.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from faceforge.errors import UserError


def export_onnx(ckpt: str | Path, out: str | Path, opset: int = 17, atol: float = 1e-4) -> dict:
    """Export and check: outputs of torch and ONNX Runtime agree within ``atol`` on batches of 1 and 3."""
    import io

    import torch

    from faceforge.atomic import atomic_write_bytes
    from faceforge.landmarks.model import load_landmark_model

    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime") from None
    net = load_landmark_model(ckpt)
    s = net.input_size
    x = torch.randn(2, 3, s, s)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript; it warns it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (x,), buf, input_names=["images"], output_names=["points"],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "points": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = "faceforge_landmarks", json.dumps(net.record())
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    from faceforge.align.detectors.base import onnx_session

    sess = onnx_session(data, threads=1)
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for b in (1, 3):
        xb = torch.randn(b, 3, s, s, generator=g)
        with torch.no_grad():
            ref = net(xb).numpy()
        got = sess.run(None, {"images": xb.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()) * s)  # in crop pixels
    if worst > atol * s:
        raise UserError(f"ONNX parity check failed: max difference {worst:.5f} px at {s}x{s}")
    atomic_write_bytes(out, data)
    return {"onnx": str(out), "bytes": len(data), "max_abs_diff_px": worst, "input_size": s, "opset": opset}
