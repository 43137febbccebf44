"""``faceforge export``: a faceforge checkpoint to ONNX (fp32, fp16 or int8) with a parity check.

The graph takes the normalised float tensor ``input[B, 3, H, W]`` (dynamic batch) and returns the raw
(un-normalised) ``embedding[B, D]``; opset 17, legacy TorchScript exporter (the dynamo exporter needs
``onnxscript``, which faceforge does not require). Everything needed to feed it -- input size, mean/std,
channel order, layout, template, embedding size, a model id (hash of the backbone weights) and, when
calibrated, the threshold and its FAR -- goes into ``metadata_props`` as ``faceforge.<field>`` and
into a card beside the file (``OUT.yaml``).

Parity: ONNX Runtime and PyTorch embed the same fixed batch of synthetic faces; the minimum cosine
must reach 0.9999 (fp32) or 0.999 (fp16); int8 reports its cosine and, with ``pairs``, the
verification accuracy of fp32 next to int8 on that set.

fp16 uses ``onnxruntime.transformers.float16`` with float32 inputs/outputs kept (the graph casts);
int8 is ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations) calibrated on a data
source (``synthetic:50x4`` by default), or ``quantize_dynamic`` when ``calib="dynamic"``.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.embed.card import ModelCard, card_from_dict, card_from_meta, card_to_metadata, save_card
from faceforge.errors import UserError

OPSET = 17
PRECISIONS = ("fp32", "fp16", "int8")
PARITY_MIN = {"fp32": 0.9999, "fp16": 0.999}


def model_id(model) -> str:
    from faceforge.embed.torch_embedder import state_fingerprint

    return state_fingerprint(model)


def card_for_model(model, calibration: dict | None = None) -> ModelCard:
    """The card of a faceforge backbone (``model.meta`` as set by ``build_backbone``)."""
    meta = dict(getattr(model, "meta", {}) or {})
    meta.setdefault("embedding_size", getattr(model, "embedding_size", 512))
    card = card_from_meta(meta)
    card.model_id = model_id(model)
    if calibration:  # the checkpoint's stored threshold: checked by the card schema (no NaN, in range)
        where = f"{meta.get('checkpoint') or 'checkpoint'}: calibration"
        if not isinstance(calibration, dict):
            raise UserError(f"{where}: expected a mapping, got {type(calibration).__name__}")
        cal = card_from_dict({k: calibration.get(k) for k in ("threshold", "far")}, where)
        card.threshold, card.far = cal.threshold, cal.far
    return card


def onnx_bytes(model, input_size=(112, 112)) -> bytes:
    """The fp32 ONNX graph of a backbone (dynamic batch, opset 17) as bytes."""
    import torch

    model = model.eval().cpu()
    x = torch.zeros(2, 3, int(input_size[0]), int(input_size[1]))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            model, (x,), buf, input_names=["input"], output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    return buf.getvalue()


def set_metadata(model_proto, card: ModelCard) -> None:
    del model_proto.metadata_props[:]
    for key, value in card_to_metadata(card).items():
        prop = model_proto.metadata_props.add()
        prop.key, prop.value = key, value
    model_proto.producer_name = "faceforge"


def parity_batch(input_size=(112, 112), n: int = 8) -> np.ndarray:
    """A fixed batch of aligned synthetic faces (deterministic), fitted to ``input_size``."""
    from faceforge.align.transform import fit_batch
    from faceforge.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(seed=1234)
    imgs = np.stack([faces.render(j, j % 3)[0] for j in range(n)])
    return fit_batch(imgs, input_size)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def to_fp16(model_proto):
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise UserError("--fp16 needs onnxruntime's transformers tools: pip install onnxruntime") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_float_to_float16(model_proto, keep_io_types=True)


class _CalibReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a data source, in batches of 16."""

    def __init__(self, source: str, card: ModelCard, limit: int = 256):
        from faceforge.align.transform import fit_to_input
        from faceforge.data.dataset import open_source
        from faceforge.io.images import CorruptImage

        ds = open_source(source)
        imgs = []
        for i in range(min(len(ds), limit)):
            try:
                imgs.append(fit_to_input(ds.read(i), card.input_size))
            except CorruptImage:
                continue
        if not imgs:
            raise UserError(f"--calib {source}: no readable image")
        x = card.preprocess(np.stack(imgs))
        self.batches = iter([{"input": x[i : i + 16]} for i in range(0, len(x), 16)])
        self.count = len(imgs)

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # not needed by the calibrators faceforge uses
        pass


def to_int8(fp32_path: Path, out_path: Path, card: ModelCard, calib: str | None) -> dict[str, Any]:
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise UserError("--int8 needs onnxruntime's quantization tools: pip install onnxruntime") from None
    if calib == "dynamic":
        quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8)
        return {"int8": "dynamic", "calibration_images": 0}
    pre = fp32_path.with_name("pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    reader = _CalibReader(calib or "synthetic:50x4", card)
    CalibrationDataReader.register(type(reader))
    quantize_static(str(pre), str(out_path), reader, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    return {"int8": "static", "calibration_images": reader.count, "calib": calib or "synthetic:50x4"}


def measure_int8(fp32_path: Path, int8_path: Path, card: ModelCard, log=print) -> dict[str, Any]:
    """What int8 buys on this machine: each engine runs the fp32 and the int8 file on one thread
    (batch 1 and 8, the ``engine: auto`` probe), and the int8 embeddings are compared with fp32's."""
    import onnx

    from faceforge.embed.onnx_embedder import probe_feeds
    from faceforge.runtime import cpu
    from faceforge.runtime.choice import measure
    from faceforge.runtime.engines import Choice, installed

    probes = probe_feeds(onnx.load(str(fp32_path)), card)
    options = [Choice(e, "fp32") for e in ("onnxruntime", "openvino") if installed(e)]
    fp32, _ = measure(str(fp32_path), options, probes, None, threads=1)
    int8, _ = measure(str(int8_path), options, probes, None, threads=1)
    # the cosine of int8 to fp32 on the probe (the parity line below gives it on synthetic faces)
    ref = [measure_outputs(str(fp32_path), p) for p in probes]
    got = [measure_outputs(str(int8_path), p) for p in probes]
    cos = min(_min_cos(r, g) for r, g in zip(ref, got))
    out: dict[str, Any] = {"cpu": cpu.cpu_model(), "int8_dot_product": cpu.has_int8_dot(),
                           "probe_min_cosine": cos, "engines": {}}
    for c in options:
        a, b = fp32["ms"].get(c.label), int8["ms"].get(c.label)
        if a and b:
            out["engines"][c.engine] = {"fp32_ms": a, "int8_ms": b, "speedup": round(sum(a) / sum(b), 3)}
    best32 = min((sum(v["fp32_ms"]) for v in out["engines"].values()), default=0.0)
    best8 = min((sum(v["int8_ms"]) for v in out["engines"].values()), default=0.0)
    out["pays"] = bool(best8 and best8 < best32)
    times = "; ".join(f"{e} fp32 {'/'.join(f'{t:.1f}' for t in v['fp32_ms'])} vs int8 "
                      f"{'/'.join(f'{t:.1f}' for t in v['int8_ms'])} ({v['speedup']:.2f}x)"
                      for e, v in out["engines"].items())
    verdict = ("int8 is faster here than the fastest fp32 engine" if out["pays"]
               else "int8 does NOT pay here: ship the fp32 file")
    log(f"int8 on this CPU ({cpu.cpu_model()}, int8 dot product {'yes' if cpu.has_int8_dot() else 'no'}; "
        f"1 thread, batch 1 / 8, ms): {times}; min cosine to fp32 {cos:.5f}. {verdict}")
    return out


def measure_outputs(path: str, feed: dict) -> np.ndarray:
    from faceforge.runtime.engines import REFERENCE, open_choice

    return open_choice(path, REFERENCE, 1).run(None, feed)[0]


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(cosines(a.astype(np.float64), b.astype(np.float64)).min())


def export_onnx(ckpt: str | Path, out: str | Path, precision: str = "fp32", calib: str | None = None,
                pairs: str | None = None, far: float | None = None, flip: str | None = None,
                log=print) -> dict[str, Any]:
    """Export ``ckpt`` to ``out`` (+ ``out.yaml``); return a report (sizes, parity, accuracies)."""
    import onnx

    from faceforge.embed.onnx_embedder import OnnxEmbedder
    from faceforge.embed.torch_embedder import TorchEmbedder
    from faceforge.models.checkpoint import load_backbone, read_checkpoint

    if precision not in PRECISIONS:
        raise UserError(f"precision '{precision}': expected one of {', '.join(PRECISIONS)}")
    if far is not None and not pairs:
        raise UserError("--far: calibration needs a verification set (--pairs SOURCE)")
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--onnx {out}: the output file must end in .onnx")
    calibration = read_checkpoint(ckpt).get("calibration")
    model = load_backbone(ckpt, "cpu")
    card = card_for_model(model, calibration if isinstance(calibration, dict) else None)
    report: dict[str, Any] = {"precision": precision, "model_id": card.model_id, "opset": OPSET}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".faceforge-export-", dir=out.parent) as td:
        td = Path(td)
        fp32 = onnx.load_from_string(onnx_bytes(model, card.input_size))
        set_metadata(fp32, card)
        fp32_path = td / "fp32.onnx"
        onnx.save(fp32, str(fp32_path))
        report["size_fp32"] = fp32_path.stat().st_size
        final_path = td / "final.onnx"
        if precision == "fp32":
            shutil.copyfile(fp32_path, final_path)
        elif precision == "fp16":
            onnx.save(to_fp16(fp32), str(final_path))
        else:
            report.update(to_int8(fp32_path, final_path, card, calib))

        # parity on a fixed batch: ONNX Runtime vs PyTorch eager
        batch = parity_batch(card.input_size)
        ref = TorchEmbedder(model, "cpu").embed(batch)  # runs under inference_mode itself
        got = OnnxEmbedder(final_path, "cpu", card=card, engine="onnxruntime").embed(batch)  # the file itself
        cos = cosines(ref.astype(np.float64), got.astype(np.float64))
        report["parity_min_cosine"] = float(cos.min())
        log(f"parity ({precision} ONNX Runtime vs PyTorch, {len(batch)} faces): min cosine {cos.min():.6f}")
        need = PARITY_MIN.get(precision)
        if need is not None and cos.min() < need:
            raise UserError(f"export parity failed: min cosine {cos.min():.6f} < {need} ({precision})")

        if precision == "int8":
            report["int8_measured"] = measure_int8(fp32_path, final_path, card, log)

        use_flip = flip or card.flip
        if pairs:
            from faceforge.eval.verification import evaluate_pairs

            accs = {}
            for label, path in (("fp32", fp32_path), (precision, final_path)):
                if label in accs:
                    continue
                res = evaluate_pairs(OnnxEmbedder(path, "cpu", card=card), pairs, flip=use_flip)
                accs[label] = res["accuracy"]
            report["accuracy"] = accs
            log("accuracy on " + str(pairs) + ": " + ", ".join(f"{k} {v:.4f}" for k, v in accs.items()))
        if far is not None:
            from faceforge.deploy.calibration import calibrate

            cal = calibrate(OnnxEmbedder(final_path, "cpu", card=card), pairs, far, use_flip)
            card.threshold, card.far, card.flip = cal["threshold"], cal["far"], use_flip
            report["calibration"] = cal
            log(f"calibrated threshold {cal['threshold']:.4f} (cosine) at FAR {far:g}: TAR {cal['tar']:.4f} "
                f"on {cal['same']} genuine + {cal['different']} impostor pairs (smallest measurable FAR "
                f"{cal['smallest_far']:.2g})")

        final = onnx.load(str(final_path))
        set_metadata(final, card)
        final_bytes = final.SerializeToString()
    from faceforge.atomic import atomic_write_bytes

    atomic_write_bytes(out, final_bytes)
    card_path = save_card(card, out.with_suffix(".yaml"))
    report.update({"onnx": str(out), "card": str(card_path), "size": out.stat().st_size,
                   "sha256": hashlib.sha256(final_bytes).hexdigest()[:16]})
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB {precision}; "
        f"fp32 {report['size_fp32'] / 1e6:.2f} MB) "
        f"and {card_path}")
    return report


def export_torchscript(ckpt: str | Path, out: str | Path, log=print) -> dict[str, Any]:
    """A TorchScript archive of the backbone with its card embedded (``extra_files``) and beside it."""
    import json

    import torch

    from faceforge.models.checkpoint import load_backbone

    model = load_backbone(ckpt, "cpu")
    card = card_for_model(model)
    x = torch.zeros(2, 3, *card.input_size)
    with torch.no_grad():
        scripted = torch.jit.trace(model, x)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={"faceforge_card.json": json.dumps(card.to_dict())})
    from faceforge.atomic import atomic_write_bytes

    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    card_path = save_card(card, out.with_suffix(".yaml"))
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {card_path}")
    return {"torchscript": str(out), "card": str(card_path), "size": out.stat().st_size}
