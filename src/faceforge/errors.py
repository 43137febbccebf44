"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# CSI sequences (colours, cursor moves), OSC strings (titles, links), other escapes, control bytes
_TERMINAL_CODES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]"
)


class UserError(Exception):
    """A mistake in what the user asked for (a path, a name, a value).

    The CLI prints ``faceforge: error: <message>`` and exits with status 2.
    """


def closest(name: str, choices: Iterable[str]) -> str:
    """A ``did you mean`` suffix naming the closest valid choice, or the list of choices."""
    choices = sorted(choices)
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if match:
        return f"did you mean '{match[0]}'?"
    shown = ", ".join(choices[:30]) + (", ..." if len(choices) > 30 else "")
    return f"valid: {shown}"


def clean_message(message: object, limit: int = 300) -> str:
    """A third-party message made safe for one error line: terminal escape codes (colours, cursor
    moves, OSC titles) and control characters removed, whitespace runs folded, cut at ``limit``."""
    text = _TERMINAL_CODES.sub("", str(message))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """One ``faceforge: warning: ...`` line on stderr, once per message per process (a thing
    that still works but deserves a word, e.g. an old file format loaded without a check)."""
    import sys

    if message not in _WARNED:
        _WARNED.add(message)
        print(f"faceforge: warning: {clean_message(message, 4000)}", file=sys.stderr)
