"""The model card schema: one checker per field, in one table (:data:`FIELDS`).

Every way a card is read (a file beside a model, ``--card``, ONNX metadata, a checkpoint's own
record) goes through :func:`faceforge.embed.card.card_from_dict`, which checks each stated field
with its row here. A wrong type, a value out of range, NaN or infinity is a one-line
``UserError("<file>: <field>: ...")``. Adding a field is one row (and one dataclass field).

Limits (documented in docs/deployment.md, "Model cards"): ``input_size`` sides in [8, 1024] pixels
(a face embedder takes 96-640; 60000x60000 would ask for tens of GB per image); ``embedding_size``
in [1, 65536]; a card file at most 1 MiB; text fields at most 4096 characters; ``notes`` at most 64 lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from faceforge.embed.base import FLIPS
from faceforge.errors import UserError, closest

CHANNEL_ORDERS = ("rgb", "bgr")
LAYOUTS = ("NCHW", "NHWC")
SCORES = ("cosine", "l2")
# arcface_upper_half: the eyes-and-brows half of an ArcFace crop (train mode upper_half, masked faces)
NAMED_TEMPLATES = {"arcface": (112, 112), "sphereface": (112, 96), "arcface_upper_half": (56, 112)}
MIN_SIDE, MAX_SIDE = 8, 1024
MAX_EMBEDDING = 65536
MAX_CARD_BYTES = 1 << 20
MAX_TEXT = 4096
MAX_NOTES = 64
THRESHOLD_RANGE = {"cosine": (-1.0, 1.0), "l2": (0.0, 4.0)}  # unit vectors: cos in [-1, 1], |a-b|^2 <= 4


def err(where: str, key: str, msg: str) -> UserError:
    return UserError(f"{where}: {key}: {msg}")


def integer(value: Any, where: str, key: str, low: int, high: int) -> int:
    """An int in [low, high]; an integral float (``512.0``) is accepted, a bool or text is not."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(where, key, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise err(where, key, f"must be in [{low}, {high}], got {value}")
    return value


def number(value: Any, where: str, key: str, low: float | None = None, high: float | None = None,
           open_range: bool = False) -> float:
    """A finite float within [low, high] (``(low, high)`` with ``open_range``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(where, key, f"expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise err(where, key, f"expected a finite number, got {value}")
    below = low is not None and (value <= low if open_range else value < low)
    above = high is not None and (value >= high if open_range else value > high)
    if below or above:
        span = f"({low}, {high})" if open_range else f"[{low}, {high}]"
        raise err(where, key, f"must be in {span}, got {value}")
    return value


def text(value: Any, where: str, key: str) -> str:
    """A string (a YAML number such as ``model_id: 1234`` is taken as its text), at most MAX_TEXT."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise err(where, key, f"expected a string, got {type(value).__name__} {_short(value)}")
    value = str(value)
    if len(value) > MAX_TEXT:
        raise err(where, key, f"longer than {MAX_TEXT} characters ({len(value)})")
    return value


def texts(value: Any, where: str, key: str) -> list[str]:
    """A list of strings (one string is a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise err(where, key, f"expected a list of strings, got {type(value).__name__} {_short(value)}")
    if len(value) > MAX_NOTES:
        raise err(where, key, f"more than {MAX_NOTES} entries ({len(value)})")
    return [text(v, where, f"{key}[{i}]") for i, v in enumerate(value)]


def flag(value: Any, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise err(where, key, f"expected true or false, got {value!r}")
    return value


def choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[Any, str, str], str]:
    def check(value: Any, where: str, key: str) -> str:
        if not isinstance(value, str):
            raise err(where, key, f"expected one of {', '.join(choices)}, got {value!r}")
        name = value.upper() if upper else value.lower()
        if name not in choices:
            raise err(where, key, f"'{value}' is not one of {', '.join(choices)}")
        return name

    return check


def size(value: Any, where: str, key: str) -> tuple[int, int]:
    """[H, W] (or ``'112x96'``), each side in [MIN_SIDE, MAX_SIDE]."""
    if isinstance(value, str):
        value = value.lower().replace("x", ",").split(",")
        try:
            value = [int(v) for v in value]
        except ValueError:
            raise err(where, key, f"expected [H, W] (e.g. [112, 112] or '112x96'), got {value!r}") from None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise err(where, key, f"expected [H, W] (e.g. [112, 112] or '112x96'), got {_short(value)}")
    h, w = (integer(v, where, key, MIN_SIDE, MAX_SIDE) for v in value)
    return h, w


def channels(value: Any, where: str, key: str) -> tuple[float, ...]:
    """One finite number or three (per RGB channel)."""
    vals = [value] if not isinstance(value, (list, tuple)) else list(value)
    if len(vals) not in (1, 3):
        raise err(where, key, f"expected a number or 3 numbers, got {_short(value)}")
    out = tuple(number(v, where, key) for v in vals)
    return out * 3 if len(out) == 1 else out


def template(value: Any, where: str, key: str = "template"):
    """A named template or ``{points: 5 x [x, y], size: [H, W]}``."""
    if isinstance(value, str):
        if value not in NAMED_TEMPLATES:
            raise err(where, key, f"unknown template '{value}': {closest(value, NAMED_TEMPLATES)} "
                      "(or give {points: [[x, y] x5], size: [H, W]})")
        return value
    if isinstance(value, dict):
        if set(value) != {"points", "size"}:
            raise err(where, key, "an explicit template needs exactly 'points' (5 x [x, y]) and "
                      "'size' [H, W]")
        try:
            pts = np.asarray(value["points"], dtype=np.float64)
        except (TypeError, ValueError):
            pts = np.zeros(0)
        if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
            raise err(where, f"{key}.points",
                      f"expected 5 finite [x, y] points, got {_short(value['points'])}")
        th, tw = size(value["size"], where, f"{key}.size")
        if np.any(np.abs(pts) > 4 * max(th, tw)):
            raise err(where, f"{key}.points", f"points far outside the {th}x{tw} template frame")
        return {"points": pts.tolist(), "size": [th, tw]}
    raise err(where, key, f"expected a name or {{points, size}}, got {_short(value)}")


def mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    """A mapping of names to plain values (finite numbers, strings, bools, lists of those, mappings):
    metadata such as a ``calibration`` record (far, pairs, tar, ...)."""
    if not isinstance(value, dict):
        raise err(where, key, f"expected a mapping, got {type(value).__name__} {_short(value)}")
    return {text(k, where, key): _plain(v, where, f"{key}.{k}") for k, v in value.items()}


def _plain(value: Any, where: str, key: str, depth: int = 0) -> Any:
    if depth > 4:
        raise err(where, key, "nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return text(value, where, key) if isinstance(value, str) else value
    if isinstance(value, (int, float)):
        return number(value, where, key) if isinstance(value, float) else value
    if isinstance(value, list):
        if len(value) > MAX_TEXT:
            raise err(where, key, f"more than {MAX_TEXT} entries")
        return [_plain(v, where, f"{key}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {text(k, where, key): _plain(v, where, f"{key}.{k}", depth + 1) for k, v in value.items()}
    raise err(where, key, f"expected a number, string or list, got {type(value).__name__}")


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


# field -> checker(value, where, key). mean/std/scale/offset are checked together by the card
# (they are two spellings of one normalisation); threshold's range depends on ``score``.
FIELDS: dict[str, Callable[[Any, str, str], Any]] = {
    "input_size": size,
    "channel_order": choice(CHANNEL_ORDERS),
    "layout": choice(LAYOUTS, upper=True),
    "mean": channels,
    "std": channels,
    "scale": channels,
    "offset": channels,
    "template": template,
    "embedding_size": lambda v, where, key: integer(v, where, key, 1, MAX_EMBEDDING),
    "flip": choice(FLIPS),
    "score": choice(SCORES),
    "mean_subtract": flag,
    "threshold": number,
    "far": lambda v, where, key: number(v, where, key, 0.0, 1.0, open_range=True),
    "name": text,
    "model_id": text,
    "licence": text,
    "notes": texts,
    "calibration": mapping,
}


def check_fields(d: Any, where: str) -> dict[str, Any]:
    """The stated fields of a card mapping, each checked by its row (``None`` = not stated)."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a mapping of card fields, got {type(d).__name__}")
    out = {}
    for key, value in d.items():
        if not isinstance(key, str) or key not in FIELDS:
            raise err(where, str(key), f"unknown card field; {closest(str(key), FIELDS)}")
        if value is not None:
            out[key] = FIELDS[key](value, where, key)
    score = out.get("score", "cosine")
    if "threshold" in out:
        low, high = THRESHOLD_RANGE[score]
        out["threshold"] = number(out["threshold"], where, "threshold", low, high)
    return out
