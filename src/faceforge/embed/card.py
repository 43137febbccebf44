"""Model cards: a small YAML/JSON sidecar saying how to feed a face embedder that faceforge did not build.

A card declares everything between "an aligned face" and "the tensor the model wants"::

    input_size: [112, 112]        # H, W
    channel_order: rgb            # rgb | bgr
    layout: NCHW                  # NCHW | NHWC
    mean: [0.5, 0.5, 0.5]         # x = (pixel/255 - mean) / std, per channel (or one number) ...
    std: [0.5, 0.5, 0.5]
    # scale: 0.0078125            # ... or x = pixel * scale + offset (pixel in 0..255)
    # offset: -1.0
    template: arcface             # arcface | sphereface | {points: [[x, y] x5], size: [H, W]}
    embedding_size: 512
    flip: sum                     # recommended test-time flip fusion: none | sum | concat
    score: cosine                 # cosine | l2
    mean_subtract: false          # LFW scoring of SphereFace / MobileFaceNet-PyTorch: subtract the
                                  # mean feature of the other nine folds before the cosine
    threshold: 0.31               # optional calibrated "same person" threshold (cosine) ...
    far: 0.001                    # ... at this false-accept rate

Unknown keys are errors naming the closest valid key. ``mean``/``std`` are in faceforge's 0..1 unit;
a mean above 1 (``127.5``) is rejected with a hint, since mixing the two units silently ruins a model.
:func:`card_from_onnx` infers a card from an ONNX file's ``metadata_props`` (faceforge exports) or,
failing that, from its input shape; :func:`check_onnx` reports where a card contradicts a graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.embed.card_schema import (  # noqa: F401 (CHANNEL_ORDERS, ... are this module's API)
    CHANNEL_ORDERS,
    FLIPS,
    LAYOUTS,
    MAX_CARD_BYTES,
    NAMED_TEMPLATES,
    SCORES,
    check_fields,
    err,
)
from faceforge.errors import UserError

# templates a training mode records in a backbone's meta (not a card value): the named template
# whose geometry they derive from, for the schema check (train/modes/upper_half.py)
TRAINING_TEMPLATES = {"arcface_upper_half": "arcface"}
CARD_SUFFIXES = (".yaml", ".yml", ".json")
CARD_INFIXES = ("", ".card")  # X.yaml and X.card.yaml beside X.onnx; also X.onnx.yaml
METADATA_PREFIX = "faceforge."


@dataclass
class ModelCard:
    input_size: tuple[int, int] = (112, 112)
    channel_order: str = "rgb"
    layout: str = "NCHW"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    template: str | dict = "arcface"
    embedding_size: int = 512
    flip: str = "none"
    score: str = "cosine"
    mean_subtract: bool = False
    threshold: float | None = None
    far: float | None = None
    name: str = ""
    model_id: str = ""
    licence: str = ""
    calibration: dict = field(default_factory=dict)  # threshold metadata (far, pairs, tar, ...)
    notes: list[str] = field(default_factory=list)
    # the fields a card file / metadata actually stated (a default is not a declaration)
    declared: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    # -- conversions -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["declared"]
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if not self.mean_subtract:
            del d["mean_subtract"]  # the default stays out of cards and ONNX metadata
        return {k: v for k, v in d.items() if v is not None and v != "" and v != [] and v != {}}

    def template_name(self) -> str:
        return self.template if isinstance(self.template, str) else "custom"

    def template_points(self) -> np.ndarray:
        """The five template points (float64 [5, 2]) in the model's input frame."""
        from faceforge.align.transform import template_points

        if isinstance(self.template, dict):
            pts = np.asarray(self.template["points"], dtype=np.float64)
            th, tw = self.template["size"]
            h, w = self.input_size
            return pts * np.array([w / tw, h / th])
        return template_points(self.template, self.input_size)

    def rewarp(self, image: np.ndarray) -> np.ndarray | None:
        """An ArcFace-aligned square crop re-aligned to this card's explicit template points (None
        when the card names a template, or the image is not square): the landmarks of an aligned
        crop sit on the ArcFace template, so mapping those points onto the card's is the same warp
        the SDK applies to a photo, instead of a resize that keeps ArcFace's geometry."""
        if not isinstance(self.template, dict) or image.shape[0] != image.shape[1]:
            return None
        import cv2

        from faceforge.align.transform import estimate_similarity, template_points

        src = template_points("arcface", (image.shape[0], image.shape[1]))
        m = estimate_similarity(src, self.template_points())
        h, w = self.input_size
        return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)

    def embedder_meta(self, name: str | None = None):
        """The :class:`~faceforge.embed.base.EmbedderMeta` of this card."""
        from faceforge.embed.base import EmbedderMeta

        return EmbedderMeta(
            input_size=tuple(self.input_size),
            template=self.template_name(),
            mean=tuple(self.mean),
            std=tuple(self.std),
            channel_order=self.channel_order,
            embedding_size=int(self.embedding_size),
            name=name or self.name or "model",
        )

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB [B, H, W, 3] at ``input_size`` -> the float32 tensor the model takes."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}")
        if tuple(images.shape[1:3]) != tuple(self.input_size):
            from faceforge.align.transform import fit_batch

            images = fit_batch(images, self.input_size)
        if self.channel_order == "bgr":
            images = images[..., ::-1]
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (images.astype(np.float32) / np.float32(255.0) - mean) / std
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)


def card_from_dict(d: dict[str, Any], where: str = "card") -> ModelCard:
    """A validated card from a plain dict: every stated field checked by its row of
    :data:`faceforge.embed.card_schema.FIELDS` (types, ranges, finite numbers); unknown keys name
    their closest valid key."""
    v = check_fields(d, where)
    card = ModelCard()
    for key in ("input_size", "channel_order", "layout", "template", "embedding_size", "flip", "score",
                "mean_subtract", "threshold", "far", "name", "model_id", "licence", "calibration"):
        if key in v:
            setattr(card, key, v[key])
    has_ms, has_so = ("mean" in v or "std" in v), ("scale" in v or "offset" in v)
    if has_ms and has_so:
        raise err(where, "scale", "give either mean/std or scale/offset, not both")
    if has_so:
        scale, offset = v.get("scale", (1.0,) * 3), v.get("offset", (0.0,) * 3)
        if any(s == 0 for s in scale):
            raise err(where, "scale", "must not be 0")
        # pixel*scale + offset == (pixel/255 - mean)/std with std = 1/(255 scale), mean = -offset*std
        card.std = tuple(1.0 / (255.0 * s) for s in scale)
        card.mean = tuple(-o * st for o, st in zip(offset, card.std))
    if has_ms:
        card.mean, card.std = v.get("mean", (0.0,) * 3), v.get("std", (1.0,) * 3)
        if any(abs(m) > 1.0 for m in card.mean) or any(s > 1.0 for s in card.std):
            raise err(where, "mean", f"mean {list(card.mean)} / std {list(card.std)} look like 0..255 pixel "
                       "units; cards use 0..1 units (mean 0.5, std 0.5 for (pixel-127.5)/127.5) "
                       "or scale/offset")
        if any(s <= 0 for s in card.std):
            raise err(where, "std", "must be positive")
    card.notes = list(v.get("notes", []))
    card.declared = frozenset(v)
    if isinstance(card.template, str):
        native = NAMED_TEMPLATES[card.template]
        if native[0] * card.input_size[1] != native[1] * card.input_size[0]:
            note = (f"template {card.template} is {native[0]}x{native[1]} but input_size is "
                    f"{card.input_size[0]}x{card.input_size[1]}: the template is scaled and centred")
            card.notes += [note] if note not in card.notes else []
    return card


def load_card(path: str | Path) -> ModelCard:
    from faceforge.io.text import read_text

    path = Path(path)
    text = read_text(path, f"--card {path}" if not path.is_file() else None, max_bytes=MAX_CARD_BYTES)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError / JSONDecodeError / RecursionError: a malformed card
        raise UserError(f"{path}: not a readable card ({type(e).__name__}: {_first_line(e)})") from None
    return card_from_dict(data or {}, str(path))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def save_card(card: ModelCard, path: str | Path) -> Path:
    from faceforge.atomic import atomic_write_text

    path = Path(path)
    d = card.to_dict()
    if path.suffix.lower() == ".json":
        text = json.dumps(d, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(d, sort_keys=False)
    atomic_write_text(path, text)
    return path


def card_names(model_path: str | Path) -> list[Path]:
    """Where a card for ``X.onnx`` may sit, in the order looked at: ``X.yaml``, ``X.yml``, ``X.json``,
    ``X.card.yaml`` ... and ``X.onnx.yaml`` ..."""
    p = Path(model_path)
    names = [p.with_name(f"{p.stem}{infix}{suffix}") for infix in CARD_INFIXES for suffix in CARD_SUFFIXES]
    names += [p.with_name(f"{p.name}{suffix}") for suffix in CARD_SUFFIXES]
    return [n for n in names if n != p]


def card_beside(model_path: str | Path) -> Path | None:
    """The first of :func:`card_names` that exists, if any."""
    return next((cand for cand in card_names(model_path) if cand.is_file()), None)


def find_card(model_path: str | Path, card=None) -> tuple[ModelCard | None, str]:
    """(card, where it came from): an explicit card (path, dict or ModelCard), else one found beside
    the model, else (None, "")."""
    if isinstance(card, ModelCard):
        return card, "given card"
    if isinstance(card, dict):
        return card_from_dict(card, "card"), "given card"
    if card is not None:
        return load_card(card), f"--card {card}"
    beside = card_beside(model_path)
    return (load_card(beside), f"beside the model: {beside}") if beside else (None, "")


def merge_cards(base: ModelCard, override: ModelCard) -> ModelCard:
    """``base`` (what the model file itself records or implies) with the fields ``override`` states:
    a card beside a model may say only ``flip: concat``."""
    stated = set(override.declared)
    if stated & {"scale", "offset"}:
        stated |= {"mean", "std"}
    d = {k: v for k, v in base.to_dict().items() if k != "notes"}
    d.update({k: v for k, v in override.to_dict().items() if k in stated and k != "notes"})
    merged = card_from_dict(d, "card")
    merged.notes = list(dict.fromkeys(base.notes + override.notes))
    merged.declared = frozenset(base.declared | stated)
    return merged


def resolve_card(model_path: str | Path, card=None) -> ModelCard | None:
    """An explicit card (path, dict or ModelCard), else one found beside the model, else None."""
    return find_card(model_path, card)[0]


def no_card_line(model_path: str | Path, assumed: str) -> str:
    """The one line said when no card is found: where it was looked for and what is assumed."""
    p = Path(model_path)
    looked = ", ".join(n.name for n in card_names(p)[:4])
    return f"{p}: no model card (looked for {looked}, ...); assuming {assumed}"


# ------------------------------------------------------------------------------------------------
# ONNX metadata


def card_from_meta(meta: dict[str, Any], name: str = "model") -> ModelCard:
    """The card of a faceforge backbone's ``model.meta`` (checkpoints carry no card file), checked
    by the card schema like any card: a damaged record is one line naming the checkpoint."""
    where = f"{meta.get('checkpoint') or name}: backbone meta"
    d = {
        "input_size": meta.get("input_size", (112, 112)),
        "channel_order": meta.get("channel_order", "rgb"),
        "mean": meta.get("mean", 0.5),
        "std": meta.get("std", 0.5),
        "template": TRAINING_TEMPLATES.get(meta.get("template"), meta.get("template", "arcface")),
        "embedding_size": meta.get("embedding_size", 512),
        "flip": "sum",  # arcface_torch and FaceX-Zoo evaluate with the flipped image's features added
        "score": "cosine",
        "name": meta.get("backbone") or name,
    }
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    card = card_from_dict(d, where)
    card.notes, card.declared = [], frozenset()
    if meta.get("template") in TRAINING_TEMPLATES:
        card.template = meta["template"]
    return card


def card_to_metadata(card: ModelCard) -> dict[str, str]:
    """String metadata for ONNX ``metadata_props``: one ``faceforge.<field>`` key per card field."""
    return {f"{METADATA_PREFIX}{k}": json.dumps(v) for k, v in card.to_dict().items() if k != "notes"}


def card_from_metadata(props: dict[str, str], where: str) -> ModelCard | None:
    d = {}
    for key, value in props.items():
        if key.startswith(METADATA_PREFIX):
            try:
                d[key[len(METADATA_PREFIX):]] = json.loads(value)
            except json.JSONDecodeError:
                raise UserError(f"{where}: metadata '{key}' is not JSON: {value!r}") from None
    return card_from_dict(d, f"{where} metadata") if d else None


def _onnx_io(model) -> tuple[list, list]:
    """(input dims, output dims) of the first graph input/output: ints, or names/None if symbolic."""

    def dims(value_info):
        out = []
        for d in value_info.type.tensor_type.shape.dim:
            out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
        return out

    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    return dims(inputs[0]), dims(model.graph.output[0])


def _load_onnx(path: str | Path):
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX models need onnx: pip install 'faceforge[deploy]'") from None
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def card_from_onnx(path: str | Path, model=None) -> ModelCard:
    """The card stored in a faceforge ONNX export, or one inferred from the graph's input shape.

    An inferred card assumes the InsightFace convention (RGB, (pixel-127.5)/127.5, ArcFace template,
    cosine) and says so in ``notes``: check it before trusting the model's scores.
    """
    model = model if model is not None else _load_onnx(path)
    props = {p.key: p.value for p in model.metadata_props}
    card = card_from_metadata(props, str(path))
    if card is not None:
        card.notes.extend(check_onnx(card, model, str(path)))
        return card
    in_dims, out_dims = _onnx_io(model)
    if len(in_dims) != 4:
        raise UserError(f"{path}: input has {len(in_dims)} dimensions; a face embedder takes [B, C, H, W] "
                        "or [B, H, W, C]: write a card by hand")
    card = ModelCard()
    if in_dims[1] == 3 and isinstance(in_dims[2], int) and isinstance(in_dims[3], int):
        card.layout, card.input_size = "NCHW", (in_dims[2], in_dims[3])
    elif in_dims[3] == 3 and isinstance(in_dims[1], int) and isinstance(in_dims[2], int):
        card.layout, card.input_size = "NHWC", (in_dims[1], in_dims[2])
    else:
        raise UserError(f"{path}: cannot tell the layout from input shape {in_dims}: write a card by hand")
    h, w = card.input_size
    card.template = "sphereface" if (h, w) == (112, 96) else "arcface"
    card.notes.append(f"inferred from the graph shape: {assumed_text(card)} are assumptions; check them")
    if len(out_dims) >= 2 and isinstance(out_dims[-1], int):
        card.embedding_size = int(out_dims[-1])
    else:
        card.notes.append(f"output shape {out_dims} does not give the embedding size; it is measured at load")
    if in_dims[0] == 1:
        card.notes.append("the graph has a static batch of 1: images are run one at a time")
    card.name = Path(path).stem
    return card


def assumed_text(card: ModelCard) -> str:
    """The preprocessing a card states, in words (what an inferred card assumes)."""

    def num(v):
        return f"{v[0]:.4g}" if len(set(v)) == 1 else "[" + ", ".join(f"{x:.4g}" for x in v) + "]"

    h, w = card.input_size
    return (f"{card.channel_order.upper()}, {h}x{w} {card.layout}, mean {num(card.mean)} "
            f"std {num(card.std)}, template {card.template_name()}, flip {card.flip}")


def check_onnx(card: ModelCard, model, where: str) -> list[str]:
    """Raise UserError where ``card`` contradicts the graph; return notes for what merely deserves a word."""
    notes = []
    in_dims, out_dims = _onnx_io(model)
    if len(in_dims) != 4:
        raise UserError(f"{where}: the card says {card.layout} images but the graph input has "
                        f"shape {in_dims}")
    if card.layout == "NCHW":
        c, h, w = in_dims[1], in_dims[2], in_dims[3]
    else:
        h, w, c = in_dims[1], in_dims[2], in_dims[3]
    if isinstance(c, int) and c != 3:
        raise UserError(f"{where}: the card says layout {card.layout}, so the graph input {in_dims} has "
                        f"{c} channels, not 3 (wrong layout in the card?)")
    for got, want, what in ((h, card.input_size[0], "height"), (w, card.input_size[1], "width")):
        if isinstance(got, int) and got != want:
            raise UserError(f"{where}: the card's input_size {card.input_size[0]}x{card.input_size[1]} "
                            f"contradicts the graph input {in_dims} ({what} {got})")
    if len(out_dims) >= 2 and isinstance(out_dims[-1], int) and out_dims[-1] != card.embedding_size:
        raise UserError(f"{where}: the card's embedding_size {card.embedding_size} contradicts the graph "
                        f"output {out_dims}")
    if in_dims[0] == 1:
        notes.append("the graph has a static batch of 1: images are run one at a time")
    return notes
