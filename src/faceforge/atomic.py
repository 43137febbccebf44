"""Atomic file writes: write to a temporary file beside the target, fsync, rename.

A temporary file is named ``.<target name>.<pid>.<random>.fftmp``, so a writer killed with
``kill -9`` leaves something recognisable: the next atomic write into the same folder (or an
explicit :func:`sweep_stale_temps` at the start of a run) removes temporaries whose process is gone.
Temporaries of live processes are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".fftmp"
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.fftmp$")
_swept: set[str] = set()  # folders already swept by this process


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` owned by this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temporaries of dead writers in ``folder`` (not recursive); returns how many."""
    folder = Path(folder)
    _swept.add(str(folder))
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing or unreadable folder: nothing to sweep
        return 0
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):  # another process may have swept it first
            if entry.is_dir(follow_symlinks=False):
                continue
            os.unlink(entry.path)
            removed += 1
    return removed


def _umask() -> int:
    """The process umask; read from /proc where possible, since setting it to read it races threads."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path.parent) not in _swept:
        sweep_stale_temps(path.parent)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        # mkstemp makes the file 0600; a result file gets the mode any other output would (0666 - umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is the old file or the whole new one, never half."""
    import shutil

    with open(src, "rb") as f, atomic_open(dst, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 20)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
