"""What a gallery row holds and how it is checked: identity ids, embeddings, model ids, matches.

Identity ids. An identity is 1-128 characters of letters and digits (any script, NFC-normalised),
underscore, space, dot and hyphen; it starts with a letter, digit or underscore and does not end
with a space. No ``/``, ``\\``, control or other punctuation: an id is never given path meaning, and
every id that can be enrolled can also be named in a URL path (``DELETE /v1/gallery/{identity}``)
without dot segments or escaping tricks. Galleries made before this rule may hold other ids; those
can still be removed (:func:`check_stored_identity`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import UserError

IDENTITY_RULE = ("1-128 characters: letters, digits, '_', ' ', '.', '-'; starting with a letter, digit "
                 "or '_', not ending with a space")
_IDENTITY_RE = re.compile(r"^\w[\w .-]{0,127}$")
_STORED_IDENTITY_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")  # the rule of older galleries


def check_identity(identity) -> str:
    """The NFC form of ``identity``, or a UserError naming the rule."""
    if isinstance(identity, str):
        identity = unicodedata.normalize("NFC", identity)
    if not isinstance(identity, str) or not _IDENTITY_RE.match(identity) or identity.endswith(" "):
        shown = identity if not isinstance(identity, str) or len(identity) <= 40 else identity[:40] + "..."
        raise UserError(f"identity {shown!r}: expected {IDENTITY_RULE}")
    return identity


def check_stored_identity(identity) -> str:
    """Looser: any id an older gallery may hold (to remove it)."""
    if isinstance(identity, str):
        identity = unicodedata.normalize("NFC", identity)
    if not isinstance(identity, str) or not _STORED_IDENTITY_RE.match(identity):
        raise UserError(f"identity {identity!r}: expected 1-256 printable characters")
    return identity


def content_hash(data: bytes) -> str:
    """The id of an enrolled image: SHA-256 of its encoded bytes (re-enrolling it adds nothing)."""
    return hashlib.sha256(data).hexdigest()


def file_content_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_id(embedder) -> str:
    """A 16-hex id of the model behind ``embedder`` (an Embedder or anything holding ``.embedder``).

    A model file is identified by its content (a copy elsewhere has the same id), plus the input
    geometry and normalisation that change what its embeddings mean.
    """
    inner = getattr(embedder, "embedder", embedder)
    meta = getattr(inner, "meta", None)
    geometry = f"flip={getattr(embedder, 'flip', 'none')}"  # a FaceAnalyzer's flip fusion
    if meta is not None:
        geometry += (f"|{tuple(meta.input_size)}|{meta.template}|{meta.mean}|{meta.std}|"
                     f"{meta.channel_order}|{meta.embedding_size}")
    source = getattr(inner, "source", None) or getattr(inner, "path", None)
    h = hashlib.sha1()
    if source and Path(source).is_file():
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(str(inner.fingerprint()).encode())
    h.update(geometry.encode())
    return h.hexdigest()[:16]


def normalize(embeddings, dim: int | None = None, where: str = "embeddings") -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise UserError(f"{where}: expected a [N, D] array with N >= 1, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise UserError(f"{where}: width {x.shape[1]} does not match the gallery's {dim}")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{where}: contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms < 1e-12):
        raise UserError(f"{where}: contains an all-zero vector")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


@dataclass
class Match:
    identity: str
    score: float  # cosine similarity, grouped per identity (max or mean of its images)
    best_score: float  # the identity's best single image
    best_source: str
    best_vector_id: int
    images: int  # the identity's images that took part in the score

    def to_dict(self) -> dict:
        return {"identity": self.identity, "score": round(self.score, 6),
                "best_score": round(self.best_score, 6), "best_source": self.best_source,
                "best_vector_id": self.best_vector_id, "images": self.images}


def group_matches(scores, ids, rows: dict, k: int, query=None, vectors_of=None) -> list[Match]:
    """The top ``k`` identities among one query's index hits (``rows``: vector id -> (identity,
    source)): each scores its best image, or with ``query`` given the exact mean cosine over all of
    its images (``vectors_of(identity)``)."""
    best: dict[str, list] = {}
    for s, i in zip(scores, ids):
        if i < 0 or int(i) not in rows:
            continue
        ident, src = rows[int(i)]
        entry = best.setdefault(ident, [float(s), src, int(i), 0])
        entry[3] += 1
    matches = []
    for ident, (bs, src, vid, count) in best.items():
        score, used = bs, count
        if query is not None:
            vecs = vectors_of(ident)
            score, used = float((vecs @ query).mean()), len(vecs)
        matches.append(Match(ident, score, bs, src, vid, used))
    matches.sort(key=lambda mt: -mt.score)
    return matches[:k]

