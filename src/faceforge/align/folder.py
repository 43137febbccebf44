"""Detect and align every image of an identity-folder tree (``SRC/<identity>/<image>``).

``align_folder`` writes ``DST/<identity>/<image>`` crops aligned to a 5-point template. It is
resumable (an image whose output exists is skipped), never writes inside its source, and records
every image that is not a clean single-face alignment in ``DST/align_report.csv``, with a summary
in ``DST/align_summary.json``. Work is spread over processes, each with its own detector session
running one intra-op thread.
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

from faceforge.errors import UserError
from faceforge.io.folders import check_output_tree, output_name
from faceforge.io.progress import Progress

MULTI_POLICIES = ("largest_center", "largest", "skip", "all")
REPORT_NAME = "align_report.csv"
SUMMARY_NAME = "align_summary.json"
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


def pick_faces(faces: list, shape: tuple[int, ...], policy: str) -> list:
    """The faces to align under ``policy`` when an image holds several.

    ``largest_center`` ranks by area minus twice the squared distance of the box centre from the
    image centre (InsightFace's ``max_num`` rule), so a large face near the middle wins.
    """
    if len(faces) <= 1 or policy == "all":
        return list(faces)
    if policy == "skip":
        return []
    h, w = shape[:2]

    def rank(face) -> float:
        x1, y1, x2, y2 = (float(v) for v in face.box)
        area = (x2 - x1) * (y2 - y1)
        if policy == "largest":
            return area
        dx, dy = (x1 + x2) / 2 - w / 2, (y1 + y2) / 2 - h / 2
        return area - 2.0 * (dx * dx + dy * dy)

    return [max(faces, key=rank)]


def _extra_name(name: str, k: int) -> str:
    p = Path(output_name(name))
    return f"{p.stem}_face{k}{p.suffix}"


# --- worker side: one detector per process --------------------------------------------------------

_STATE: dict = {}


def _init_worker(detector: str, options: dict, template: str, size, multi: str, border: str,
                 points_factory=None) -> None:
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
        points=points,
    )


def _encode(path: Path, rgb: np.ndarray) -> bytes:
    import cv2

    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    return buf.tobytes()


def _align_chunk(tasks: list[tuple[str, str, str]]) -> list[tuple[str, str, int, str, int]]:
    """:func:`_align_one` for several images, detected in one batch where their sizes allow."""
    from faceforge.io.images import CorruptImage, read_image

    images, failed = {}, {}
    for k, (rel, src, _) in enumerate(tasks):
        try:
            images[k] = read_image(src)
        except CorruptImage as e:
            failed[k] = (rel, "corrupt", 0, str(e), 0)
    found = dict(zip(images, _STATE["detector"].detect_batch(list(images.values()))))
    return [failed[k] if k in failed else _align_one(task, images[k], found[k])
            for k, task in enumerate(tasks)]


def _align_one(task: tuple[str, str, str], img: np.ndarray, faces: list) -> tuple[str, str, int, str, int]:
    """(relative source path, status, faces found, detail, crops written) for one detected image."""
    from faceforge.align.transform import DegeneratePoints, warp_face
    from faceforge.atomic import atomic_write_bytes

    rel, src, out_dir = task
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
    status = "aligned" if len(faces) == 1 else "several_faces"
    detail = "" if len(faces) == 1 else f"policy {_STATE['multi']}: kept {written} of {len(faces)}"
    return rel, status, len(faces), detail, written


def _read_report(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: r for r in rows[1:] if len(r) == 4}


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
) -> dict:
    """Align every image of ``src`` into ``dst``; returns the counts also saved in ``align_summary.json``.

    ``multi`` decides for images with several faces: ``largest_center`` (default), ``largest``,
    ``skip`` (none written, reported) or ``all`` (extra faces as ``<stem>_face<k>``).
    Images whose output already exists are skipped, so an interrupted run resumes.
    ``workers=0`` starts one process per CPU core. ``points`` replaces the detector's 5 points: a
    picklable factory, called once in each worker, returning ``fn(img, box) -> [5, 2]`` (the CLI
    passes :class:`faceforge.landmarks.predict.FivePointRefiner` for ``--landmarks``; align knows
    nothing of landmark models). ``str(points)`` is recorded in the summary.
    """
    from faceforge.align.transform import TEMPLATES, template_points
    from faceforge.atomic import atomic_write_text
    from faceforge.io.folders import list_identity_folder
    from faceforge.registry import DETECTORS

    if multi not in MULTI_POLICIES:
        raise UserError(f"--multi: unknown policy '{multi}'; valid: {', '.join(MULTI_POLICIES)}")
    if template not in TEMPLATES:
        template_points(template)  # raises the UserError listing the templates
    DETECTORS.entry(detector)  # unknown names fail before any work
    if int(workers) < 0:
        raise UserError(f"--workers: must be >= 0 (0 = one per CPU core), got {workers}")
    workers = int(workers) or (os.cpu_count() or 1)
    src_path, dst_path = check_output_tree(Path(src), Path(dst))
    files, labels, names = list_identity_folder(src_path)
    if not files:
        raise UserError(f"align source: no images under {src} (expected SRC/<identity>/<image>)")

    tasks, skipped = [], 0
    for f in files:
        out_dir = dst_path / f.parent.name
        if (out_dir / output_name(f.name)).exists():
            skipped += 1
            continue
        tasks.append((f"{f.parent.name}/{f.name}", str(f), str(out_dir)))
    options = dict(detector_options or {})
    init_args = (detector, options, template, size, multi, border, points)
    bar = Progress(len(tasks), progress)
    results = []
    start = time.perf_counter()
    if tasks:
        dst_path.mkdir(parents=True, exist_ok=True)
        workers = min(int(workers), len(tasks))
        chunks = [tasks[i : i + DETECT_BATCH] for i in range(0, len(tasks), DETECT_BATCH)]
        if workers == 1:
            _init_worker(*init_args)
            for chunk in chunks:
                results.extend(_align_chunk(chunk))
                bar.step(len(chunk))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # no onnxruntime/OpenCV state is inherited through fork
            with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
                for done in pool.imap_unordered(_align_chunk, chunks):
                    results.extend(done)
                    bar.step(len(done))
    seconds = time.perf_counter() - start

    status = Counter(r[1] for r in results)
    counts = {
        "images": len(files),
        "identities": len(names),
        "skipped_existing": skipped,
        "processed": len(results),
        "aligned": status["aligned"] + status["several_faces"],
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
        "workers": int(workers),
        "landmarks": None if points is None else str(points),
    }
    if tasks:
        # a resumed run keeps the earlier rows of images it did not process again
        rows = {r[0]: [r[0], r[1], str(r[2]), r[3]] for r in results if r[1] != "aligned"}
        rows.update({k: v for k, v in _read_report(dst_path / REPORT_NAME).items()
                     if k not in {r[0] for r in results}})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "status", "faces", "detail"])
        writer.writerows(rows[k] for k in sorted(rows))
        atomic_write_text(dst_path / REPORT_NAME, buf.getvalue())
        atomic_write_text(dst_path / SUMMARY_NAME, json.dumps(counts, indent=2) + "\n")
    return counts
