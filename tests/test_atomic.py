"""Atomic writes give result files the permissions of any other output (0666 minus the umask)."""

from __future__ import annotations

import os
import stat

from faceforge.atomic import atomic_write_text


def test_atomic_file_is_readable_by_group_like_other_outputs(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "verification.json", "{}\n")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "verification.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".*.tmp"))
