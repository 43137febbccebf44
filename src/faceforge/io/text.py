"""Reading the text files users give (image lists, pair lists, cards, configs, metadata): one rule.

A missing file, a folder, an unreadable file, one over the size limit and one that is not UTF-8
text are each one ``UserError`` line naming the file (and, for a bad encoding, the line and byte).
"""

from __future__ import annotations

from pathlib import Path

from faceforge.errors import UserError, clean_message

MAX_TEXT_BYTES = 256 << 20  # a list of 1M image paths is ~100 MB; anything larger is not a list


def read_text(path: str | Path, where: str | None = None, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The file's text; a one-line UserError naming ``where`` (default: the path) when it is
    missing, unreadable, larger than ``max_bytes`` or not UTF-8 (naming the line)."""
    path = Path(path)
    where = where or str(path)
    if not path.exists():
        raise UserError(f"{where}: file not found")
    if not path.is_file():
        raise UserError(f"{where}: not a file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"{where}: {size:,} bytes, more than the {max_bytes:,} a text file here may hold")
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{where}: cannot read ({clean_message(e.strerror or e)})") from None
    nul = data.find(b"\0")
    if nul >= 0:  # valid UTF-8 but binary: its "lines" would become nonsense names
        line = data[:nul].count(b"\n") + 1
        raise UserError(f"{where}: line {line}: a NUL byte at offset {nul}: a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(
            f"{where}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from None
