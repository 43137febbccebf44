"""ONNX face embedders on ONNX Runtime, fed exactly as their model card says.

``load_embedder("model.onnx")`` lands here (``register_loader(".onnx")``). The graph runs on the
engine ``faceforge.runtime`` picks (``engine``: auto by default; ``self.session.label`` says which).
The card is, in order:
the one passed (``--card``), ``model.yaml``/``model.json`` beside the file, the one stored in the
ONNX ``metadata_props`` by ``faceforge export``, or one inferred from the input shape.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from faceforge.embed.base import Embedder
from faceforge.embed.card import (
    ModelCard,
    _load_onnx,
    card_from_onnx,
    check_onnx,
    find_card,
    merge_cards,
    no_card_line,
)
from faceforge.embed.loading import register_loader
from faceforge.errors import UserError


def providers_for(device: str = "cpu") -> list[str]:
    """CUDA first when the device asks for it (or is ``auto``) and ONNX Runtime has it; CPU always."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    out = []
    if str(device).startswith(("cuda", "auto")) and "CUDAExecutionProvider" in available:
        out.append("CUDAExecutionProvider")
    return out + ["CPUExecutionProvider"]


# the promise: embeddings of whatever engine auto picks have cosine >= MIN_COSINE to ONNX Runtime fp32's
# on real faces (tests/test_runtime_equivalence.py). The probe is only 9 random images, and the worst of
# 200 real faces is lower than the worst of 9 (bf16 on a random mobilefacenet_tiny: 0.99992 on the probe,
# 0.99988 on real faces), so auto asks the probe for half the allowed error: a trained MobileFaceNet
# reaches 0.999986 in bf16 and gets it, an ill-conditioned random net stays in fp32
MIN_COSINE = 0.9999
PROBE_MIN_COSINE = 1 - (1 - MIN_COSINE) / 2
PROBE_BATCHES = (1, 8)  # one face (an SDK call) and a folder's batch: both count in the choice


def probe_feeds(model, card: ModelCard) -> list[dict]:
    """Fixed random faces at batch 1 and 16, preprocessed as the card says, for ``engine: auto``."""
    from onnx import TensorProto

    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    fp16 = inp.type.tensor_type.elem_type == TensorProto.FLOAT16
    static = inp.type.tensor_type.shape.dim[0].dim_value if inp.type.tensor_type.shape.dim else 0
    rng = np.random.default_rng(0)
    feeds = []
    for n in ([static] if static else PROBE_BATCHES):
        h, w = card.input_size
        x = card.preprocess(rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8))
        feeds.append({inp.name: x.astype(np.float16) if fp16 else x})
    return feeds


def make_session(model: str | Path | bytes, device: str = "cpu", threads: int = 0, engine: str | None = None,
                 probes: list[dict] | None = None):
    """A session with every graph optimisation on; ``threads`` intra-op threads (0: the engine's
    default, one per physical core; 1 in each worker process of a pool). ``engine``: see
    ``faceforge.runtime`` (a CUDA device runs ONNX Runtime's CUDA provider)."""
    try:
        import onnxruntime  # noqa: F401  (the reference engine every choice is checked against)
    except ImportError:
        raise UserError("ONNX models need onnxruntime: pip install 'faceforge[deploy]'") from None
    from faceforge.runtime.choice import cosine_check, open_session

    providers = providers_for(device)
    if "CUDAExecutionProvider" in providers:
        engine, probes = "onnxruntime", None
    src = model if isinstance(model, bytes) else str(model)
    name = "ONNX model" if isinstance(model, bytes) else str(model)
    try:
        return open_session(src, engine, threads, probes, cosine_check(PROBE_MIN_COSINE), name, providers)
    except UserError:
        raise
    except Exception as e:  # the engines raise their own exception types for an invalid graph
        raise UserError(f"{name}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from None


class OnnxEmbedder(Embedder):
    """``embed(uint8 RGB [B, H, W, 3])`` -> float32 [B, D] through an ONNX Runtime session."""

    def __init__(self, path: str | Path, device: str = "cpu", card=None, threads: int = 0,
                 model_bytes: bytes | None = None, engine: str | None = None):
        self.path = Path(path)
        model = _load_onnx(self.path) if model_bytes is None else None
        if model_bytes is not None:
            import onnx

            model = onnx.load_from_string(model_bytes)
        explicit, origin = (find_card(self.path, card) if model_bytes is None or card is not None
                            else (None, ""))
        if explicit is not None and explicit.declared:  # fields it leaves out come from the file
            explicit = merge_cards(card_from_onnx(self.path, model), explicit)
        if explicit is not None:
            explicit.notes.extend(check_onnx(explicit, model, str(self.path)))
            self.card, self.card_origin = explicit, origin
        else:
            self.card = card_from_onnx(self.path, model)
            stored = any(p.key.startswith("faceforge.") for p in model.metadata_props)
            self.card_origin = ("ONNX metadata (faceforge export)" if stored
                                else "inferred from the graph shape")
            if not stored:
                from faceforge.embed.card import assumed_text

                self.card_note = no_card_line(self.path, assumed_text(self.card))
        self._source, self._device = (model_bytes if model_bytes is not None else self.path), device
        self._engine, self._probes = engine, probe_feeds(model, self.card)
        self.session = make_session(self._source, device, threads, engine, self._probes)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.fp16_input = inp.type == "tensor(float16)"
        self.meta = self.card.embedder_meta(self.card.name or self.path.stem)
        self._model_id = self.card.model_id
        self.providers = self.session.get_providers()

    def set_threads(self, threads: int) -> None:
        """Rebuild the session with ``threads`` intra-op threads (one per worker process of a pool)."""
        self.session = make_session(self._source, self._device, threads, self._engine, self._probes)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.fp16_input:
            x = x.astype(np.float16)
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = self.card.preprocess(images)
        if self.static_batch and x.shape[0] != self.static_batch:
            if self.static_batch != 1:
                raise UserError(f"{self.path}: the graph has a static batch of {self.static_batch}")
            out = np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])], axis=0)
        else:
            out = self._run(x)
        out = out.reshape(out.shape[0], -1)
        if out.shape[1] != self.meta.embedding_size:  # an inferred card could not know it
            self.meta.embedding_size = self.card.embedding_size = int(out.shape[1])
        return out

    def fingerprint(self) -> str:
        if self.path.is_file():
            st = self.path.stat()
            key = (f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.card.to_dict()}"
                   f"|{self.session.label}")
        else:
            key = f"{self._model_id}|{self.card.to_dict()}|{self.session.label}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]


@register_loader(".onnx")
def load_onnx(path: Path, device: str = "cpu", card: ModelCard | str | None = None) -> OnnxEmbedder:
    return OnnxEmbedder(path, device, card)
