"""A real, throw-away PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temp folder, on a
free loopback port, run as an unprivileged user when the tests run as root (initdb refuses root).

Used by the ``postgres`` fixture in ``conftest.py``; skips with the reason when the server binaries
or psycopg are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "postgres"  # the unprivileged account the server runs as under root


def server_bindir() -> Path | None:
    """The folder holding ``initdb``/``pg_ctl``/``postgres`` (newest PostgreSQL), or None."""
    found = [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                                            key=lambda p: int(Path(p).parts[-3]))]
    if shutil.which("initdb"):
        found.append(Path(shutil.which("initdb")).resolve().parent)
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()`` a cluster, ``url(db)``, ``restart()``, ``stop()``; the data folder is removed."""

    def __init__(self, bindir: Path, fsync: bool = False):
        self.bindir, self.fsync = bindir, fsync
        self.root = Path(tempfile.mkdtemp(prefix="faceforge-pg-"))  # /tmp: reachable by the server user
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam(USER)  # KeyError when the account is missing
            self.as_user = ["runuser", "-u", USER, "--"]
            shutil.chown(self.root, USER)
        self._databases = 0

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [*self.as_user, str(self.bindir / args[0]), *args[1:]]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                  "-E", "UTF8", "--locale", "C")
        self._start()
        return self

    def resume(self) -> None:
        """Start the stopped server again (same data, same port)."""
        self._start()

    def _start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=100 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (fast: connections are cut), stay down ``down_s`` seconds, start again."""
        self.stop()
        time.sleep(down_s)
        self._start()

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh empty database's URL (one per test: galleries do not see each other)."""
        import psycopg

        self._databases += 1
        name = f"g{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_or_skip() -> PostgresServer:
    import pytest

    pytest.importorskip("psycopg", reason="PostgreSQL galleries need psycopg (faceforge[postgres])")
    bindir = server_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    try:
        server = PostgresServer(bindir)
    except KeyError:
        pytest.skip(f"running as root and no '{USER}' account to run the PostgreSQL server as")
    try:
        return server.start()
    except BaseException:
        server.close()
        raise
