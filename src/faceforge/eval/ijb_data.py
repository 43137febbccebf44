"""Reading an IJB-B / IJB-C tree in the layout of InsightFace's IJB evaluation package.

``ijbc:ROOT`` (or ``ijbb:ROOT``) names a folder holding::

    meta/ijbc_face_tid_mid.txt         image template_id media_id          (one row per face)
    meta/ijbc_name_5pts_score.txt      image x1 y1 ... x5 y5 detector_score (same rows, same order)
    meta/ijbc_template_pair_label.txt  template_1 template_2 label(0/1)     (1:1 protocol)
    meta/ijbc_1N_gallery_G1.csv, ..._G2.csv, ..._1N_probe_mixed.csv        (1:N, optional)
    loose_crop/<image>

IJB-B uses ``ijbb_`` names and galleries ``S1``/``S2``. InsightFace's ``ijb_11.py`` reads row i of
``face_tid_mid`` and row i of ``name_5pts_score`` as the same face; here that is checked, not
assumed. Every mistake (a malformed line, a missing image, a template id used by a pair but owning
no face, a template with two subjects) is a one-line :class:`UserError` naming file and line.

The pair file of IJB-C has 15.7 million lines, so whole-file numeric parsing is vectorised
(``np.fromstring``); only when that fails is the file walked line by line to name the bad line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceforge.errors import UserError
from faceforge.io.images import CorruptImage
from faceforge.io.text import read_text

KINDS = ("ijbb", "ijbc")
GALLERIES = {"ijbb": ("S1", "S2"), "ijbc": ("G1", "G2")}
OPTIONS = {"weight": ("detector", "none"), "norm": ("keep", "unit")}


@dataclass
class IJBSet:
    """Faces of one IJB tree (row i = one face) and its 1:1 template pairs."""

    kind: str
    root: Path
    images: list[str]
    templates: np.ndarray  # int64 [N]
    medias: np.ndarray  # int64 [N]
    landmarks: np.ndarray  # float64 [N, 5, 2], in loose-crop pixels
    scores: np.ndarray  # float64 [N], detector (faceness) score
    pairs: np.ndarray | None = None  # int64 [P, 2] template ids
    labels: np.ndarray | None = None  # bool [P]
    options: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def spec(self) -> str:
        """A cache key part: the tree and the size + mtime of its face list."""
        st = self.meta_path("name_5pts_score.txt").stat()
        return f"{self.kind}:{self.root.resolve()}:{st.st_size}:{st.st_mtime_ns}:arcface112"

    def meta_path(self, suffix: str) -> Path:
        return self.root / "meta" / f"{self.kind}_{suffix}"

    def read(self, i: int) -> np.ndarray:
        """Face i aligned to the ArcFace 112x112 template with its given five points (no
        detection), black outside the loose crop, as InsightFace's ``ijb_11.py`` warps it."""
        from faceforge.align.transform import DegeneratePoints, warp_face
        from faceforge.io.images import read_image

        img = read_image(self.root / "loose_crop" / self.images[i])
        try:
            return warp_face(img, self.landmarks[i], "arcface", (112, 112))
        except DegeneratePoints as e:
            raise CorruptImage(f"{self.images[i]}: {e}") from None


# --------------------------------------------------------------------------------------------
# source strings


def parse_source(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``ijbc:ROOT[,weight=detector|none][,norm=keep|unit]`` -> (kind, root, options)."""
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in KINDS:
        raise UserError(f"--data '{spec}': expected ijbb:ROOT or ijbc:ROOT")
    path, *opts = rest.split(",")
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or key not in OPTIONS:
            raise UserError(f"--data '{spec}': unknown option '{opt}'; valid: weight=, norm=")
        if value not in OPTIONS[key]:
            raise UserError(f"--data '{spec}': {key}= expects one of {', '.join(OPTIONS[key])}")
        options[key] = value
    root = Path(path).expanduser()
    if not (root / "meta").is_dir() and (root / kind.upper() / "meta").is_dir():
        root = root / kind.upper()  # the package's top folder (IJB_root/IJBC/meta) works too
    if not (root / "meta").is_dir():
        raise UserError(f"{root}: no meta/ folder (expected the {kind.upper()} folder of the IJB package)")
    return kind, root, options


# --------------------------------------------------------------------------------------------
# line-level parsing


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _lines(path: Path, where: str) -> list[str]:
    lines = read_text(path, where).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UserError(f"{where}: the file is empty")
    return lines


def _number(token: str, kind: type, where: str, line: int, what: str):
    try:
        value = kind(token)
    except ValueError:
        raise UserError(
            f"{where}: line {line}: {what} '{token}' is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if kind is float and not np.isfinite(value):
        raise UserError(f"{where}: line {line}: {what} '{token}' is not finite")
    return value


def _named_rows(path: Path, where: str, columns: list[tuple[str, type]]) -> tuple[list[str], np.ndarray]:
    """Rows ``name v1 .. vk`` (whitespace separated): the names and a float64 [N, k] array."""
    lines = _lines(path, where)
    names, rests = [], []
    for line in lines:
        name, *rest = line.split(None, 1) or [""]
        names.append(name)
        rests.append(rest[0] if rest else "")
    k = len(columns)
    values = _fromstring(" ".join(rests), np.float64)
    ok = values is not None and values.size == k * len(lines) and bool(np.all(np.isfinite(values)))
    if ok:
        values = values.reshape(len(lines), k)
        ints = [j for j, (_, kind) in enumerate(columns) if kind is int]
        ok = not ints or bool(np.all(values[:, ints] == np.round(values[:, ints])))
    if not ok:
        _locate_bad_row(lines, where, [("image", str), *columns])
        raise UserError(f"{where}: malformed numbers")  # unreachable unless numpy disagrees
    return names, values


MAX_VALUE = 1e6  # points are loose-crop pixels and scores detector confidences: larger is damage


def _check_range(values: np.ndarray, where: str, columns: list[str], limit: float) -> None:
    """Finite values can still be absurd (a coordinate of 1e300 overflows the alignment): the first
    one beyond +-``limit`` is an error naming its line and column."""
    bad = np.abs(values) > limit
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise UserError(f"{where}: line {row + 1}: {columns[col]} {values[row, col]:g} is out of range "
                        f"(at most {limit:g} in magnitude)")


def _locate_bad_row(lines: list[str], where: str, columns: list[tuple[str, type]]) -> None:
    """Walk the lines and raise for the first one that does not parse (the slow, exact path)."""
    spec = " ".join(name for name, _ in columns)
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) != len(columns):
            raise UserError(f"{where}: line {n}: expected {len(columns)} fields ({spec}), got {len(fields)}")
        for token, (what, kind) in zip(fields, columns, strict=True):
            if kind is not str:
                _number(token, kind, where, n, what)


def _int_table(path: Path, where: str, columns: list[str]) -> np.ndarray:
    """A file of whitespace-separated integers, ``len(columns)`` per line: int64 [N, k]."""
    if not path.is_file():
        raise UserError(f"{where}: file not found")
    body = path.read_bytes().decode("ascii", errors="replace").rstrip()
    if not body:
        raise UserError(f"{where}: the file is empty")
    n_lines = body.count("\n") + 1
    values = _fromstring(body, np.int64)
    k = len(columns)
    if values is None or values.size != k * n_lines:
        _locate_bad_row(_lines(path, where), where, [(c, int) for c in columns])
        raise UserError(f"{where}: malformed")  # unreachable unless numpy and Python disagree
    return values.reshape(n_lines, k)


def _fromstring(text: str, dtype) -> np.ndarray | None:
    """All whitespace-separated numbers of ``text``, or None when one does not parse."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (and stops early) on a bad token
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


# --------------------------------------------------------------------------------------------
# the tree


def _check_images(root: Path, names: list[str], where: str) -> None:
    folder = root / "loose_crop"
    if not folder.is_dir():
        raise UserError(f"{folder}: no loose_crop/ folder")
    present = set(os.listdir(folder))
    for n, name in enumerate(names, 1):
        if name not in present and not (folder / name).is_file():
            raise UserError(f"{where}: line {n}: image loose_crop/{name} not found")


def open_ijb(spec: str, pairs: bool = True) -> IJBSet:
    """Read and check an IJB tree (see the module docstring); ``pairs=False`` skips the 1:1 list."""
    kind, root, options = parse_source(spec)
    tid_path = root / "meta" / f"{kind}_face_tid_mid.txt"
    pts_path = root / "meta" / f"{kind}_name_5pts_score.txt"
    tid_where, pts_where = _rel(tid_path, root), _rel(pts_path, root)
    tid_names, tid = _named_rows(tid_path, tid_where, [("template_id", int), ("media_id", int)])
    pts_cols = [(f"{a}{i}", float) for i in range(1, 6) for a in "xy"] + [("score", float)]
    pts_names, pts = _named_rows(pts_path, pts_where, pts_cols)
    _check_range(tid, tid_where, [name for name, _ in [("template_id", int), ("media_id", int)]], 2.0**53)
    _check_range(pts, pts_where, [name for name, _ in pts_cols], MAX_VALUE)
    if len(tid_names) != len(pts_names):
        raise UserError(
            f"{pts_where}: {len(pts_names)} lines but {tid_where} has {len(tid_names)} "
            "(one row per face in both)"
        )
    if tid_names != pts_names:
        n = next(i for i, (a, b) in enumerate(zip(tid_names, pts_names, strict=True)) if a != b) + 1
        raise UserError(
            f"{pts_where}: line {n}: image '{pts_names[n - 1]}' "
            f"but {tid_where} line {n} has '{tid_names[n - 1]}'"
        )
    _check_images(root, pts_names, pts_where)
    ijb = IJBSet(
        kind=kind,
        root=root,
        images=pts_names,
        templates=tid[:, 0].astype(np.int64),
        medias=tid[:, 1].astype(np.int64),
        landmarks=pts[:, :10].reshape(-1, 5, 2).copy(),
        scores=pts[:, 10].copy(),
        options=options,
    )
    if pairs:
        ijb.pairs, ijb.labels = read_pairs(ijb)
    return ijb


def _unknown_template(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Boolean mask of ``ids`` that are not in the sorted unique array ``known``."""
    pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
    return known[pos] != ids


def _tid_file(ijb: IJBSet) -> str:
    return _rel(ijb.meta_path("face_tid_mid.txt"), ijb.root)


def read_pairs(ijb: IJBSet) -> tuple[np.ndarray, np.ndarray]:
    """The 1:1 template pairs [P, 2] and labels, checked against the faces' template ids."""
    path = ijb.meta_path("template_pair_label.txt")
    where = _rel(path, ijb.root)
    table = _int_table(path, where, ["template_1", "template_2", "label"])
    bad = np.nonzero((table[:, 2] != 0) & (table[:, 2] != 1))[0]
    if bad.size:
        raise UserError(f"{where}: line {bad[0] + 1}: label {table[bad[0], 2]} is not 0 or 1")
    known = np.unique(ijb.templates)
    missing = _unknown_template(table[:, :2].ravel(), known).reshape(-1, 2)
    if missing.any():
        row, col = np.argwhere(missing)[0]
        raise UserError(
            f"{where}: line {row + 1}: template {table[row, col]} has no face in {_tid_file(ijb)}"
        )
    if not table[:, 2].any() or table[:, 2].all():
        raise UserError(f"{where}: needs both genuine (1) and impostor (0) pairs")
    return table[:, :2].copy(), table[:, 2].astype(bool)


def read_template_subjects(ijb: IJBSet, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A 1:N CSV (header, then TEMPLATE_ID,SUBJECT_ID,...; one row per face): the unique template
    ids (sorted) and the subject of each. A template listed with two subjects is an error."""
    path = ijb.meta_path(f"1N_{name}.csv")
    where = _rel(path, ijb.root)
    lines = _lines(path, where)[1:]  # the header names the columns
    if not lines:
        raise UserError(f"{where}: no rows after the header")
    t = np.zeros(len(lines), np.int64)
    s = np.zeros(len(lines), np.int64)
    for n, line in enumerate(lines, 2):
        fields = line.split(",")
        if len(fields) < 2:
            raise UserError(f"{where}: line {n}: expected TEMPLATE_ID,SUBJECT_ID,... got '{line.strip()}'")
        t[n - 2] = _number(fields[0].strip(), int, where, n, "TEMPLATE_ID")
        s[n - 2] = _number(fields[1].strip(), int, where, n, "SUBJECT_ID")
    tids, first, inverse = np.unique(t, return_index=True, return_inverse=True)
    clash = np.nonzero(s != s[first][inverse])[0]
    if clash.size:
        i = clash[0]
        raise UserError(
            f"{where}: line {i + 2}: template {t[i]} has subject {s[i]} "
            f"but line {first[inverse[i]] + 2} says {s[first[inverse[i]]]}"
        )
    missing = _unknown_template(tids, np.unique(ijb.templates))
    if missing.any():
        i = int(np.nonzero(t == tids[np.argmax(missing)])[0][0])
        raise UserError(f"{where}: line {i + 2}: template {t[i]} has no face in {_tid_file(ijb)}")
    return tids, s[first]
