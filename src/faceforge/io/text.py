"""Reading the text files users give (protocol lists, pair lists, metadata): one error rule."""

from __future__ import annotations

from pathlib import Path

from faceforge.errors import UserError


def read_text(path: str | Path, where: str | None = None) -> str:
    """The file's text; a one-line UserError naming ``where`` (default: the path) when it is
    missing, unreadable or not text."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise UserError(f"{where}: file not found")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: cannot read ({e})") from None
