"""Detect, align and embed many image files: chunks of images detected in one batch where their
sizes allow, the chosen faces of a chunk embedded in one batch, and chunks spread over processes.

Each worker process loads its own :class:`~faceforge.deploy.analyzer.FaceAnalyzer` with
``threads = max(1, cores // workers)`` intra-op threads for its detector and its embedder (ONNX
Runtime, or torch), so ``workers`` processes together use the cores once and scale with them.
``workers=1`` runs in the calling process with the analyzer it already has.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from faceforge.errors import UserError

CHUNK = 32  # images per task: detected together, their faces embedded in one batch

_STATE: dict = {}


def threads_per_worker(workers: int) -> int:
    """Intra-op threads for each of ``workers`` processes: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def _init_worker(*args) -> None:
    """Load the worker's analyzer; a failure is kept and raised by its first task (a Pool whose
    initializer raises would start replacement workers forever)."""
    try:
        _load_worker(*args)
    except Exception as e:  # re-raised by _run_chunk, so the parent's imap gets it
        _STATE["error"] = e


def _load_worker(model, detector: str, device: str, workers: int, aligned: bool, all_faces: bool,
                 card=None, multi: str = "largest_center") -> None:
    import cv2
    import torch

    from faceforge.deploy.analyzer import FaceAnalyzer

    threads = threads_per_worker(workers)
    cv2.setNumThreads(1)
    torch.set_num_threads(threads)  # torch embedders
    analyzer = FaceAnalyzer(model=model, detector=detector, device=device, threads=threads, card=card,
                            multi=multi)
    if hasattr(analyzer.embedder, "set_threads"):  # ONNX Runtime embedders
        analyzer.embedder.set_threads(threads)
    _STATE.update(analyzer=analyzer, aligned=aligned, all_faces=all_faces)


def faces_of_chunk(analyzer, paths: Sequence[str], aligned: bool = False,
                   all_faces: bool = False) -> list[tuple[str, str, list, tuple]]:
    """``(path, status, faces, image shape)`` per file, status ``ok``, ``not_image`` or ``no_face``;
    the faces (the one the analyzer's multi-face rule picks, or all) carry their embeddings,
    computed for the whole chunk in one batch."""
    from faceforge.deploy.commands import aligned_crop, chosen_faces, read_image_file

    images: dict[int, np.ndarray] = {}
    status = {k: "ok" for k in range(len(paths))}
    for k, p in enumerate(paths):
        try:
            images[k] = read_image_file(p)
        except UserError:
            status[k] = "not_image"
    faces: dict[int, list] = {}
    crops: list[np.ndarray] = []
    if aligned:
        for k, img in images.items():
            crop, face = aligned_crop(analyzer, img)
            faces[k] = [face]
            crops.append(crop)
    else:
        found = analyzer.detect_batch(list(images.values()))
        for k, detected in zip(images, found):
            faces[k] = chosen_faces(analyzer, detected, images[k].shape, all_faces)
            crops.extend(analyzer.align(images[k], f) for f in faces[k])
    if crops:
        embeddings = iter(analyzer.embed_crops(np.stack(crops)))
        for k in images:
            for f in faces[k]:
                f.embedding = next(embeddings)
    out = []
    for k, p in enumerate(paths):
        if status[k] == "ok" and not faces.get(k):
            status[k] = "no_face"
        shape = images[k].shape if k in images else ()
        out.append((str(p), status[k], faces.get(k, []), shape))
    return out


def _run_chunk(paths: list[str]) -> list[tuple[str, str, list, tuple]]:
    if "error" in _STATE:
        raise _STATE["error"]
    return faces_of_chunk(_STATE["analyzer"], paths, _STATE["aligned"], _STATE["all_faces"])


def faces_of_files(paths: Sequence[str], model, analyzer=None, detector: str = "retinaface",
                   device: str = "cpu", aligned: bool = False, all_faces: bool = False, workers: int = 1,
                   chunk: int = CHUNK, card=None,
                   multi: str = "largest_center") -> Iterator[tuple[str, str, list, tuple]]:
    """:func:`faces_of_chunk` over every file, in input order, on ``workers`` processes
    (0: one per core). Workers need ``model`` as a file path (each loads its own copy)."""
    if int(workers) < 0:
        raise UserError(f"--workers: must be >= 0 (0 = one per CPU core), got {workers}")
    workers = int(workers) or (os.cpu_count() or 1)
    chunk = max(1, int(chunk))
    chunks = [list(map(str, paths[i : i + chunk])) for i in range(0, len(paths), chunk)]
    workers = min(workers, len(chunks))
    if workers <= 1:
        from faceforge.deploy.commands import load_analyzer

        analyzer = analyzer or load_analyzer(model, detector, device, card=card, multi=multi)
        for c in chunks:
            yield from faces_of_chunk(analyzer, c, aligned, all_faces)
        return
    if not isinstance(model, (str, os.PathLike)):
        raise UserError("--workers: worker processes load the model from its file; "
                        "pass a path, not an object")
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no onnxruntime/torch thread state is inherited through fork
    init = (str(model), detector, device, workers, aligned, all_faces,
            None if card is None else str(card), multi)
    with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
        for done in pool.imap(_run_chunk, chunks):
            yield from done
