"""Verification pair lists: LFW ``pairs.txt``, CALFW/CPLFW lists, FaceX-Zoo lists, InsightFace ``.bin``.

A pair source is a string parsed in one place (:func:`open_pairs`)::

    pairs:PAIRS_FILE[,root=DIR][,ext=jpg]   LFW layout; images <root>/<name>/<name>_<n:04d>.<ext>
    calfw:LIST[,root=DIR]                   CALFW/CPLFW: two lines "path label" per pair
    facex:LIST[,root=DIR]                   FaceX-Zoo style: "path1 path2 label" per line
    bin:FILE.bin                            InsightFace: pickle of (list of JPEG bytes, issame)

``root`` defaults to the list's folder. Every source gives a :class:`PairSet`: the distinct images
once each (a path or encoded bytes), pairs as indices into them, same/different labels and, where
the protocol defines them, explicit folds.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import UserError, closest
from faceforge.io.images import decode_image, read_image
from faceforge.io.text import read_text


@dataclass
class PairSet:
    """Images (``Path`` or encoded ``bytes``), ``pairs`` [N, 2] indices, ``issame`` [N] bool,
    ``folds`` [N] fold ids or None (contiguous 10-fold split), and a ``name`` for reports."""

    images: list
    pairs: np.ndarray
    issame: np.ndarray
    folds: np.ndarray | None = None
    name: str = ""

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as RGB uint8; raises ``CorruptImage`` if it cannot be read."""
        item = self.images[index]
        if isinstance(item, (bytes, bytearray)):
            return decode_image(bytes(item), f"{self.name}[{index}]")
        return read_image(item)

    def select(self, keep: np.ndarray) -> PairSet:
        """The pairs where ``keep`` is True (images are kept as they are)."""
        keep = np.asarray(keep, dtype=bool)
        folds = None if self.folds is None else self.folds[keep]
        return PairSet(self.images, self.pairs[keep], self.issame[keep], folds, self.name)


def _build(entries: list[tuple[object, object, bool]], name: str, folds=None) -> PairSet:
    """PairSet from (image1, image2, same) with duplicate images listed once."""
    index: dict[object, int] = {}
    images: list = []

    def idx(item) -> int:
        if item not in index:
            index[item] = len(images)
            images.append(item)
        return index[item]

    pairs = np.array([[idx(a), idx(b)] for a, b, _ in entries], dtype=np.int64).reshape(-1, 2)
    issame = np.array([s for _, _, s in entries], dtype=bool)
    if folds is not None:
        folds = np.asarray(folds, dtype=np.int64)
    return PairSet(images, pairs, issame, folds, name)


def _lines(path: Path) -> list[tuple[int, str]]:
    text = read_text(path, f"pairs file {path}")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _int(text: str, path: Path, lineno: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{path}:{lineno}: {what} '{text}' is not an integer") from None


# --------------------------------------------------------------------------------------------
# LFW pairs.txt


def lfw_image_path(root: Path, name: str, number: int, ext: str = "jpg") -> Path:
    return root / name / f"{name}_{number:04d}.{ext}"


def parse_lfw_pairs(path: str | Path, root: str | Path | None = None, ext: str = "jpg") -> PairSet:
    """LFW ``pairs.txt``: header ``folds n`` (or ``n`` = one set), then per fold ``n`` lines
    ``name n1 n2`` (same) and ``n`` lines ``name1 n1 name2 n2`` (different)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines = _lines(path)
    if not lines:
        raise UserError(f"{path}: empty pairs file")
    lineno, header = lines[0]
    head = header.split()
    if len(head) == 1:
        n_sets, per_set = 1, _int(head[0], path, lineno, "header")
    elif len(head) == 2:
        n_sets, per_set = (_int(h, path, lineno, "header") for h in head)
    else:
        raise UserError(f"{path}:{lineno}: header must be 'folds n' or 'n', got '{header}'")
    entries = []
    folds = []
    for i, (lineno, line) in enumerate(lines[1:]):
        parts = line.split()
        if len(parts) == 3:
            name, a, b = parts
            p1 = lfw_image_path(root, name, _int(a, path, lineno, "image number"), ext)
            p2 = lfw_image_path(root, name, _int(b, path, lineno, "image number"), ext)
            entries.append((p1, p2, True))
        elif len(parts) == 4:
            n1, a, n2, b = parts
            p1 = lfw_image_path(root, n1, _int(a, path, lineno, "image number"), ext)
            p2 = lfw_image_path(root, n2, _int(b, path, lineno, "image number"), ext)
            entries.append((p1, p2, False))
        else:
            raise UserError(f"{path}:{lineno}: expected 'name n1 n2' or 'name1 n1 name2 n2', got '{line}'")
        folds.append(i // (2 * per_set) if per_set else 0)
    expected = n_sets * 2 * per_set
    if len(entries) != expected:
        raise UserError(
            f"{path}: header says {n_sets} x (2 x {per_set}) = {expected} pairs, file lists {len(entries)}"
        )
    return _build(entries, path.stem, folds if n_sets > 1 else None)


# --------------------------------------------------------------------------------------------
# CALFW / CPLFW and FaceX-Zoo lists


def balanced_folds(issame: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Fold ids that split the same pairs and the different pairs each into ``n_folds`` contiguous
    chunks (in list order; the first chunks one larger), so fold k holds chunk k of both."""
    issame = np.asarray(issame, dtype=bool)
    folds = np.empty(issame.shape[0], dtype=np.int64)
    for cls in (True, False):
        where = np.nonzero(issame == cls)[0]
        for k, chunk in enumerate(np.array_split(where, n_folds)):
            folds[chunk] = k
    return folds


def _regroup(entries: list, folds: np.ndarray, name: str) -> PairSet:
    """Order pairs fold by fold (same pairs first within a fold) and keep the fold ids."""
    issame = np.array([s for _, _, s in entries], dtype=bool)
    order = np.lexsort((~issame, folds))  # stable: list order kept within each group
    return _build([entries[i] for i in order], name, folds[order])


def parse_calfw(path: str | Path, root: str | Path | None = None, n_folds: int = 10) -> PairSet:
    """CALFW/CPLFW list: two lines ``path label`` per pair, label 0 = different pair. The official
    lists give all same pairs, then all different ones; they are regrouped into ``n_folds`` folds of
    equal parts of both (10 x (300 + 300) for the 6000-pair lists)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines = _lines(path)
    if len(lines) % 2:
        raise UserError(f"{path}:{lines[-1][0]}: odd number of lines; pairs take two lines each")
    entries = []
    for (n1, l1), (n2, l2) in zip(lines[0::2], lines[1::2], strict=True):
        items = []
        for lineno, line in ((n1, l1), (n2, l2)):
            parts = line.split()
            if len(parts) != 2:
                raise UserError(f"{path}:{lineno}: expected 'path label', got '{line}'")
            items.append((parts[0], _int(parts[1], path, lineno, "label")))
        (a, la), (b, lb) = items
        if (la == 0) != (lb == 0):
            raise UserError(f"{path}:{n2}: labels {la} and {lb} of one pair disagree (0 = different)")
        entries.append((root / a, root / b, la != 0))
    if not entries:
        raise UserError(f"{path}: empty pairs file")
    issame = np.array([s for _, _, s in entries], dtype=bool)
    if min(issame.sum(), (~issame).sum()) < n_folds:
        raise UserError(f"{path}: needs at least {n_folds} same and {n_folds} different pairs")
    return _regroup(entries, balanced_folds(issame, n_folds), path.stem)


def parse_facex(path: str | Path, root: str | Path | None = None) -> PairSet:
    """FaceX-Zoo style list: ``path1 path2 label`` per line (label 1 = same, 0 = different)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    entries = []
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) != 3:
            raise UserError(f"{path}:{lineno}: expected 'path1 path2 label', got '{line}'")
        label = _int(parts[2], path, lineno, "label")
        if label not in (0, 1):
            raise UserError(f"{path}:{lineno}: label must be 0 or 1, got {label}")
        entries.append((root / parts[0], root / parts[1], label == 1))
    if not entries:
        raise UserError(f"{path}: empty pairs file")
    return _build(entries, path.stem)


# --------------------------------------------------------------------------------------------
# InsightFace .bin


# What an InsightFace .bin may hold: bytes (Python 2 str read as bytes, or bytes pickled by
# Python 3 through _codecs.encode), numpy uint8 arrays (InsightFace's own small_lfw.bin: numpy's
# array reconstructor, ndarray and dtype) and bool lists. Anything else (os.system, eval, ...) is
# refused before it is called.
_BIN_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"), ("builtins", "bytes"), ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
}


class _BinUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _BIN_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (not data)")
        return super().find_class(module, name)


def _bin_image(item, path: Path, i: int) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray) or (isinstance(item, np.ndarray) and item.dtype == np.uint8):
        return bytes(item)
    raise UserError(f"{path}: image {i} is a {type(item).__name__}, expected encoded bytes")


def read_bin(path: str | Path) -> PairSet:
    """InsightFace verification ``.bin``: a pickle of (list of encoded images, issame list);
    pair i is images 2i and 2i+1. Read with a restricted unpickler: only data, never code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"verification .bin not found: {path}")
    try:
        with open(path, "rb") as f:
            # encoding="bytes": written by Python 2 for LFW & co.
            bins, issame = _BinUnpickler(f, encoding="bytes").load()
        bins = [_bin_image(b, path, i) for i, b in enumerate(bins)]
        issame = [bool(s) if isinstance(s, (bool, np.bool_, int, np.integer)) else None for s in issame]
    except UserError:
        raise
    except Exception as e:  # truncated, not a pickle, code inside, wrong structure
        reason = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"{path}: not an InsightFace verification .bin ({type(e).__name__}: {reason})"
        ) from None
    if None in issame:
        raise UserError(f"{path}: the issame list must hold booleans")
    issame = np.asarray(issame, dtype=bool)
    if len(bins) != 2 * issame.shape[0]:
        raise UserError(f"{path}: {len(bins)} images for {issame.shape[0]} pairs (expected twice as many)")
    pairs = np.arange(len(bins), dtype=np.int64).reshape(-1, 2)
    return PairSet(bins, pairs, issame, None, path.stem)


def write_bin(path: str | Path, images: list[bytes], issame) -> None:
    """Write an InsightFace-style ``.bin`` (encoded images, pair i = 2i, 2i+1) atomically."""
    from faceforge.atomic import atomic_open

    issame = [bool(s) for s in issame]
    if len(images) != 2 * len(issame):
        raise UserError(f"{path}: {len(images)} images for {len(issame)} pairs")
    with atomic_open(path, "wb") as f:
        pickle.dump(([bytes(b) for b in images], issame), f, protocol=4)


def pairset_to_bin(pairs: PairSet, path: str | Path) -> None:
    """Convert any pair set to ``.bin`` (image files are stored as their encoded bytes)."""
    images = []
    for a, b in pairs.pairs:
        for i in (a, b):
            item = pairs.images[i]
            images.append(item if isinstance(item, bytes) else Path(item).read_bytes())
    write_bin(path, images, pairs.issame)


# --------------------------------------------------------------------------------------------
# source strings

_PREFIXES = ("pairs", "calfw", "facex", "bin")


def _options(spec: str, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    path, *rest = spec.split(",")
    opts = {}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            raise UserError(
                f"pair source option '{item}': expected one of {', '.join(k + '=...' for k in allowed)}"
            )
        opts[key] = value
    if not path:
        raise UserError("pair source: missing file path")
    return path, opts


def check_root(pairs: PairSet, spec: str, root_given: bool, layout: str, check: bool = True) -> PairSet:
    """A one-line error when no image of the list exists (usually a missing or wrong ``root=``),
    with the path looked for and the hint; some missing images are only counted later."""
    paths = [p for p in pairs.images if isinstance(p, Path)]
    if not check or not paths or any(p.exists() for p in paths):
        return pairs
    why = "the root given" if root_given else "the list's own folder (the default root)"
    raise UserError(f"pair source '{spec}': no image found, e.g. {paths[0]} (looked under {why}); "
                    f"add ',root=DIR' with DIR holding {layout}")


def open_pairs(spec: str, check_images: bool = False) -> PairSet:
    """Open a pair source string (see the module docstring). ``check_images``: fail with a hint
    about ``root=`` when none of the listed images exists (evaluation does; parsing alone not)."""
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in _PREFIXES:
        if not sep and spec.endswith(".bin"):
            prefix, rest = "bin", spec
        else:
            hint = closest(prefix, _PREFIXES) if sep else "valid: " + ", ".join(f"{p}:..." for p in _PREFIXES)
            raise UserError(f"pair source '{spec}': unknown prefix; {hint}")
    if prefix == "bin":
        path, _ = _options(rest, ())
        return read_bin(path)
    if prefix == "pairs":
        path, opts = _options(rest, ("root", "ext"))
        return check_root(parse_lfw_pairs(path, opts.get("root"), opts.get("ext", "jpg")), spec,
                          "root" in opts, f"<name>/<name>_0001.{opts.get('ext', 'jpg')}", check_images)
    path, opts = _options(rest, ("root",))
    parse = parse_calfw if prefix == "calfw" else parse_facex
    return check_root(parse(path, opts.get("root")), spec, "root" in opts, "the listed paths", check_images)
