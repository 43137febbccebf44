"""The one image-decoding gate: every user image faceforge reads passes through here.

:func:`read_image` (a file) and :func:`decode_image` (bytes) return RGB ``uint8`` (gray and RGBA
converted) or raise :class:`CorruptImage`, which loaders skip and count and single-input commands
turn into one line.
"""

from __future__ import annotations

import numpy as np


class CorruptImage(Exception):
    """An image that cannot be decoded; loaders skip it and count it."""


def decode_image(data: bytes, where: str = "") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (gray and RGBA converted); CorruptImage if not."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise CorruptImage(f"cannot decode image {where}".strip())
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8; CorruptImage if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CorruptImage(f"cannot read {path}: {e.strerror}") from None
    return decode_image(data, str(path))
