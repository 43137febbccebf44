"""A face gallery: identities with several images each, searched by cosine similarity.

On disk a gallery is a folder::

    gallery.sqlite                 # the truth: identities, sources, model id, embeddings, generations
    index-<generation>-<pid>.faiss # a checkpoint of the FAISS index at that generation

Durability. SQLite (WAL, ``synchronous=FULL``) is the only thing a write must reach: every write
transaction (an enrolment batch, a removal) bumps ``meta.generation`` and stamps its rows with it
(``added_gen``; a removal sets ``removed_gen`` and keeps the row as a tombstone). The FAISS index is
derived state: it is checkpointed to ``index-<gen>-<pid>.faiss`` (temp file, fsync, rename, fsync of the
folder) and only then recorded, with its SHA-1, in ``meta`` in one transaction. Opening a gallery
loads the recorded checkpoint, verifies the checksum (a bad or missing file is rebuilt from the
embeddings in SQLite) and replays the rows added or removed after the checkpoint's generation.
A process killed at any instant therefore loses nothing already committed and never leaves an
index that disagrees with the metadata; files from an interrupted checkpoint are removed on open.

Index kinds. ``flat`` (exact inner product, ``IDMap2,Flat``) while the gallery holds at most
``ivf_threshold`` images; beyond it the next checkpoint rebuilds an ``IVF<nlist>,Flat`` index
(nlist = sqrt(N) rounded to a power of two, trained on a sample) searched with ``nprobe`` lists.
Embeddings are L2-normalised on the way in, so inner products are cosine similarities.

Models never mix: the gallery records the id of the model that made its embeddings
(:func:`model_id`) and refuses embeddings from another.

Idempotent enrolment: a row may carry the SHA-256 of its encoded image (``content``); an image
the identity already holds is not added again, so re-running an interrupted enrolment adds nothing.

Privacy: files are owner-only (0700/0600). A removal erases the rows' embeddings and sources at
once (the tombstone keeps the id; ``secure_delete`` zeroes freed bytes, the WAL is truncated) and
rewrites the checkpoint. A damaged database is a one-line UserError; a rebuilt index is kept.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.deploy import gallery_index as index_files
from faceforge.deploy.gallery_records import (
    Match,
    check_identity,
    check_stored_identity,
    group_matches,
    model_id,
    normalize,
)
from faceforge.errors import UserError

__all__ = ["Gallery", "Match", "check_identity", "model_id", "normalize", "open_gallery"]

DB_NAME = "gallery.sqlite"
FORMAT = "faceforge-gallery"
VERSION = 1
GROUPINGS = ("max", "mean")
_INDEX_RE = re.compile(r"^index-(\d{12})-\d+\.faiss$")

_SCHEMA = """
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


def _damaged(db: Path, e: sqlite3.DatabaseError) -> UserError:
    if isinstance(e, sqlite3.OperationalError):  # locked, read-only, disk full: not damage
        return UserError(f"{db}: {e}")
    return UserError(f"{db}: damaged or not a gallery database ({e}); restore it from a backup or "
                     "create a new gallery and enrol again")


def _sqlite_errors(method):
    """A damaged database found after opening is a one-line UserError too."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise _damaged(self.path / DB_NAME, e) from None
    return checked


class Gallery:
    """An open gallery folder. Thread-safe (one lock); several processes may share a folder:
    SQLite serialises their writes and each process replays the others' before reading."""

    def __init__(self, path: str | os.PathLike, *, nprobe: int | None = None):
        self.path = Path(path)
        db = self.path / DB_NAME
        if not db.is_file():
            raise UserError(
                f"{self.path}: not a gallery (no {DB_NAME}; create one with 'faceforge gallery create')")
        self._lock = threading.RLock()
        self._db = None
        try:
            self._open(db, nprobe)
        except sqlite3.DatabaseError as e:
            self._close_db()
            raise _damaged(db, e) from None
        except (KeyError, ValueError) as e:
            self._close_db()
            raise UserError(f"{db}: damaged gallery metadata ({type(e).__name__}: {e})") from None
        except BaseException:
            self._close_db()
            raise

    def _open(self, db: Path, nprobe: int | None) -> None:
        self._db = sqlite3.connect(db, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # removed embeddings are zeroed, not just unlinked
        meta = self._meta()
        if meta.get("format") != FORMAT:
            raise UserError(f"{db}: not a faceforge gallery")
        if int(meta.get("version", 0)) > VERSION:
            raise UserError(f"{db}: gallery format version {meta['version']} is newer than this faceforge")
        self.model_id = meta["model_id"]  # model_path/_sha256/_card/_card_file: deploy.gallery_model
        self.model_record = {k[6:]: v for k, v in meta.items() if k.startswith("model_") and k != "model_id"}
        self.dim = int(meta["dim"])
        self.ivf_threshold = int(meta["ivf_threshold"])
        self.nprobe = int(nprobe or meta["nprobe"])
        self.checkpoint_every = int(meta["checkpoint_every"])
        self.index = None
        self.generation = -1  # generation the in-memory index reflects
        self._checkpoint_gen = -1
        self._checkpoint_file = ""
        self.rebuilt = False  # True when opening had to rebuild the index from SQLite
        with self._lock:
            self._migrate()
            self._load()
            self._clean_files()
            if self._checkpoint_gen < 0 and self.generation > 0:
                # rebuilt from SQLite: keep the result, or every later open rebuilds again
                with contextlib.suppress(OSError, RuntimeError, sqlite3.OperationalError):  # read-only
                    self.checkpoint(force=True)

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def _migrate(self) -> None:
        """Galleries made before idempotent enrolment get the ``content`` column."""
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(vectors)")}
        if "content" not in cols:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if "content" not in {r[1] for r in self._db.execute("PRAGMA table_info(vectors)")}:
                    self._db.execute(_CONTENT_COLUMN)
                self._db.execute(_CONTENT_INDEX)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ---------------------------------------------------------------------------------- setup

    @classmethod
    def create(cls, path: str | os.PathLike, model: str, dim: int, *, ivf_threshold: int = 100_000,
               nprobe: int = 16, checkpoint_every: int = 1024, exist_ok: bool = False,
               model_record: dict | None = None) -> Gallery:
        """A new empty gallery for embeddings of width ``dim`` made by model id ``model``."""
        path = Path(path)
        if not isinstance(model, str) or not re.match(r"^[0-9A-Za-z_.:-]{1,128}$", model):
            raise UserError(f"model id {model!r}: expected 1-128 characters of [0-9A-Za-z_.:-]")
        if int(dim) < 1:
            raise UserError(f"dim: expected a positive embedding width, got {dim}")
        if ivf_threshold < 1 or nprobe < 1 or checkpoint_every < 1:
            raise UserError("ivf_threshold, nprobe and checkpoint_every must be positive")
        if (path / DB_NAME).exists():
            if exist_ok:
                g = cls(path)
                if g.model_id != model or g.dim != int(dim):
                    g.close()
                    raise UserError(f"{path}: exists with model {g.model_id} dim {g.dim}")
                return g
            raise UserError(f"{path}: a gallery already exists here")
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
            db.executescript(_SCHEMA)
            db.execute(_CONTENT_COLUMN)
            db.execute(_CONTENT_INDEX)
            rows = {"format": FORMAT, "version": VERSION, "model_id": model, "dim": int(dim),
                    "ivf_threshold": int(ivf_threshold), "nprobe": int(nprobe),
                    "checkpoint_every": int(checkpoint_every), "generation": 0, "checkpoint_gen": -1,
                    "checkpoint_sha1": "", "checkpoint_file": "", "created": time.time(),
                    **{f"model_{k}": v for k, v in (model_record or {}).items()}}
            db.execute("BEGIN")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in rows.items()])
            db.execute("COMMIT")
        finally:
            db.close()
        os.replace(tmp, path / DB_NAME)  # the gallery appears complete or not at all
        index_files.fsync_dir(path)
        return cls(path)

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            with contextlib.suppress(Exception):
                self.refresh()
                if self.generation > self._checkpoint_gen:
                    self.checkpoint()
            self._db.close()
            self._db = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- state

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _db_generation(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def _new_index(self, n: int, train: np.ndarray | None = None):
        return index_files.new_index(self.dim, n, self.ivf_threshold, train)

    def _set_params(self) -> None:
        if self.index is not None and self.kind == "ivf":
            index_files.faiss_module().extract_index_ivf(self.index).nprobe = self.nprobe

    @property
    def kind(self) -> str:
        return "flat" if self.index is None or "IDMap" in type(self.index).__name__ else "ivf"

    def _live_rows(self, where: str = "", args: tuple = (), chunk: int = 65536, hint: str = ""):
        cur = self._db.execute(
            f"SELECT vector_id, embedding FROM vectors {hint} WHERE removed_gen IS NULL {where} "
            "ORDER BY vector_id", args)
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            yield ids, vecs

    def _rebuild(self, gen: int) -> None:
        """The index of every live row, straight from SQLite (no usable checkpoint)."""
        n = self._db.execute("SELECT COUNT(*) FROM vectors WHERE removed_gen IS NULL AND added_gen <= ?",
                             (gen,)).fetchone()[0]
        train = None
        if n > self.ivf_threshold:
            rng = np.random.default_rng(0)
            take = min(n, 40 * index_files.ivf_lists(n))
            picks = np.sort(rng.choice(n, take, replace=False))
            parts, seen = [], 0
            for _, vecs in self._live_rows("AND added_gen <= ?", (gen,)):
                sel = picks[(picks >= seen) & (picks < seen + len(vecs))] - seen
                parts.append(vecs[sel])
                seen += len(vecs)
            train = np.concatenate(parts)
        index = self._new_index(n, train)
        for ids, vecs in self._live_rows("AND added_gen <= ?", (gen,)):
            index.add_with_ids(vecs, ids)
        self.index, self.generation = index, gen
        self._set_params()

    def _load(self) -> None:
        faiss = index_files.faiss_module()
        self._db.execute("BEGIN")  # one consistent snapshot of meta and rows
        try:
            meta = self._meta()
            ckpt_gen, sha = int(meta["checkpoint_gen"]), meta["checkpoint_sha1"]
            gen = int(meta["generation"])
            loaded = False
            if ckpt_gen >= 0:
                f = self.path / meta["checkpoint_file"]
                if meta["checkpoint_file"] and f.is_file() and index_files.sha1_file(f) == sha:
                    self.index, self.generation = faiss.read_index(str(f)), ckpt_gen
                    self._set_params()
                    loaded = True
            if not loaded:
                self.rebuilt = ckpt_gen >= 0
                self._rebuild(gen)
            self._checkpoint_gen = ckpt_gen if loaded else -1
            self._checkpoint_file = meta["checkpoint_file"] if loaded else ""
            self._replay(gen)
        finally:
            self._db.execute("COMMIT")

    def _replay(self, gen: int) -> None:
        """Apply rows added and removed after the index's generation, up to ``gen``."""
        g = self.generation
        if gen <= g:
            return
        gone = [r[0] for r in self._db.execute(
            "SELECT vector_id FROM vectors INDEXED BY vectors_removed "
            "WHERE removed_gen > ? AND removed_gen <= ? AND added_gen <= ?",
            (g, gen, g))]
        if gone:
            self.index.remove_ids(np.asarray(gone, dtype=np.int64))
        for ids, vecs in self._live_rows("AND added_gen > ? AND added_gen <= ?", (g, gen),
                                         hint="INDEXED BY vectors_added"):
            self.index.add_with_ids(vecs, ids)
        self.generation = gen

    def refresh(self) -> None:
        """Catch up with writes committed since (by this or another process)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                meta = self._meta()
                gen, ckpt = int(meta["generation"]), int(meta["checkpoint_gen"])
                if gen == self.generation:
                    return
                if ckpt > self.generation:  # tombstones up to ckpt may be purged: reload
                    stale = True
                else:
                    stale = False
                    self._replay(gen)
            finally:
                self._db.execute("COMMIT")
            if stale:
                self._load()

    def _clean_files(self) -> None:
        """Remove checkpoints older than the recorded one and temp files of interrupted writes."""
        ckpt = self._checkpoint_gen
        for f in self.path.iterdir():
            m = _INDEX_RE.match(f.name)
            gen = int(m.group(1)) if m else None
            if m and (gen < ckpt or (gen == ckpt and f.name != self._checkpoint_file)):
                with contextlib.suppress(OSError):
                    f.unlink()
            elif m and ckpt < 0 and gen <= self.generation and self.rebuilt:
                with contextlib.suppress(OSError):
                    f.unlink()
            elif f.name.startswith(".index-") and f.name.endswith(".tmp"):
                # a temp file of a checkpoint killed mid-write; a live writer's is younger than this
                if time.time() - f.stat().st_mtime > 60:
                    with contextlib.suppress(OSError):
                        f.unlink()

    # ---------------------------------------------------------------------------------- writes

    @_sqlite_errors
    def checkpoint(self, force: bool = False) -> Path:
        """Write the in-memory index to ``index-<gen>.faiss`` and record it (converting to IVF first
        when the gallery has outgrown ``ivf_threshold``). ``force`` also replaces a recorded
        checkpoint of the same generation (one that failed its checksum and was rebuilt)."""
        with self._lock:
            self.refresh()
            if self.kind == "flat" and self.index.ntotal > self.ivf_threshold:
                self._db.execute("BEGIN")
                try:
                    self._rebuild(self.generation)
                finally:
                    self._db.execute("COMMIT")
            gen = self.generation
            final = self.path / f"index-{gen:012d}-{os.getpid()}.faiss"
            tmp = self.path / f".index-{gen:012d}.{os.getpid()}.{threading.get_ident()}.tmp"
            sha = index_files.write_index_file(self.index, tmp, final)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                meta = self._meta()
                recorded, recorded_file = int(meta["checkpoint_gen"]), meta["checkpoint_file"]
                record = gen > recorded or (force and gen == recorded)
                if record:
                    self._db.executemany("UPDATE meta SET value=? WHERE key=?",
                                         [(str(gen), "checkpoint_gen"), (sha, "checkpoint_sha1"),
                                          (final.name, "checkpoint_file")])
                    # tombstones the checkpoint already reflects are no longer needed for replay
                    self._db.execute("DELETE FROM vectors WHERE removed_gen IS NOT NULL AND removed_gen <= ?",
                                     (gen,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if record:
                self._checkpoint_gen, self._checkpoint_file = gen, final.name
                self._clean_files()
            elif final.name != recorded_file:  # another process recorded this generation first
                with contextlib.suppress(OSError):
                    final.unlink()
            return final

    def _write(self, fn) -> int:
        """Run ``fn(new_gen)`` inside one write transaction that bumps the generation."""
        self.refresh()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            gen = self._db_generation() + 1
            result = fn(gen)
            self._db.execute("UPDATE meta SET value=? WHERE key='generation'", (str(gen),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._replay(gen)
        c = self._checkpoint_gen  # two indexed counts (an OR would scan the table)
        pending = sum(self._db.execute(f"SELECT COUNT(*) FROM vectors WHERE {col} > ?", (c,)).fetchone()[0]
                      for col in ("added_gen", "removed_gen"))
        # amortised: a checkpoint rewrites the whole index, so wait for a tenth of it to be new
        if pending >= max(self.checkpoint_every, int(self.index.ntotal) // 10):
            self.checkpoint()
        return result

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_id:
            raise UserError(
                f"{self.path}: embeddings come from model {model}, but this gallery holds model "
                f"{self.model_id}'s; models cannot be mixed (create another gallery)"
            )

    def enroll(self, identity: str, embeddings, sources: Sequence[str] | None = None,
               model: str | None = None, contents: Sequence[str] | None = None) -> list[int]:
        """Add images of one identity; returns their vector ids. All or nothing."""
        return self.enroll_many([identity] * len(np.atleast_2d(np.asarray(embeddings))), embeddings,
                                sources, model, contents)

    @_sqlite_errors
    def enroll_many(self, identities: Sequence[str], embeddings, sources: Sequence[str] | None = None,
                    model: str | None = None, contents: Sequence[str] | None = None) -> list[int]:
        """Add images (one identity per row) in one transaction; returns the new rows' vector ids.

        ``contents`` (one content hash per row, see :func:`~faceforge.deploy.gallery_records.content_hash`)
        makes enrolment idempotent: a row whose (identity, content) the gallery already holds, or
        that repeats an earlier row of the batch, is skipped (the returned list is shorter)."""
        self._check_model(model)
        x = normalize(embeddings, self.dim)
        identities = [check_identity(i) for i in identities]
        if len(identities) != len(x):
            raise UserError(f"enroll: {len(identities)} identities for {len(x)} embeddings")
        sources = [""] * len(x) if sources is None else [str(s) for s in sources]
        if len(sources) != len(x):
            raise UserError(f"enroll: {len(sources)} sources for {len(x)} embeddings")
        contents = [""] * len(x) if contents is None else [str(c) for c in contents]
        if len(contents) != len(x):
            raise UserError(f"enroll: {len(contents)} content hashes for {len(x)} embeddings")
        now = time.time()

        def insert(gen: int) -> list[int]:
            seen = set()
            for ident in set(identities):  # inside the write transaction: no race with another writer
                hashes = [c for i, c in zip(identities, contents) if i == ident and c]
                seen |= {(ident, c) for c in self._held(ident, hashes)}
            keep = []
            for k, key in enumerate(zip(identities, contents)):
                if not key[1] or key not in seen:
                    keep.append(k)
                    seen.add(key)
            first = self._db.execute("SELECT COALESCE(MAX(vector_id), 0) FROM vectors").fetchone()[0]
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='vectors'").fetchone()
            first = max(first, seq[0] if seq else 0) + 1
            ids = list(range(first, first + len(keep)))
            self._db.executemany(
                "INSERT INTO vectors (vector_id, identity, source, content, model_id, added_gen, added_at, "
                "embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((i, identities[k], sources[k], contents[k], self.model_id, gen, now, x[k].tobytes())
                 for i, k in zip(ids, keep)))
            return ids

        with self._lock:
            return self._write(insert)

    def _held(self, identity: str, contents: Sequence[str]) -> set[str]:
        held = set()
        for start in range(0, len(contents), 900):  # SQLite's bound-parameter limit
            part = list(contents[start:start + 900])
            held |= {r[0] for r in self._db.execute(
                f"SELECT content FROM vectors WHERE identity=? AND removed_gen IS NULL "
                f"AND content IN ({','.join('?' * len(part))})", [identity, *part])}
        return held

    @_sqlite_errors
    def enrolled_contents(self, identity: str, contents: Sequence[str]) -> set[str]:
        """The content hashes among ``contents`` that ``identity`` already holds."""
        with self._lock:
            return self._held(identity, [c for c in contents if c])

    @_sqlite_errors
    def remove(self, identity: str) -> int:
        """Remove every image of ``identity``; returns how many (0 when unknown). The embeddings
        leave every file of the gallery at once (module docstring, "Privacy")."""
        identity = check_stored_identity(identity)

        def mark(gen: int) -> int:
            cur = self._db.execute(
                "UPDATE vectors SET removed_gen=?, embedding=X'', source='', content='' "
                "WHERE identity=? AND removed_gen IS NULL", (gen, identity))
            return cur.rowcount

        with self._lock:
            n = self._write(mark)
            if n:
                self.checkpoint()  # the previous checkpoint file still holds the removed vectors
                with contextlib.suppress(sqlite3.OperationalError):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and so do old WAL frames
            return n

    # ---------------------------------------------------------------------------------- reads

    @_sqlite_errors
    def __len__(self) -> int:
        with self._lock:
            self.refresh()
            return int(self.index.ntotal)

    @_sqlite_errors
    def identities(self) -> list[tuple[str, int]]:
        """``(identity, number of images)`` sorted by identity."""
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT identity, COUNT(*) FROM vectors WHERE removed_gen IS NULL "
                "GROUP BY identity ORDER BY identity")]

    @_sqlite_errors
    def info(self) -> dict:
        with self._lock:
            self.refresh()
            n_ids = self._db.execute(
                "SELECT COUNT(DISTINCT identity) FROM vectors WHERE removed_gen IS NULL").fetchone()[0]
            return {"path": str(self.path), "model_id": self.model_id, "dim": self.dim, "kind": self.kind,
                    "images": int(self.index.ntotal), "identities": int(n_ids), "generation": self.generation,
                    "checkpoint_generation": self._checkpoint_gen, "ivf_threshold": self.ivf_threshold,
                    "nprobe": self.nprobe}

    @_sqlite_errors
    def vectors_of(self, identity: str) -> np.ndarray:
        with self._lock:
            rows = self._db.execute("SELECT embedding FROM vectors WHERE identity=? AND removed_gen IS NULL",
                                    (identity,)).fetchall()
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)

    @_sqlite_errors
    def search(self, queries, k: int = 5, group: str = "max", model: str | None = None,
               candidates: int | None = None) -> list[list[Match]]:
        """The top ``k`` identities for each query, best first.

        ``group="max"``: an identity scores its best image; ``"mean"``: the mean cosine over all of
        its images (computed exactly for every identity the index proposes). ``candidates`` images
        are fetched from the index per query (default ``max(8k, 64)``).
        """
        if group not in GROUPINGS:
            raise UserError(f"group '{group}': expected one of {', '.join(GROUPINGS)}")
        if int(k) < 1:
            raise UserError(f"top-k: expected a positive number, got {k}")
        self._check_model(model)
        q = normalize(queries, self.dim, "query")
        with self._lock:
            self.refresh()
            n = int(self.index.ntotal)
            if n == 0:
                return [[] for _ in range(len(q))]
            m = min(n, int(candidates or max(8 * int(k), 64)))
            scores, ids = self.index.search(q, m)
            wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
            rows = {}
            for start in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
                part = wanted[start:start + 900]
                marks = ",".join("?" * len(part))
                rows.update({r[0]: (r[1], r[2]) for r in self._db.execute(
                    f"SELECT vector_id, identity, source FROM vectors WHERE removed_gen IS NULL "
                    f"AND vector_id IN ({marks})", part)})
            return [group_matches(scores[qi], ids[qi], rows, int(k), q[qi] if group == "mean" else None,
                                  self.vectors_of) for qi in range(len(q))]


def open_gallery(path: str | os.PathLike, **options) -> Gallery:
    return Gallery(path, **options)
