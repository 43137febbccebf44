"""faceforge checkpoints (and any ``nn.Module`` with ``model.meta``) as embedders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from faceforge.embed.base import Embedder, EmbedderMeta
from faceforge.embed.loading import register_loader
from faceforge.errors import UserError


def state_fingerprint(model) -> str:
    h = hashlib.sha1()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class TorchEmbedder(Embedder):
    """A backbone (``forward(x[B,3,H,W]) -> [B,D]``, ``model.meta`` as set by ``build_backbone``)."""

    def __init__(self, model, device: str = "cpu", name: str | None = None, source: str | None = None,
                 precision: str = "fp32"):
        """``precision`` bf16: autocast + channels_last (what training's ``train.precision: auto`` chose
        where it measured faster; validation then runs the way training does)."""
        import torch

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected fp32 or bf16, got {precision!r}")
        self.precision = precision

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        meta = dict(getattr(model, "meta", {}) or {})
        if "embedding_size" not in meta and hasattr(model, "embedding_size"):
            meta["embedding_size"] = int(model.embedding_size)
        self.meta = EmbedderMeta.from_model_meta(meta, name)
        self.source = source or meta.get("checkpoint")
        # scalar or per-channel (RGB) normalisation, broadcast over [B, 3, H, W]
        self._mean = torch.as_tensor(self.meta.mean, dtype=torch.float32).reshape(1, -1, 1, 1).to(self.device)
        self._std = torch.as_tensor(self.meta.std, dtype=torch.float32).reshape(1, -1, 1, 1).to(self.device)

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        images = np.ascontiguousarray(images)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}")
        if self.meta.channel_order == "bgr":
            images = np.ascontiguousarray(images[..., ::-1])
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self._mean) / self._std
        bf16 = self.precision == "bf16"
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.model(x)
        if isinstance(out, dict):  # a model returning named outputs gives its embedding by name
            out = out["embedding"]
        return out.float().cpu().numpy()

    def fingerprint(self) -> str:
        if self.source and Path(self.source).is_file():
            st = Path(self.source).stat()
            return hashlib.sha1(
                f"{Path(self.source).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
            ).hexdigest()[:16] + ("-bf16" if self.precision == "bf16" else "")
        return state_fingerprint(self.model) + ("-bf16" if self.precision == "bf16" else "")


@register_loader(".ckpt", ".pt", ".pth")
def load_faceforge_checkpoint(path: Path, device: str = "cpu", card=None) -> Embedder:
    """A checkpoint fed as its ``model.meta`` says, or as a card (``--card`` / beside it) says."""
    from faceforge.embed.card import assumed_text, card_from_meta, find_card, merge_cards, no_card_line
    from faceforge.models.checkpoint import load_backbone

    model = load_backbone(path, device=device)
    found, origin = find_card(path, card)
    if found is not None and found.declared:  # fields it leaves out come from the checkpoint
        found = merge_cards(card_from_meta(model.meta, Path(path).stem), found)
    if found is not None:
        if found.layout != "NCHW":
            raise UserError(f"{path}: a faceforge checkpoint takes NCHW input; the card says {found.layout}")
        model.meta.update({k: v for k, v in found.embedder_meta().__dict__.items() if k != "name"})
    emb = TorchEmbedder(model, device, name=Path(path).stem, source=str(path))
    emb.card = found if found is not None else card_from_meta(model.meta, Path(path).stem)
    emb.card_origin = origin or "the checkpoint's own record (model.meta)"
    if found is None and "imported_from" in model.meta:  # a peer's model: say what is assumed
        emb.card_note = no_card_line(path, assumed_text(emb.card) + " (recorded at import)")
    return emb
