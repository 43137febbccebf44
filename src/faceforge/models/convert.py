"""Import a peer framework's backbone checkpoint as a faceforge checkpoint, and back.

Supported layouts (``--from``):

* ``arcface_torch`` — InsightFace ``backbone.pth``: a plain state_dict of ``iresnet*`` or ``mbf``.
* ``facex`` — FaceX-Zoo: ``{"state_dict": ...}`` of the whole ``FaceModel``; the backbone's weights
  carry a ``backbone.`` prefix (the head's ``head.*`` entries are dropped). Inputs are
  ``(pixel - 127.5) / 128`` there, so the checkpoint records ``std = 128/255``.
* ``sphereface`` — ``clcarwin/sphereface_pytorch`` ``sphere20a``; its AngleLinear ``fc6`` classifier
  is dropped; inputs ``(pixel - 127.5) / 128`` as above.
* ``opensphere`` — an OpenSphere backbone state_dict (``sfnet*``, ``iresnet*``).

Channel order: FaceX-Zoo (``CommonTestDataset``, training ``ImageDataset``) and sphereface_pytorch
(``lfw_eval.py``, ``dataset.py``) read images with ``cv2.imread`` and never convert, so their
networks were trained and tested on **BGR**; arcface_torch (``cv2.cvtColor(BGR2RGB)`` / MXNet
decoding) and OpenSphere (``image[:, :, ::-1]`` after ``cv2.imread``) feed RGB. Every source records
its ``channel_order``, so the embedder flips the channels where the peer did not.

A ``module.`` prefix (DataParallel/DDP) is removed for every source. The state_dict must then match
the faceforge backbone's keys and shapes exactly; otherwise a ``UserError`` lists the first
missing / unexpected / mis-shaped entries. :func:`export_checkpoint` writes the reverse: a
faceforge checkpoint's backbone as the peer's file (the same keys, the source's prefix put back).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from faceforge.errors import UserError, clean_message

# source -> (prefix holding the backbone, prefixes/keys that are not backbone, meta overrides)
SOURCES: dict[str, dict[str, Any]] = {
    "arcface_torch": {"prefix": "", "drop": (), "meta": {"mean": 0.5, "std": 0.5, "channel_order": "rgb"}},
    "facex": {"prefix": "backbone.", "drop": ("head.",),
              "meta": {"mean": 0.5, "std": 128 / 255, "channel_order": "bgr"}},
    "sphereface": {"prefix": "", "drop": ("fc6.",),
                   "meta": {"mean": 0.5, "std": 128 / 255, "channel_order": "bgr"}},
    "opensphere": {"prefix": "", "drop": (), "meta": {"mean": 0.5, "std": 0.5, "channel_order": "rgb"}},
}
SHOW = 5  # how many offending keys an error names


def read_peer_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a peer checkpoint file (``weights_only`` loading: no code is unpickled)."""
    src = Path(src)
    if not src.is_file():
        raise UserError(f"{src}: file not found")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{src}: not a readable torch checkpoint of plain tensors ({type(e).__name__}: "
                        f"{clean_message(str(e).splitlines()[0] if str(e) else '')})") from None
    for key in ("state_dict", "model", "backbone"):  # common wrappers around the weights
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"{src}: holds no state_dict (expected a dict of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{src}: holds no tensors")
    return tensors


def to_backbone_keys(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Strip ``module.`` and the source's backbone prefix; drop entries that belong to a head."""
    if source not in SOURCES:
        raise UserError(f"--from: unknown source '{source}' (valid: {', '.join(SOURCES)})")
    rule = SOURCES[source]
    out: dict[str, torch.Tensor] = {}
    prefix = rule["prefix"]
    has_prefix = prefix and any(k.removeprefix("module.").startswith(prefix) for k in state_dict)
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if has_prefix:
            if not key.startswith(prefix):
                continue  # the FaceModel's head and anything else outside the backbone
            key = key[len(prefix):].removeprefix("module.")
        if any(key.startswith(d) for d in rule["drop"]):
            continue
        out[key] = value
    return out


def check_keys(model_sd: Mapping[str, torch.Tensor], peer_sd: Mapping[str, torch.Tensor], where: str) -> None:
    missing = [k for k in model_sd if k not in peer_sd]
    unexpected = [k for k in peer_sd if k not in model_sd]
    shapes = [f"{k} {tuple(peer_sd[k].shape)} != {tuple(v.shape)}" for k, v in model_sd.items()
              if k in peer_sd and tuple(peer_sd[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:SHOW])}{more}")
    if problems:
        raise UserError(f"{where}: does not match the backbone's state_dict; " + "; ".join(problems))


def import_checkpoint(src: str | Path, source: str, backbone: str, out: str | Path,
                      **options: Any) -> dict[str, Any]:
    """Convert ``src`` (a ``source`` checkpoint) into faceforge checkpoint ``out`` for ``backbone``.

    Returns a summary (backbone, entries, params, meta). ``options`` go to the backbone builder,
    e.g. ``embedding_size=256`` or ``input_size=(112, 96)`` (FaceX-Zoo's 112x96 MobileFaceNet).
    """
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    peer = to_backbone_keys(read_peer_state_dict(src), source)
    with torch.device("meta"):  # only keys and shapes are needed to check the layout
        layout = build_backbone(backbone, **options).state_dict()
    if "embedding_size" not in options:
        inferred = _infer_embedding_size(layout, peer)
        if inferred is not None:
            options = {**options, "embedding_size": inferred}
            with torch.device("meta"):
                layout = build_backbone(backbone, **options).state_dict()
    check_keys(layout, peer, str(src))
    model = build_backbone(backbone, **options)
    model.load_state_dict({k: peer[k].to(layout[k].dtype) for k in layout}, strict=True)
    model.meta.update(SOURCES[source]["meta"])
    model.meta["imported_from"] = {"source": source, "file": str(src)}
    model.eval()
    save_checkpoint(out, model, config={"imported_from": source, "src": str(src)})
    return {"backbone": backbone, "entries": len(layout), "options": options,
            "params": sum(p.numel() for p in model.parameters()),
            "meta": {k: model.meta[k] for k in ("input_size", "template", "mean", "std", "channel_order",
                                                "embedding_size")}}


def _infer_embedding_size(layout: Mapping[str, torch.Tensor], peer: Mapping[str, torch.Tensor]) -> int | None:
    """A peer trained with another embedding width differs only in the last entries' first dim."""
    last = [k for k in layout if layout[k].dim() >= 1][-1:]
    for key in last:
        if key in peer and peer[key].dim() == layout[key].dim() and peer[key].shape != layout[key].shape:
            return int(peer[key].shape[0])
    return None


def export_checkpoint(ckpt: str | Path, target: str, out: str | Path) -> dict[str, Any]:
    """Write the backbone of faceforge checkpoint ``ckpt`` as a ``target`` peer file ``out``:
    arcface_torch / OpenSphere / sphereface a plain state_dict (``backbone.pth``), FaceX-Zoo
    ``{"state_dict": {"backbone.<key>": ...}}`` as its ``FaceModel`` saves it (no head)."""
    from faceforge.atomic import atomic_torch_save
    from faceforge.models.checkpoint import read_checkpoint

    if target not in SOURCES:
        raise UserError(f"--to: unknown peer '{target}' (valid: {', '.join(SOURCES)})")
    rec = read_checkpoint(ckpt)["backbone"]
    prefix = SOURCES[target]["prefix"]
    state = {prefix + k: v.detach().cpu().clone() for k, v in rec["state_dict"].items()}
    atomic_torch_save({"state_dict": state} if prefix else state, out)
    meta = rec.get("meta", {})
    want = SOURCES[target]["meta"]
    mismatch = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) is not None
                and abs(float(meta[k]) - float(v)) > 1e-6}
    return {"backbone": rec["name"], "entries": len(state), "target": target,
            "normalisation_differs": mismatch}
