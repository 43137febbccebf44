"""A face gallery: identities with several images each, searched by cosine similarity.

The gallery's logic lives here once, over a store (:mod:`faceforge.deploy.gallery_store`): a
folder (SQLite, the embedded default) or a ``postgresql://`` URL (:mod:`faceforge.deploy.gallery_postgres`,
several ``faceforge serve`` replicas sharing one database, each with its own FAISS index). Below,
the folder; a PostgreSQL gallery keeps the same tables and generations, and no index checkpoints
(each replica builds its index at start-up, then replays).

On disk a gallery folder is::

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

Replicas. Every search first catches up with the generation committed in the database, and
looks its hits up in the database before answering (a hit removed since is dropped): a search
never answers an identity whose removal was acknowledged before it started, by any process, and
finds every enrolment acknowledged before it started. With ``follow=True`` a background thread
replays other processes' writes as they commit (PostgreSQL ``NOTIFY``, else polling every
``poll_interval`` s), so searches seldom have to.

Models never mix: the gallery records the id of the model that made its embeddings
(:func:`model_id`) and refuses embeddings from another.

Idempotent enrolment: a row may carry the SHA-256 of its encoded image (``content``); an image
the identity already holds is not added again, so re-running an interrupted enrolment adds nothing.

Privacy: files are owner-only (0700/0600). A removal erases the rows' embeddings, sources, content
hashes and identity at once (the tombstone keeps only the vector id and generations;
``secure_delete`` zeroes freed bytes, the WAL is truncated) and rewrites the checkpoint. A damaged
database is a one-line UserError; a rebuilt index is kept.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
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
from faceforge.deploy.gallery_store import GalleryUnavailable, is_database_url, redact, store_class
from faceforge.errors import UserError

__all__ = ["Gallery", "GalleryUnavailable", "Match", "check_identity", "model_id", "normalize",
           "open_gallery"]

log = logging.getLogger("faceforge.gallery")

FORMAT = "faceforge-gallery"
VERSION = 1
GROUPINGS = ("max", "mean")
_INDEX_RE = re.compile(r"^index-(\d{12})-\d+\.faiss$")


def _store_errors(method):
    """A database error after opening is a one-line UserError too (damage, or the database gone)."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except self.store.errors as e:
            raise self.store.unavailable(e) from None
    return checked


class Gallery:
    """An open gallery (a folder, or a ``postgresql://`` URL). Thread-safe (one lock); several
    processes may share it: the database serialises their writes and each process replays the
    others' before reading. ``follow``: replay them in a background thread as they commit."""

    def __init__(self, path: str | os.PathLike, *, nprobe: int | None = None, follow: bool = False,
                 poll_interval: float = 1.0):
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._follower = None
        self.store = store_class(path)(path)
        self.path, self.location = self.store.folder, self.store.location
        try:
            self._open(nprobe)
        except self.store.errors as e:
            self.store.close()
            raise self.store.unavailable(e) from None
        except (KeyError, ValueError) as e:
            self.store.close()
            raise UserError(f"{self.location}: damaged gallery metadata ({type(e).__name__}: {e})") from None
        except BaseException:
            self.store.close()
            raise
        if follow:
            self.poll_interval = float(poll_interval)
            self._follower = threading.Thread(target=self._follow, name="faceforge-gallery-follow",
                                              daemon=True)
            self._follower.start()

    def _open(self, nprobe: int | None) -> None:
        meta = self.store.meta()
        if meta.get("format") != FORMAT:
            raise UserError(f"{self.location}: not a faceforge gallery")
        if int(meta.get("version", 0)) > VERSION:
            raise UserError(f"{self.location}: gallery format version {meta['version']} is newer than "
                            "this faceforge")
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
        self.rebuilt = False  # True when opening had to rebuild the index from the database
        with self._lock:
            self._load()
            self._clean_files()
            if self.path is not None and self._checkpoint_gen < 0 and self.generation > 0:
                # rebuilt from SQLite: keep the result, or every later open rebuilds again
                with contextlib.suppress(OSError, RuntimeError, *self.store.errors):  # read-only
                    self.checkpoint(force=True)

    def _follow(self) -> None:
        """Replay other processes' writes as they commit (the ``follow`` thread)."""
        while not self._stop.is_set():
            try:
                self.store.wait_for_change(self.poll_interval, self._stop)
                if not self._stop.is_set():
                    self.refresh()
            except Exception as e:  # noqa: BLE001 - the database is away: retry after the poll interval
                shown = self.store.unavailable(e) if isinstance(e, self.store.errors) else e
                log.warning("gallery follow: %s", shown)
                self._stop.wait(self.poll_interval)

    # ---------------------------------------------------------------------------------- setup

    @classmethod
    def create(cls, path: str | os.PathLike, model: str, dim: int, *, ivf_threshold: int = 100_000,
               nprobe: int = 16, checkpoint_every: int = 1024, exist_ok: bool = False,
               model_record: dict | None = None) -> Gallery:
        """A new empty gallery for embeddings of width ``dim`` made by model id ``model``, in a
        folder or a PostgreSQL database (``postgresql://...``); ``model_record``: the model's path,
        content hash and card, so that later commands need no ``--model``."""
        if not isinstance(model, str) or not re.match(r"^[0-9A-Za-z_.:-]{1,128}$", model):
            raise UserError(f"model id {model!r}: expected 1-128 characters of [0-9A-Za-z_.:-]")
        if int(dim) < 1:
            raise UserError(f"dim: expected a positive embedding width, got {dim}")
        if ivf_threshold < 1 or nprobe < 1 or checkpoint_every < 1:
            raise UserError("ivf_threshold, nprobe and checkpoint_every must be positive")
        store = store_class(path)
        location = path if is_database_url(path) else Path(path)
        if store.exists(location):
            if exist_ok:
                g = cls(location)
                if g.model_id != model or g.dim != int(dim):
                    g.close()
                    raise UserError(f"{g.location}: exists with model {g.model_id} dim {g.dim}")
                return g
            shown = location if isinstance(location, Path) else redact(location)
            raise UserError(f"{shown}: a gallery already exists here")
        store.create(location, {
            "format": FORMAT, "version": VERSION, "model_id": model, "dim": int(dim),
            "ivf_threshold": int(ivf_threshold), "nprobe": int(nprobe),
            "checkpoint_every": int(checkpoint_every),
            "generation": 0, "checkpoint_gen": -1, "checkpoint_sha1": "", "checkpoint_file": "",
            "created": time.time(),
            **{f"model_{k}": v for k, v in (model_record or {}).items()}})
        return cls(location)

    def close(self) -> None:
        if self._follower is not None:
            self._stop.set()
            self._follower.join()
            self._follower = None
        with self._lock:
            if self.store is None:
                return
            if self.path is not None:
                with contextlib.suppress(Exception):
                    self.refresh()
                    if self.generation > self._checkpoint_gen:
                        self.checkpoint()
            self.store.close()
            self.store = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- state

    def _set_params(self) -> None:
        if self.index is not None and self.kind == "ivf":
            index_files.faiss_module().extract_index_ivf(self.index).nprobe = self.nprobe

    @property
    def kind(self) -> str:
        return "flat" if self.index is None or "IDMap" in type(self.index).__name__ else "ivf"

    def _rows(self, where: str = "", args: tuple = (), hint: str = "", ordered: bool = True):
        """(ids, vectors) chunks of the live rows matching ``where``, in vector id order when
        ``ordered`` (a replay is not: ordering steers a cursor onto the primary key, a full scan)."""
        return self.store.vectors(
            f"SELECT vector_id, embedding FROM vectors {hint} WHERE removed_gen IS NULL {where}"
            + (" ORDER BY vector_id" if ordered else ""), args, self.dim)

    def _rebuild(self, gen: int) -> None:
        """The index of every live row, straight from the database (no usable checkpoint)."""
        live = "FROM vectors WHERE removed_gen IS NULL AND added_gen <= ?"
        n = self.store.execute(f"SELECT COUNT(*) {live}", (gen,)).fetchone()[0]
        train = None
        if n > self.ivf_threshold:  # train on a sample of the rows, fetched by id
            ids = [r[0] for r in self.store.execute(f"SELECT vector_id {live} ORDER BY vector_id", (gen,))]
            rng = np.random.default_rng(0)
            take = min(len(ids), 40 * index_files.ivf_lists(len(ids)))
            picks = [ids[i] for i in np.sort(rng.choice(len(ids), take, replace=False))]
            train = np.concatenate([vecs for start in range(0, len(picks), 900)  # bound-parameter limit
                                    for _, vecs in self._rows(
                                        f"AND vector_id IN ({','.join('?' * len(picks[start:start + 900]))})",
                                        tuple(picks[start:start + 900]))])
        index = index_files.new_index(self.dim, n, self.ivf_threshold, train)
        for chunk_ids, vecs in self._rows("AND added_gen <= ?", (gen,)):
            index.add_with_ids(vecs, chunk_ids)
        self.index, self.generation = index, gen
        self._set_params()

    def _load(self) -> None:
        faiss = index_files.faiss_module()
        with self.store.transaction():  # one consistent snapshot of meta and rows
            meta = self.store.meta()
            ckpt_gen, sha = int(meta["checkpoint_gen"]), meta["checkpoint_sha1"]
            gen = int(meta["generation"])
            loaded = False
            if ckpt_gen >= 0 and self.path is not None:
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

    def _replay(self, gen: int) -> None:
        """Apply rows added and removed after the index's generation, up to ``gen``. Everything is
        read first: a database error midway leaves the index as it was."""
        g = self.generation
        if gen <= g:
            return
        gone = [r[0] for r in self.store.execute(
            f"SELECT vector_id FROM vectors {self.store.hint('vectors_removed')} "
            "WHERE removed_gen > ? AND removed_gen <= ? AND added_gen <= ?", (g, gen, g))]
        added = list(self._rows("AND added_gen > ? AND added_gen <= ?", (g, gen),
                                hint=self.store.hint("vectors_added"), ordered=False))
        if gone:
            self.index.remove_ids(np.asarray(gone, dtype=np.int64))
        for ids, vecs in added:
            self.index.add_with_ids(vecs, ids)
        self.generation = gen

    def refresh(self) -> None:
        """Catch up with writes committed since (by this or another process)."""
        with self._lock:
            now = self.store.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0]
            if int(now) == self.generation:  # the common case: one query, no transaction
                return
            with self.store.transaction():
                meta = self.store.meta()
                gen, ckpt = int(meta["generation"]), int(meta["checkpoint_gen"])
                if gen == self.generation:
                    return
                # tombstones up to ckpt may be purged, or the database went back in time (restored
                # from a backup: its generations will be reused): reload
                stale = ckpt > self.generation or gen < self.generation
                if not stale:
                    self._replay(gen)
            if stale:
                self._load()
            self._outgrown()

    def _outgrown(self) -> None:
        """A database gallery has no checkpoint to convert at: past ``ivf_threshold``, every
        replica rebuilds its flat index as IVF when it replays that far."""
        if self.path is None and self.kind == "flat" and self.index.ntotal > self.ivf_threshold:
            with self.store.transaction():
                self._rebuild(self.generation)

    def _clean_files(self) -> None:
        """Remove checkpoints older than the recorded one and temp files of interrupted writes."""
        if self.path is None:
            return
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

    @_store_errors
    def checkpoint(self, force: bool = False) -> Path | None:
        """Write the in-memory index to ``index-<gen>.faiss`` and record it (converting to IVF first
        when the gallery has outgrown ``ivf_threshold``). ``force`` also replaces a recorded
        checkpoint of the same generation (one that failed its checksum and was rebuilt). A
        database gallery keeps no checkpoint (None)."""
        with self._lock:
            self.refresh()
            if self.path is None:
                return None
            if self.kind == "flat" and self.index.ntotal > self.ivf_threshold:
                with self.store.transaction():
                    self._rebuild(self.generation)
            gen = self.generation
            final = self.path / f"index-{gen:012d}-{os.getpid()}.faiss"
            tmp = self.path / f".index-{gen:012d}.{os.getpid()}.{threading.get_ident()}.tmp"
            sha = index_files.write_index_file(self.index, tmp, final)
            with self.store.transaction(write=True):
                meta = self.store.meta()
                recorded, recorded_file = int(meta["checkpoint_gen"]), meta["checkpoint_file"]
                record = gen > recorded or (force and gen == recorded)
                if record:
                    self.store.set_meta({"checkpoint_gen": gen, "checkpoint_sha1": sha,
                                         "checkpoint_file": final.name})
                    # tombstones the checkpoint already reflects are no longer needed for replay
                    self.store.execute(
                        "DELETE FROM vectors WHERE removed_gen IS NOT NULL AND removed_gen <= ?", (gen,))
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
        with self.store.transaction(write=True):
            gen = int(self.store.meta()["generation"]) + 1
            result = fn(gen)
            self.store.set_meta({"generation": gen})
            self.store.notify(gen)
        # committed: the caller gets its result even if catching up fails now (the next read will)
        with contextlib.suppress(*self.store.errors, GalleryUnavailable):
            with self.store.transaction():
                self._replay(gen)
            self._outgrown()
        if self.path is not None:
            c = self._checkpoint_gen  # two indexed counts (an OR would scan the table)
            pending = sum(self.store.execute(f"SELECT COUNT(*) FROM vectors WHERE {col} > ?",
                                             (c,)).fetchone()[0] for col in ("added_gen", "removed_gen"))
            # amortised: a checkpoint rewrites the whole index, so wait for a tenth of it to be new
            if pending >= max(self.checkpoint_every, int(self.index.ntotal) // 10):
                self.checkpoint()
        return result

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_id:
            raise UserError(
                f"{self.location}: embeddings come from model {model}, but this gallery holds model "
                f"{self.model_id}'s; models cannot be mixed (create another gallery)"
            )

    def enroll(self, identity: str, embeddings, sources: Sequence[str] | None = None,
               model: str | None = None, contents: Sequence[str] | None = None) -> list[int]:
        """Add images of one identity; returns their vector ids. All or nothing."""
        return self.enroll_many([identity] * len(np.atleast_2d(np.asarray(embeddings))), embeddings,
                                sources, model, contents)

    @_store_errors
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
            for ident in set(identities):  # under the write lock: no race with another writer
                hashes = [c for i, c in zip(identities, contents) if i == ident and c]
                seen |= {(ident, c) for c in self._held(ident, hashes)}
            keep = []
            for k, key in enumerate(zip(identities, contents)):
                if not key[1] or key not in seen:
                    keep.append(k)
                    seen.add(key)
            ids = self.store.new_vector_ids(len(keep)) if keep else []
            self.store.executemany(
                "INSERT INTO vectors (vector_id, identity, source, content, model_id, added_gen, added_at, "
                "embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(i, identities[k], sources[k], contents[k], self.model_id, gen, now, x[k].tobytes())
                 for i, k in zip(ids, keep)])
            return ids

        with self._lock:
            return self._write(insert)

    def _held(self, identity: str, contents: Sequence[str]) -> set[str]:
        held = set()
        for start in range(0, len(contents), 900):  # SQLite's bound-parameter limit
            part = list(contents[start:start + 900])
            held |= {r[0] for r in self.store.execute(
                f"SELECT content FROM vectors WHERE identity=? AND removed_gen IS NULL "
                f"AND content IN ({','.join('?' * len(part))})", [identity, *part])}
        return held

    @_store_errors
    def enrolled_contents(self, identity: str, contents: Sequence[str]) -> set[str]:
        """The content hashes among ``contents`` that ``identity`` already holds."""
        with self._lock:
            return self._held(identity, [c for c in contents if c])

    @_store_errors
    def remove(self, identity: str) -> int:
        """Remove every image of ``identity``; returns how many (0 when unknown). The embeddings
        leave the database at once (module docstring, "Privacy")."""
        identity = check_stored_identity(identity)

        def mark(gen: int) -> int:
            cur = self.store.execute(
                "UPDATE vectors SET removed_gen=?, embedding=?, source='', content='', identity='' "
                "WHERE identity=? AND removed_gen IS NULL", (gen, b"", identity))
            return cur.rowcount

        with self._lock:
            n = self._write(mark)
            if n and self.path is not None:
                self.checkpoint()  # the previous checkpoint file still holds the removed vectors
            if n:
                self.store.after_remove()
            return n

    # ---------------------------------------------------------------------------------- reads

    @_store_errors
    def __len__(self) -> int:
        with self._lock:
            self.refresh()
            return int(self.index.ntotal)

    @_store_errors
    def identities(self) -> list[tuple[str, int]]:
        """``(identity, number of images)`` sorted by identity (code point order)."""
        with self._lock:
            return sorted((r[0], int(r[1])) for r in self.store.execute(
                "SELECT identity, COUNT(*) FROM vectors WHERE removed_gen IS NULL GROUP BY identity"))

    @_store_errors
    def info(self) -> dict:
        with self._lock:
            self.refresh()
            n_ids = self.store.execute(
                "SELECT COUNT(DISTINCT identity) FROM vectors WHERE removed_gen IS NULL").fetchone()[0]
            return {"path": self.location, "model_id": self.model_id, "dim": self.dim, "kind": self.kind,
                    "images": int(self.index.ntotal), "identities": int(n_ids), "generation": self.generation,
                    "checkpoint_generation": self._checkpoint_gen, "ivf_threshold": self.ivf_threshold,
                    "nprobe": self.nprobe}

    @_store_errors
    def vectors_of(self, identity: str) -> np.ndarray:
        with self._lock:
            rows = self.store.execute(
                "SELECT embedding FROM vectors WHERE identity=? AND removed_gen IS NULL",
                (identity,)).fetchall()
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)

    @_store_errors
    def search(self, queries, k: int = 5, group: str = "max", model: str | None = None,
               candidates: int | None = None) -> list[list[Match]]:
        """The top ``k`` identities for each query, best first.

        ``group="max"``: an identity scores its best image; ``"mean"``: the mean cosine over all of
        its images (computed exactly for every identity the index proposes). ``candidates`` images
        are fetched from the index per query (default ``max(8k, 64)``). Every hit is looked up in
        the database before answering: one removed since (here or by another process) is dropped.
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
                rows.update({r[0]: (r[1], r[2]) for r in self.store.execute(
                    f"SELECT vector_id, identity, source FROM vectors WHERE removed_gen IS NULL "
                    f"AND vector_id IN ({marks})", part)})
            return [group_matches(scores[qi], ids[qi], rows, int(k), q[qi] if group == "mean" else None,
                                  self.vectors_of) for qi in range(len(q))]


def open_gallery(path: str | os.PathLike, **options) -> Gallery:
    return Gallery(path, **options)


def gallery_exists(location: str | os.PathLike) -> bool:
    """Whether ``location`` (a folder or a ``postgresql://`` URL) holds a gallery."""
    return store_class(location).exists(location if is_database_url(location) else Path(location))
