"""TorchScript face embedders (``.torchscript``, ``.ts``, and ``.pt`` files that are TorchScript archives).

``.pt`` is also the suffix of faceforge checkpoints, so the ``.pt``/``.pth`` loader looks inside first:
both are zip files, but only a TorchScript archive holds ``<root>/constants.pkl`` or ``<root>/code/``
(``torch.save`` writes ``data.pkl`` and ``data/``). ``torch.jit.load`` is only tried on those.

The card is the one passed, one beside the file, or the ``faceforge_card.json`` that
``faceforge export --torchscript`` embeds as an extra file; a foreign archive without any card is an
error, since its input size and normalisation cannot be read off a TorchScript module.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from faceforge.embed.base import Embedder
from faceforge.embed.card import ModelCard, card_from_dict, find_card
from faceforge.embed.loading import register_loader
from faceforge.embed.torch_embedder import load_faceforge_checkpoint
from faceforge.errors import UserError

CARD_EXTRA = "faceforge_card.json"


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl`` or ``code/``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


class TorchScriptEmbedder(Embedder):
    def __init__(self, path: str | Path, device: str = "cpu", card=None):
        import torch

        self.path = Path(path)
        self.device = torch.device(device)
        extra = {CARD_EXTRA: ""}
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra).eval()
        except Exception as e:  # torch raises RuntimeError subclasses for foreign archives
            raise UserError(f"{self.path}: not a loadable TorchScript archive "
                            f"({type(e).__name__}: {e})") from None
        self.card, self.card_origin = find_card(self.path, card)
        if self.card is None and extra[CARD_EXTRA]:
            where = f"{self.path} ({CARD_EXTRA})"
            try:
                embedded = json.loads(extra[CARD_EXTRA])
            except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                raise UserError(f"{where}: not a readable card (damaged JSON)") from None
            self.card = card_from_dict(embedded, where)
            self.card_origin = f"embedded {CARD_EXTRA} (faceforge export)"
        if self.card is None:
            raise UserError(f"{self.path}: a TorchScript model needs a card (input size, normalisation, "
                            f"template): put {self.path.with_suffix('.yaml').name} beside it or pass --card")
        self.meta = self.card.embedder_meta(self.card.name or self.path.stem)

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(self.card.preprocess(images)).to(self.device)
        with torch.inference_mode():
            out = self.module(x)
        if isinstance(out, dict):
            out = out["embedding"]
        out = out.float().cpu().numpy().reshape(x.shape[0], -1)
        if out.shape[1] != self.meta.embedding_size:
            self.meta.embedding_size = self.card.embedding_size = int(out.shape[1])
        return out

    def fingerprint(self) -> str:
        st = self.path.stat()
        key = f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.card.to_dict()}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]


@register_loader(".torchscript", ".ts")
def load_torchscript(path: Path, device: str = "cpu", card: ModelCard | str | None = None) -> Embedder:
    return TorchScriptEmbedder(path, device, card)


@register_loader(".ckpt", ".pt", ".pth")
def load_pt(path: Path, device: str = "cpu", card: ModelCard | str | None = None) -> Embedder:
    """A ``.ckpt``/``.pt`` file: TorchScript archive or faceforge checkpoint (see the module docstring)."""
    if is_torchscript(path):
        return TorchScriptEmbedder(path, device, card)
    return load_faceforge_checkpoint(path, device, card)
