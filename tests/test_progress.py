"""Progress bars are drawn on a terminal only, so redirected stderr keeps just the messages."""

from __future__ import annotations

import io

from faceforge.io.progress import progress_callback


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_and_none_in_a_pipe():
    tty, pipe = _Terminal(), io.StringIO()
    for stream in (tty, pipe):
        update = progress_callback("embed", stream=stream)
        for done in (1, 5, 10):
            update(done, 10)
    assert "embed [" in tty.getvalue() and "10/10" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_quiet_draws_nothing_even_on_a_terminal():
    tty = _Terminal()
    update = progress_callback("embed", enabled=False, stream=tty)
    update(10, 10)
    assert tty.getvalue() == ""
