"""Detect and align every image of an identity-folder tree (``SRC/<identity>/<image>``).

``align_folder`` writes ``DST/<identity>/<image>`` crops aligned to a 5-point template. It is
resumable (an image whose output exists is skipped), never writes inside its source, and records
every image that is not a clean single-face alignment in ``DST/align_report.csv``, with a summary
in ``DST/align_summary.json``. Work is spread over processes, each with its own detector session
running one intra-op thread.

Crash safety: every finished image is appended at once to ``DST/.align_journal.jsonl`` (one JSON
line, flushed), and the report and summary are rebuilt from the journal, every
``SAVE_EVERY`` images and at the end. A run killed with ``kill -9`` loses at most the line being
written; the next run sweeps the killed writer's temporary crops, skips finished outputs, and its
report covers the images of both runs (``all_runs`` in the summary counts them).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from faceforge.align.select import MULTI_POLICIES, centre_points, check_fallback, pick_faces
from faceforge.errors import UserError
from faceforge.io.folders import check_output_tree, output_name
from faceforge.io.progress import Progress

REPORT_NAME = "align_report.csv"
SUMMARY_NAME = "align_summary.json"
JOURNAL_NAME = ".align_journal.jsonl"
SAVE_EVERY = 200  # images between rewrites of the report and summary during a run
DETECT_BATCH = 8  # images a worker reads and detects together (equal sizes share one forward pass)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"112x96"`` -> (112, 96) as (H, W); ``"112"`` -> (112, 112); None keeps the template's size."""
    if text is None or text == "":
        return None
    try:
        parts = [int(v) for v in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16 or max(parts) > 1024:
        raise UserError(f"--size: expected HxW between 16 and 1024 pixels such as 112x112, got '{text}'")
    return parts[0], parts[1]


def _extra_name(name: str, k: int) -> str:
    p = Path(output_name(name))
    return f"{p.stem}_face{k}{p.suffix}"


# --- worker side: one detector per process --------------------------------------------------------

_STATE: dict = {}


def _init_worker(detector: str, options: dict, template: str, size, multi: str, border: str,
                 points_factory=None, fallback: str = "none") -> None:
    import cv2

    from faceforge.align.detectors import get_detector

    cv2.setNumThreads(1)
    options = dict(options)
    options.setdefault("threads", 1)
    points = None
    points = None
    if points_factory is not None:  # the detector gives the box, the hook the 5 alignment points
        import torch

        torch.set_num_threads(1)
        points = points_factory()
    _STATE.update(
        detector=get_detector(detector, **options), template=template, size=size, multi=multi, border=border,
        points=points, fallback=fallback,
        fallback_detector=None if fallback in ("none", "center") else get_detector(fallback, threads=1),
    )


def _encode(path: Path, rgb: np.ndarray) -> bytes:
    import cv2

    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    return buf.tobytes()


def _aligned_chunk(tasks: list[tuple[str, str, str]]):
    """:func:`_align_one` for several images, detected in one batch where their sizes allow; yields
    each image's result as soon as its crops are written (the journal records it at once)."""
    from faceforge.io.images import CorruptImage, read_image

    images, failed = {}, {}
    for k, (rel, src, _) in enumerate(tasks):
        try:
            images[k] = read_image(src)
        except CorruptImage as e:
            failed[k] = (rel, "corrupt", 0, str(e), 0)
    found = dict(zip(images, _STATE["detector"].detect_batch(list(images.values()))))
    for k, task in enumerate(tasks):
        yield failed[k] if k in failed else _align_one(task, images[k], found[k])


def _align_chunk(tasks: list[tuple[str, str, str]]) -> list[tuple[str, str, int, str, int]]:
    """A worker process's task: the results of a whole chunk."""
    return list(_aligned_chunk(tasks))


def _align_one(task: tuple[str, str, str], img: np.ndarray, faces: list) -> tuple[str, str, int, str, int]:
    """(relative source path, status, faces found, detail, crops written) for one detected image."""
    from faceforge.align.transform import DegeneratePoints, warp_face
    from faceforge.atomic import atomic_write_bytes

    rel, src, out_dir = task
    if not faces and _STATE.get("fallback_detector") is not None:
        faces = _STATE["fallback_detector"].detect(img)
        status_if_found = f"fallback_{_STATE['fallback']}"
    else:
        status_if_found = ""
    if not faces and _STATE.get("fallback") == "center":
        points = centre_points(img.shape, _STATE["template"])
        crop = warp_face(img, points, _STATE["template"], _STATE["size"], border=_STATE["border"])
        out = Path(out_dir) / output_name(Path(src).name)
        atomic_write_bytes(out, _encode(out, crop))
        return rel, "fallback_center", 0, "no face found: centred crop", 1
    if not faces:
        return rel, "no_face", 0, "", 0
    chosen = pick_faces(faces, img.shape, _STATE["multi"])
    if not chosen:
        return rel, "skipped_multi", len(faces), "several faces and --multi skip", 0
    name = Path(src).name
    written = 0
    for k, face in enumerate(chosen):
        points = face.landmarks if _STATE.get("points") is None else _STATE["points"](img, face.box)
        try:
            crop = warp_face(img, points, _STATE["template"], _STATE["size"], border=_STATE["border"])
        except DegeneratePoints as e:
            return rel, "bad_landmarks", len(faces), str(e), written
        out = Path(out_dir) / (output_name(name) if k == 0 else _extra_name(name, k))
        atomic_write_bytes(out, _encode(out, crop))
        written += 1
    status = status_if_found or ("aligned" if len(faces) == 1 else "several_faces")
    detail = "" if len(faces) == 1 else f"policy {_STATE['multi']}: kept {written} of {len(faces)}"
    return rel, status, len(faces), detail, written


def _read_report(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: r for r in rows[1:] if len(r) == 4}


def _read_journal(path: Path) -> dict[str, list]:
    """Latest result per image from the journal; a line cut short by a kill is ignored."""
    out: dict[str, list] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, list) and len(row) == 5 and isinstance(row[0], str):
                out[row[0]] = row
    return out


class _Journal:
    """Append-only record of finished images; the report and summary are derived from it."""

    def __init__(self, dst: Path, known: set[str]):
        self.dst, self.known = dst, known
        self.path = dst / JOURNAL_NAME
        self.rows = _read_journal(self.path)
        self.old_report = _read_report(dst / REPORT_NAME)  # written before journals existed
        self._f = None
        self.pending = 0

    def add(self, result: tuple) -> None:
        if self._f is None:
            self.dst.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        row = [result[0], result[1], int(result[2]), result[3], int(result[4])]
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()  # in the OS's hands: survives kill -9 of this process
        self.rows[row[0]] = row
        self.pending += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def save(self, counts: dict) -> None:
        from faceforge.atomic import atomic_write_text

        rows = {k: v for k, v in self.old_report.items() if k in self.known}
        for k, r in self.rows.items():
            if k not in self.known:
                continue  # an image removed from the source since
            if r[1] == "aligned":
                rows.pop(k, None)
            else:
                rows[k] = [r[0], r[1], str(r[2]), r[3]]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "status", "faces", "detail"])
        writer.writerows(rows[k] for k in sorted(rows))
        atomic_write_text(self.dst / REPORT_NAME, buf.getvalue())
        every = Counter(r[1] for k, r in self.rows.items() if k in self.known)
        counts = dict(counts, all_runs={
            "recorded": sum(every.values()),
            "aligned": every["aligned"] + every["several_faces"] + sum(
                n for s, n in every.items() if s.startswith("fallback_")),
            "crops_written": sum(r[4] for k, r in self.rows.items() if k in self.known),
            "no_face": every["no_face"],
            "several_faces": every["several_faces"] + every["skipped_multi"],
            **{s: every[s] for s in ("skipped_multi", "corrupt", "bad_landmarks")},
        })
        atomic_write_text(self.dst / SUMMARY_NAME, json.dumps(counts, indent=2) + "\n")
        self.pending = 0


# --- driver ---------------------------------------------------------------------------------------


def align_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    detector: str = "retinaface",
    template: str = "arcface",
    size: tuple[int, int] | int | None = None,
    workers: int = 1,
    multi: str = "largest_center",
    detector_options: dict | None = None,
    border: str = "constant",
    progress: bool = False,
    points=None,
    fallback: str = "none",
) -> dict:
    """Align every image of ``src`` into ``dst``; returns the counts also saved in ``align_summary.json``.

    ``multi`` decides for images with several faces: ``largest_center`` (default), ``largest``,
    ``skip`` (none written, reported) or ``all`` (extra faces as ``<stem>_face<k>``).
    Images whose output already exists are skipped, so an interrupted run resumes.
    ``workers=0`` starts one process per CPU core. ``points`` replaces the detector's 5 points: a
    picklable factory, called once in each worker, returning ``fn(img, box) -> [5, 2]`` (the CLI
    passes :class:`faceforge.landmarks.predict.FivePointRefiner` for ``--landmarks``; align knows
    nothing of landmark models). ``str(points)`` is recorded in the summary.
    ``fallback`` for an image without a face: ``none`` (reported as ``no_face``), ``center`` (a
    centred crop, for already-cropped datasets such as LFW: :func:`faceforge.align.select.centre_points`)
    or another detector's name (tried when the first finds nothing).
    """
    from faceforge.align.transform import TEMPLATES, template_points
    from faceforge.io.folders import list_identity_folder
    from faceforge.registry import DETECTORS

    if multi not in MULTI_POLICIES:
        raise UserError(f"--multi: unknown policy '{multi}'; valid: {', '.join(MULTI_POLICIES)}")
    check_fallback(fallback)
    if template not in TEMPLATES:
        template_points(template)  # raises the UserError listing the templates
    DETECTORS.entry(detector)  # unknown names fail before any work
    if int(workers) < 0:
        raise UserError(f"--workers: must be >= 0 (0 = one per CPU core), got {workers}")
    workers = int(workers) or (os.cpu_count() or 1)
    src_path, dst_path = check_output_tree(Path(src), Path(dst))
    files, labels, names = list_identity_folder(src_path, "align")

    from faceforge.atomic import sweep_stale_temps

    for folder in [dst_path, *(dst_path / n for n in names)]:
        sweep_stale_temps(folder)  # temporary crops of a run killed mid-write
    tasks, skipped = [], 0
    for f in files:
        out_dir = dst_path / f.parent.name
        if (out_dir / output_name(f.name)).exists():
            skipped += 1
            continue
        tasks.append((f"{f.parent.name}/{f.name}", str(f), str(out_dir)))
    options = dict(detector_options or {})
    # the cores shared out: each of the worker processes runs its detector on cores // workers threads
    options.setdefault("threads", max(1, (os.cpu_count() or 1) // max(1, min(int(workers), len(tasks) or 1))))
    init_args = (detector, options, template, size, multi, border, points, fallback)
    bar = Progress(len(tasks), progress)
    results: list = []
    journal = _Journal(dst_path, {f"{f.parent.name}/{f.name}" for f in files})
    start = time.perf_counter()

    def counts_so_far() -> dict:
        return _counts(files, names, skipped, results, time.perf_counter() - start, detector, template,
                       size, multi, workers, points, fallback)

    def finished(result) -> None:
        results.append(result)
        journal.add(result)
        bar.step()
        if journal.pending >= SAVE_EVERY:
            journal.save(counts_so_far())

    try:
        if tasks:
            dst_path.mkdir(parents=True, exist_ok=True)
            workers = min(int(workers), len(tasks))
            chunks = [tasks[i : i + DETECT_BATCH] for i in range(0, len(tasks), DETECT_BATCH)]
            if workers == 1:
                _init_worker(*init_args)
                for chunk in chunks:
                    for result in _aligned_chunk(chunk):
                        finished(result)
            else:
                import multiprocessing as mp

                ctx = mp.get_context("spawn")  # no onnxruntime/OpenCV state is inherited through fork
                with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
                    for done in pool.imap_unordered(_align_chunk, chunks):
                        for result in done:
                            finished(result)
    finally:
        journal.close()
    counts = counts_so_far()
    if tasks or journal.rows:
        journal.save(counts)
    return counts


def _counts(files, names, skipped, results, seconds, detector, template, size, multi, workers,
            points, fallback) -> dict:
    """This run's counts (``all_runs`` with the journal's totals is added by the summary)."""
    status = Counter(r[1] for r in results)
    return {
        "images": len(files),
        "identities": len(names),
        "skipped_existing": skipped,
        "processed": len(results),
        "aligned": status["aligned"] + status["several_faces"] + sum(
            n for s, n in status.items() if s.startswith("fallback_")),
        "fallback": {s[len("fallback_"):]: n for s, n in status.items() if s.startswith("fallback_")},
        "crops_written": sum(r[4] for r in results),
        "no_face": status["no_face"],
        "several_faces": status["several_faces"] + status["skipped_multi"],
        "skipped_multi": status["skipped_multi"],
        "corrupt": status["corrupt"],
        "bad_landmarks": status["bad_landmarks"],
        "seconds": round(seconds, 2),
        "seconds_per_image": round(seconds / max(len(results), 1), 4),
        "detector": detector,
        "template": template,
        "size": list(size) if isinstance(size, tuple) else size,
        "multi": multi,
        "fallback_rule": fallback,
        "workers": int(workers),
        "landmarks": None if points is None else str(points),
    }
