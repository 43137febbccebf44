"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
