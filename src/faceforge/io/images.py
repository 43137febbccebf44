"""The one image-decoding gate: every user image faceforge reads passes through here.

:func:`read_image` (a file) and :func:`decode_image` (bytes) return RGB ``uint8`` (gray and RGBA
converted) or raise :class:`CorruptImage`, which loaders skip and count and single-input commands
turn into one line.

Before anything is decoded, the width and height are read from the header (:func:`image_size`:
PNG, JPEG, GIF, BMP, WebP, TIFF, PNM parsed by hand) and an image over the pixel limit is refused,
so a 177-byte PNG that declares 100000x100000 never reaches a decoder. The limit defaults to the
HTTP service's (40 megapixels); ``FACEFORGE_MAX_PIXELS`` or :func:`set_max_pixels` change it.
Every decoder failure (``cv2.error`` included) becomes :class:`CorruptImage`, and so does a format
whose header is not parsed here (OpenCV's other decoders would allocate whatever they declare).

JPEGs of at least :data:`TURBO_MIN_PIXELS` are decoded with PyTurboJPEG when it and the system's
libturbojpeg are installed (``pip install 'faceforge[bench]'`` + ``apt-get install libturbojpeg0``):
straight to RGB, no colour-conversion pass. Smaller JPEGs (aligned crops), every other format, and
every JPEG when TurboJPEG is missing go through OpenCV. Measured per thread (``bench/jpeg_decoders.py``,
docs/benchmarks.md): phone photos 220 vs 187 images/s, 232x320 CelebA photos 4,845 vs 4,730, but
112x112 crops 16,224 vs 18,392 (PyTurboJPEG's per-call overhead), hence the threshold. Both are
libjpeg-turbo: the pixels were identical on every file measured. ``FACEFORGE_JPEG_DECODER=opencv``
forces OpenCV; :func:`jpeg_decoder` says which library is available.
"""

from __future__ import annotations

import os
import struct

import numpy as np

DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED = "JPEG, PNG, GIF, BMP, WebP, TIFF or PNM"
_max_pixels: int | None = None


class CorruptImage(Exception):
    """An image that cannot be decoded (or is over the pixel limit); loaders skip it and count it."""


def max_pixels() -> int:
    """The pixel limit in force: :func:`set_max_pixels`, else ``FACEFORGE_MAX_PIXELS``, else 40 M."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get("FACEFORGE_MAX_PIXELS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            from faceforge.errors import UserError

            raise UserError(f"FACEFORGE_MAX_PIXELS: expected a positive integer, got {env!r}")
        return value
    return DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | None) -> None:
    """Set the process-wide pixel limit (``None`` restores the environment / default)."""
    global _max_pixels
    if limit is not None and int(limit) < 1:
        from faceforge.errors import UserError

        raise UserError(f"max_pixels: must be >= 1, got {limit}")
    _max_pixels = None if limit is None else int(limit)


# --------------------------------------------------------------------------------------------
# header parsing: (width, height) without decoding


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise CorruptImage("PNG without an IHDR header")
    return struct.unpack(">II", data[16:24])


def _gif(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise CorruptImage("truncated GIF header")
    return struct.unpack("<HH", data[6:10])


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise CorruptImage("truncated BMP header")
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # a negative height means top-down rows


# markers that stand alone (no length field): TEM, RST0-7, SOI, EOI
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def _jpeg(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise CorruptImage("JPEG marker expected")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if length < 2:
            raise CorruptImage("JPEG segment with a bad length")
        i += 2 + length
    raise CorruptImage("JPEG without a frame header")


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    raise CorruptImage("WebP without a readable VP8/VP8L/VP8X header")


def _tiff(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(end + "I", data[4:8])
        (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
        size: dict[int, int] = {}
        for k in range(count):
            entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
            tag, kind = struct.unpack(end + "HH", entry[:4])
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
                fmt = end + ("H" if kind == 3 else "I")
                size[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    except struct.error:
        raise CorruptImage("truncated TIFF header") from None
    if 256 not in size or 257 not in size:
        raise CorruptImage("TIFF without width/height tags")
    return size[256], size[257]


def _pnm(data: bytes) -> tuple[int, int]:
    fields: list[bytes] = []
    for line in data[2:512].split(b"\n"):
        fields += line.split(b"#", 1)[0].split()
        if len(fields) >= 2:
            break
    try:
        return int(fields[0]), int(fields[1])
    except (IndexError, ValueError):
        raise CorruptImage("PNM without a readable size") from None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header, or None for a format not parsed here; CorruptImage if the
    header of a recognised format is unreadable."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(data)
    if head.startswith(b"BM"):
        return _bmp(data)
    if head[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return _pnm(data)
    return None


def check_size(width: int, height: int, where: str = "") -> None:
    """CorruptImage for an empty image or one over the pixel limit."""
    limit = max_pixels()
    if width < 1 or height < 1:
        raise CorruptImage(f"{where}: declares an empty {width}x{height} image".lstrip(": "))
    if width * height > limit:
        raise CorruptImage(f"{where}: {width}x{height} is over the {limit}-pixel limit".lstrip(": "))


# --------------------------------------------------------------------------------------------
# decoding


def decode_raw(data: bytes, where: str = "", flags: int | None = None) -> np.ndarray:
    """``cv2.imdecode`` behind the size check: the array as OpenCV returns it (BGR order, any depth,
    ``IMREAD_UNCHANGED`` unless ``flags`` says otherwise); CorruptImage on any failure."""
    import cv2

    if not data:
        raise CorruptImage(f"{where}: empty file".lstrip(": "))
    size = image_size(data)
    if size is None:  # a decoder whose header is not checked here would allocate what it declares
        raise CorruptImage(f"{where}: not a supported image format ({SUPPORTED})".lstrip(": "))
    check_size(*size, where=where)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if flags is None else flags)
    except cv2.error as e:  # OpenCV's own limits and decoder errors
        reason = str(e).strip().splitlines()[-1][:120] if str(e).strip() else "decoder error"
        raise CorruptImage(f"cannot decode image {where}: {reason}".strip()) from None
    if img is None or img.size == 0:
        raise CorruptImage(f"cannot decode image {where}".strip())
    return img


_TURBO: object = None  # the TurboJPEG decoder, False when it is not installed (looked up once)
TURBO_MIN_PIXELS = 65_536  # below this OpenCV is faster (see the module docstring)


def _turbo():
    global _TURBO
    if _TURBO is None:
        _TURBO = False
        if os.environ.get("FACEFORGE_JPEG_DECODER", "auto").lower() != "opencv":
            try:
                from turbojpeg import TurboJPEG

                _TURBO = TurboJPEG()
            except Exception:  # the module, or the system's libturbojpeg, is missing
                _TURBO = False
    return _TURBO or None


def jpeg_decoder() -> str:
    """``turbojpeg`` or ``opencv``: which library decodes JPEGs in this process."""
    return "turbojpeg" if _turbo() is not None else "opencv"


def _decode_jpeg_turbo(data: bytes, where: str) -> np.ndarray | None:
    """RGB uint8 from a JPEG via TurboJPEG, or None (not installed, or a JPEG it refuses: OpenCV then
    decides, and raises CorruptImage for a broken file)."""
    turbo = _turbo()
    if turbo is None or data[:2] != b"\xff\xd8":
        return None
    size = image_size(data)
    if size is None or size[0] * size[1] < TURBO_MIN_PIXELS:
        return None
    check_size(*size, where=where)
    import warnings

    try:
        from turbojpeg import TJPF_RGB

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # TurboJPEG warns on damaged data: OpenCV then decides
            img = turbo.decode(data, pixel_format=TJPF_RGB)
    except Exception:  # CMYK, damaged or truncated data: let OpenCV try and report
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.shape[:2] != (size[1], size[0]):
        return None
    return img


def decode_image(data: bytes, where: str = "") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (gray and RGBA converted); CorruptImage if not."""
    import cv2

    fast = _decode_jpeg_turbo(data, where)
    if fast is not None:
        return fast
    img = decode_raw(data, where)
    try:
        if img.dtype != np.uint8:
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
        if img.ndim == 2:
            return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        if img.shape[2] == 4:
            return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        if img.shape[2] == 1:
            return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    except cv2.error:
        raise CorruptImage(f"cannot decode image {where}: unsupported layout {img.shape}".strip()) from None


def read_bytes(path) -> bytes:
    """A file's bytes; CorruptImage (naming the path) if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CorruptImage(f"cannot read {path}: {e.strerror or e}") from None


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8; CorruptImage if unreadable."""
    return decode_image(read_bytes(path), str(path))


def check_image(data: bytes, where: str = "") -> tuple[int, int]:
    """Decode-check encoded bytes (what copying tools do before counting a file as an image);
    returns (width, height) or raises CorruptImage."""
    img = decode_raw(data, where)
    return img.shape[1], img.shape[0]


def check_output_image(path, where: str = "--out") -> str:
    """The suffix an image will be written with (``.png`` when ``path`` has none), refused in one
    line when OpenCV has no encoder for it: checked before any work, not after it."""
    import cv2

    from faceforge.errors import UserError

    suffix = os.path.splitext(os.fspath(path))[1].lower() or ".png"
    if not cv2.haveImageWriter(f"image{suffix}"):
        raise UserError(f"{where} {path}: cannot write images of type '{suffix}' "
                        "(use .png, .jpg, .bmp, .webp, .tif, ...)")
    return suffix
