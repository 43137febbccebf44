"""A "same person" threshold chosen on verification pairs at one or more false-accept rates.

The score is the cosine of L2-normalised embeddings (after the card's flip fusion), the one
:meth:`faceforge.FaceAnalyzer.compare` reports. At each target FAR the threshold is the lowest score
that keeps the FAR on the different-identity pairs at or below it (all-pairs ROC); "same" means
``score >= threshold``. Honest thresholds (:mod:`faceforge.eval.thresholds`): a FAR is only
calibrated when the impostor pairs measure it (at least 10/FAR of them); the first ``--far`` is the
one stored and is refused when not measurable, the others are reported (or marked not measurable).

Pairs come from a pair source (``pairs:``, ``facex:``, ``calfw:``, ``bin:``) or from an identity
folder (``root/<identity>/<images>``), from which identity-disjoint pairs are drawn, seeded.

Where the result is kept (:func:`calibrate_model`): a faceforge checkpoint stores it under
``ckpt["calibration"]``; an ONNX or TorchScript file, or a model given with ``--card``, gets
``threshold``/``far`` in its card (the one given, else the one beside the file, else a new
``<model>.yaml`` holding the card in use); ``dlib:resnet`` has no file of its own, so its card goes
where ``--card-out`` says (use it with ``--card``). The full record (pairs, TAR at each FAR, the
smallest measurable FAR) is returned and printed, and stored in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.errors import UserError


def _fars(far) -> list[float]:
    fars = [float(far)] if isinstance(far, (int, float)) else [float(f) for f in far]
    if not fars:
        raise UserError("--far: give at least one rate")
    for f in fars:
        if not 0 < f < 1:
            raise UserError(f"--far: expected a rate in (0, 1), got {f:g}")
    return fars


def calibrate(embedder, pairs, far: float | Sequence[float] = 1e-3, flip: str | None = None,
              batch_size: int = 64, workers: int = 0, raise_far: bool = False) -> dict[str, Any]:
    """Embed a pair source (or a PairSet) and pick the cosine threshold at each FAR; the first FAR's
    is ``threshold``, refused when its impostor pairs cannot measure it, or with ``raise_far`` (a
    pipeline such as ``fit``) kept at the smallest FAR they measure, recorded as ``far`` beside
    ``far_requested`` and said in ``far_note``. ``flip`` None: the card's."""
    from faceforge.embed.base import l2_normalize
    from faceforge.embed.extract import embed_images
    from faceforge.eval.pairs import PairSet, open_pairs
    from faceforge.eval.thresholds import not_measurable_text, thresholds_at_fars
    from faceforge.eval.verification import pipeline_choices

    fars = _fars(far)
    flip = pipeline_choices(embedder, flip)["flip"]
    pairset = pairs if isinstance(pairs, PairSet) else open_pairs(str(pairs))
    source = pairset.name if isinstance(pairs, PairSet) else str(pairs)
    emb = embed_images(embedder, pairset, batch_size=batch_size, flip=flip, workers=workers)
    keep = emb.valid[pairset.pairs].all(axis=1)
    if not keep.any():
        raise UserError(f"--pairs {source}: no pair has two readable images")
    feats = l2_normalize(emb.features)
    a, b = pairset.pairs[keep, 0], pairset.pairs[keep, 1]
    scores = np.einsum("ij,ij->i", feats[a], feats[b]).astype(np.float64)
    table = thresholds_at_fars(scores, pairset.issame[keep], fars)
    primary = next(r for r in table["at_far"] if r["far"] == fars[0])
    requested, note = fars[0], ""
    if not primary["measurable"] and raise_far:
        fars = [float(f"{table['smallest_far'] * 1.005:.2g}"), *fars]  # 2 digits, rounded up
        note = (f"FAR {requested:g} is {not_measurable_text(requested, table['different'])}; calibrated at "
                f"FAR {fars[0]:g} instead")
        table = thresholds_at_fars(scores, pairset.issame[keep], fars)
        primary = next(r for r in table["at_far"] if r["far"] == fars[0])
    if not primary["measurable"]:
        raise UserError(f"--far {fars[0]:g}: refused, {not_measurable_text(fars[0], table['different'])}; "
                        f"use more pairs or a FAR >= {table['smallest_far']:.2g}")
    return {
        "threshold": float(primary["threshold"]),
        "far": fars[0],
        "far_requested": requested,
        "far_note": note,
        "measured_far": primary["measured_far"],
        "tar": float(primary["tar"]),
        **table,
        "dropped_pairs": int((~keep).sum()),
        "self_alignment": emb.self_alignment,
        "score": "cosine",
        "flip": flip,
        "source": source,
    }


def folder_pairs(folder: str | Path, per_fold: int = 1000, seed: int = 0):
    """Identity-disjoint verification pairs drawn (seeded) from ``folder/<identity>/<images>``
    (:func:`faceforge.data.tools.pairs.verification_pairs`: 10 folds of ``per_fold`` same and as
    many different pairs) as a PairSet; 1000 per fold give 10,000 impostor pairs, enough for FAR 1e-3."""
    from faceforge.data.tools.pairs import verification_pairs
    from faceforge.eval.pairs import PairSet

    drawn = verification_pairs(folder, 10, per_fold, seed)
    index: dict[Path, int] = {}
    for a, b, _, _ in drawn:
        index.setdefault(Path(a), len(index))
        index.setdefault(Path(b), len(index))
    pairs = np.array([[index[Path(a)], index[Path(b)]] for a, b, _, _ in drawn], dtype=np.int64)
    return PairSet(list(index), pairs, np.array([d[2] for d in drawn], bool),
                   np.array([d[3] for d in drawn], np.int64), f"{folder} (seed {seed}, {per_fold} per fold)")


def calibrate_model(model: str, pairs: str | None = None, folder: str | None = None,
                    far: float | Sequence[float] = 1e-3, flip: str | None = None, device: str = "cpu",
                    batch_size: int = 64, card: str | None = None, card_out: str | None = None,
                    per_fold: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``faceforge calibrate``: calibrate any model faceforge loads and keep the threshold with it
    (module docstring); returns the record with ``stored_in``."""
    from faceforge.embed.loading import load_embedder

    if (pairs is None) == (folder is None):
        raise UserError("calibrate: give --pairs SOURCE or --folder DIR (one of them)")
    if card is None and card_out is None and not Path(str(model)).is_file():
        raise UserError(f"calibrate: {model} has no model file to keep a threshold beside: give "
                        "--card-out CARD.yaml (then pass --card CARD.yaml to use it)")
    embedder = load_embedder(model, device, card)
    source = pairs if pairs is not None else folder_pairs(folder, per_fold, seed)
    result = calibrate(embedder, source, far, flip, batch_size)
    result["model"] = str(model)
    result["stored_in"] = store_calibration(model, embedder, result, card, card_out)
    return result


def calibrate_checkpoint(ckpt: str | Path, pairs: str, far: float = 1e-3, flip: str | None = None,
                         device: str = "cpu") -> dict[str, Any]:
    """A checkpoint's threshold inside a pipeline (``faceforge fit``): :func:`calibrate` with
    ``raise_far`` (an unmeasurable FAR becomes the smallest measurable one, said in ``far_note``),
    stored in the checkpoint."""
    from faceforge.embed.loading import load_embedder

    result = calibrate(load_embedder(str(ckpt), device), pairs, far, flip, raise_far=True)
    result["model"] = str(ckpt)
    result["stored_in"] = store_calibration(str(ckpt), None, result)
    return result


def _is_checkpoint(model: str) -> bool:
    from faceforge.embed.torchscript_embedder import is_torchscript

    path = Path(model)
    return path.is_file() and path.suffix.lower() not in (".onnx", ".ts", ".torchscript") and \
        not is_torchscript(path)


def calibration_note(result: dict[str, Any]) -> str:
    """One line saying what the threshold was measured on (kept in the card's notes)."""
    return (f"threshold {result['threshold']:.4f} at FAR {result['far']:g}: TAR {result['tar']:.4f}, "
            f"measured FAR {result['measured_far']:.2g} on {result['same']} genuine + {result['different']} "
            f"impostor pairs of {result['source']} (smallest measurable FAR {result['smallest_far']:.2g}), "
            f"flip {result['flip']}, calibrated by faceforge")


def store_calibration(model: str, embedder, result: dict[str, Any], card: str | None = None,
                      card_out: str | None = None) -> str:
    """Keep ``result``'s threshold where ``model`` keeps it (module docstring); returns where."""
    from faceforge.embed.card import card_beside

    if card_out is None and card is None and _is_checkpoint(str(model)):
        from faceforge.models.checkpoint import read_checkpoint, write_checkpoint

        obj = read_checkpoint(model)
        obj["calibration"] = result
        write_checkpoint(model, obj)
        return str(model)
    spec = not Path(str(model)).is_file()
    target = card_out or card or (None if spec else card_beside(model))
    if target is None:
        target = Path(model).with_suffix(".yaml")
        fields = {k: v for k, v in embedder.card.to_dict().items() if k != "notes"} if not spec else {}
    else:
        fields = _card_fields(Path(target)) if Path(target).is_file() and card_out is None else {}
        if not fields and not spec and getattr(embedder, "card", None) is not None:
            fields = {k: v for k, v in embedder.card.to_dict().items() if k != "notes"}
    fields = {k: v for k, v in fields.items() if k not in ("threshold", "far", "notes")}
    if spec:  # a built-in model's card states only what it may change
        fields = {k: v for k, v in fields.items() if k == "flip"}
    fields.update(threshold=round(result["threshold"], 6), far=result["far"], flip=result["flip"],
                  notes=[calibration_note(result)])
    _write_fields(Path(target), fields)
    return str(target)


def _card_fields(path: Path) -> dict[str, Any]:
    """The raw fields of a card file (validated by loading it as a card first)."""
    import json

    import yaml

    from faceforge.embed.card import load_card

    load_card(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    return dict(data or {})


def _write_fields(path: Path, fields: dict[str, Any]) -> None:
    import json

    import yaml

    from faceforge.atomic import atomic_write_text
    from faceforge.embed.card import card_from_dict

    card_from_dict(dict(fields), str(path))  # never write a card that would not load
    text = (json.dumps(fields, indent=2) + "\n" if path.suffix.lower() == ".json"
            else yaml.safe_dump(fields, sort_keys=False, default_flow_style=None))
    atomic_write_text(path, text)


def stored_calibration(model_path: str | Path) -> dict[str, Any] | None:
    """The calibration stored with a faceforge checkpoint, if any."""
    from faceforge.models.checkpoint import read_checkpoint

    cal = read_checkpoint(model_path).get("calibration")
    return dict(cal) if isinstance(cal, dict) and "threshold" in cal else None
