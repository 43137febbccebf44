"""Where a gallery's rows live: the small store interface the gallery's logic is written over.

:class:`~faceforge.deploy.gallery.Gallery` holds the logic (generations, replay, idempotent
enrolment, the model's identity, privacy on delete) and speaks SQL that SQLite and PostgreSQL
both accept (``?`` placeholders, translated by the PostgreSQL store). A store adds only what
differs between the two: connecting and creating, transactions and the write lock, vector id
allocation, bulk reads, change notification and what a removal must do to the files.

Two implementations: :class:`SQLiteStore` (a folder: ``gallery.sqlite`` plus the FAISS index
checkpoints, the embedded default) and :class:`~faceforge.deploy.gallery_postgres.PostgresStore`
(a ``postgresql://`` URL: the truth in a database several replicas share; each replica keeps its
own FAISS index in memory as derived state).

Both keep the same tables: ``meta`` (a generic key/value table: ``generation``, ``model_id``,
``dim``, ... and whatever later versions add) and ``vectors`` (one row per enrolled image).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from pathlib import Path

import numpy as np

from faceforge.deploy import gallery_index as index_files
from faceforge.errors import UserError

DB_NAME = "gallery.sqlite"
_URL_RE = re.compile(r"^postgres(ql)?://", re.IGNORECASE)

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    vector_id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    model_id TEXT NOT NULL,
    added_gen INTEGER NOT NULL,
    removed_gen INTEGER,
    added_at REAL NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_identity ON vectors(identity);
CREATE INDEX IF NOT EXISTS vectors_added ON vectors(added_gen);
CREATE INDEX IF NOT EXISTS vectors_removed ON vectors(removed_gen);
"""
_CONTENT_COLUMN = "ALTER TABLE vectors ADD COLUMN content TEXT NOT NULL DEFAULT ''"
_CONTENT_INDEX = "CREATE INDEX IF NOT EXISTS vectors_content ON vectors(identity, content)"


class GalleryUnavailable(UserError):
    """The gallery's database cannot be reached now (down, restarting, network): retry later. The
    service answers 503; nothing acknowledged is lost, and a retried enrolment adds nothing twice."""


def is_database_url(location) -> bool:
    return isinstance(location, str) and bool(_URL_RE.match(location))


def redact(url: str) -> str:
    """``url`` without its password, in the user part or the query (what messages and ``info()``
    may show); works on malformed URLs too."""
    url = re.sub(r"^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@", r"\1:***@", url, flags=re.IGNORECASE)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


class Store:
    """The interface (and its shared half). Not thread-safe: the gallery holds its lock around
    every call. ``folder`` is where index checkpoints go (None: the index lives in memory only)."""

    folder: Path | None = None
    location: str = ""
    errors: tuple[type[BaseException], ...] = ()

    # -- SQL
    def execute(self, sql: str, args=()):
        raise NotImplementedError

    def executemany(self, sql: str, rows) -> None:
        raise NotImplementedError

    def begin(self, write: bool) -> None:
        """Start a transaction: a consistent snapshot (read) or the gallery's write lock (write; the
        generation cannot move under it and idempotency checks see every committed row)."""
        raise NotImplementedError

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(*self.errors):
            self.execute("ROLLBACK")

    @contextlib.contextmanager
    def transaction(self, write: bool = False):
        self.begin(write)
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def hint(self, index: str) -> str:
        """An index hint for a query over ``vectors`` (SQLite's planner needs it), or ''."""
        return ""

    # -- rows
    def meta(self) -> dict[str, str]:
        return dict(self.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, items: dict) -> None:
        self.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         [(k, str(v)) for k, v in items.items()])

    def new_vector_ids(self, n: int) -> list[int]:
        """``n`` unused vector ids (inside the write transaction)."""
        raise NotImplementedError

    def vectors(self, sql: str, args, dim: int, chunk: int = 65536):
        """``(ids int64[n], vectors float32[n, dim])`` chunks of ``sql`` (selecting ``vector_id,
        embedding``), read without holding the whole result in memory."""
        cur = self.execute(sql, args)
        while rows := cur.fetchmany(chunk):
            yield _arrays(rows, dim)

    # -- change, removal, life
    def notify(self, generation: int) -> None:
        """Tell other processes a write committed (called inside the write transaction)."""

    def wait_for_change(self, timeout: float, stop: threading.Event) -> None:
        """Return when another process may have written, or after ``timeout`` s."""
        stop.wait(timeout)

    def after_remove(self) -> None:
        """Make removed embeddings leave the database's files."""

    def unavailable(self, e: BaseException) -> UserError:
        """The one-line error for a database error ``e``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _arrays(rows, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, vecs


class SQLiteStore(Store):
    """A gallery folder: ``gallery.sqlite`` (WAL, ``synchronous=FULL``, ``secure_delete``) and the
    index checkpoints beside it. Several processes may share it; SQLite serialises their writes."""

    errors = (sqlite3.DatabaseError,)

    def __init__(self, path: str | os.PathLike):
        self.folder = Path(path)
        self.location = str(self.folder)
        db = self.folder / DB_NAME
        if not db.is_file():
            raise UserError(f"{self.folder}: not a gallery (no {DB_NAME}; create one with "
                            "'faceforge gallery create')")
        self._db = None
        try:
            self._db = sqlite3.connect(db, timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")  # removed embeddings are zeroed, not just unlinked
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.close()
            raise self.unavailable(e) from None

    @staticmethod
    def exists(path) -> bool:
        return (Path(path) / DB_NAME).exists()

    @classmethod
    def create(cls, path, meta: dict) -> None:
        """A new gallery folder holding ``meta``; it appears complete or not at all."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: exists and is not a folder")
        if not path.exists():
            path.mkdir(parents=True, mode=0o700)
        tmp = path / f".{DB_NAME}.creating"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # SQLite keeps the mode
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.executescript(_SQLITE_SCHEMA)
            db.execute(_CONTENT_COLUMN)
            db.execute(_CONTENT_INDEX)
            db.execute("BEGIN")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
            db.execute("COMMIT")
        finally:
            db.close()
        os.replace(tmp, path / DB_NAME)
        index_files.fsync_dir(path)

    def _migrate(self) -> None:
        """Galleries made before idempotent enrolment get the ``content`` column."""
        if "content" in {r[1] for r in self._db.execute("PRAGMA table_info(vectors)")}:
            return
        with self.transaction(write=True):
            if "content" not in {r[1] for r in self._db.execute("PRAGMA table_info(vectors)")}:
                self._db.execute(_CONTENT_COLUMN)
            self._db.execute(_CONTENT_INDEX)

    def execute(self, sql: str, args=()):
        return self._db.execute(sql, args)

    def executemany(self, sql: str, rows) -> None:
        self._db.executemany(sql, rows)

    def begin(self, write: bool) -> None:
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def hint(self, index: str) -> str:
        return f"INDEXED BY {index}"

    def new_vector_ids(self, n: int) -> list[int]:
        first = self._db.execute("SELECT COALESCE(MAX(vector_id), 0) FROM vectors").fetchone()[0]
        seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='vectors'").fetchone()
        first = max(first, seq[0] if seq else 0) + 1
        return list(range(first, first + n))

    def after_remove(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # old WAL frames hold the rows too

    def unavailable(self, e: BaseException) -> UserError:
        db = self.folder / DB_NAME
        if isinstance(e, sqlite3.OperationalError):  # locked, read-only, disk full: not damage
            return UserError(f"{db}: {e}")
        return UserError(f"{db}: damaged or not a gallery database ({e}); restore it from a backup or "
                         "create a new gallery and enrol again")

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None


def store_class(location):
    """The store for ``location``: a ``postgresql://`` URL or a gallery folder."""
    if is_database_url(location):
        from faceforge.deploy.gallery_postgres import PostgresStore

        return PostgresStore
    return SQLiteStore
