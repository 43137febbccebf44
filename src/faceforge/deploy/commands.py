"""What ``faceforge embed / verify / identify / gallery ...`` do, as library functions.

Every image goes through a :class:`~faceforge.deploy.analyzer.FaceAnalyzer` (detect -> align ->
embed); ``aligned=True`` treats each image as an already-aligned crop (112x112 ArcFace template or
the model's own input size) and skips detection. One face per image is used unless ``all_faces``:
the one the analyzer's ``multi`` rule picks (:mod:`faceforge.align.select`, default the largest
near the centre), the same rule ``faceforge align`` uses.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.errors import UserError
from faceforge.io.text import read_text

ENROL_CHUNK = 64  # images decoded and committed together by enroll_files
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")
_MODEL_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def analyzer_model_id(analyzer) -> str:
    """The gallery model id of an analyzer's model, hashed once per analyzer."""
    from faceforge.deploy.gallery import model_id

    if analyzer not in _MODEL_IDS:
        _MODEL_IDS[analyzer] = model_id(analyzer)
    return _MODEL_IDS[analyzer]


def load_analyzer(model, detector: str = "retinaface", device: str = "cpu", threshold: float | None = None,
                  card=None, multi: str = "largest_center"):
    """A FaceAnalyzer for ``model`` (a path, or an analyzer passed through)."""
    from faceforge.deploy.analyzer import FaceAnalyzer

    if isinstance(model, FaceAnalyzer):
        return model
    return FaceAnalyzer(model=model, detector=detector, device=device, threshold=threshold, card=card,
                        multi=multi)


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 from an image file; a one-line UserError when missing or not an image."""
    from faceforge.io.images import CorruptImage, read_image

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    try:
        return read_image(path)
    except CorruptImage as e:
        reason = str(e).replace(str(path), "").strip(" :") or "cannot decode it"
        raise UserError(f"{path}: not an image ({reason})") from None


def aligned_crop(analyzer, img: np.ndarray):
    """The whole image as one aligned face: (the crop the model takes, the face without embedding:
    box = the image, landmarks = the template scaled to it)."""
    from faceforge.align.transform import fit_to_input
    from faceforge.deploy.analyzer import AnalyzedFace

    card = analyzer.card
    h, w = (int(v) for v in card.input_size)
    ih, iw = img.shape[:2]
    box = np.array([0, 0, iw, ih], dtype=np.float32)
    prepare = getattr(analyzer.embedder, "prepare_photo", None)
    if prepare is not None:  # a self-aligning model (dlib:resnet): its own chip of the crop's face
        from faceforge.align.transform import template_points

        crop, _ = prepare(img)
        points = template_points("arcface", (ih, iw)).astype(np.float32)
        return np.ascontiguousarray(crop), AnalyzedFace(box, 1.0, points)
    template = getattr(analyzer.embedder.meta, "template", "arcface")
    crop = np.ascontiguousarray(fit_to_input(img, (h, w), template))
    points = np.asarray(card.template_points(), dtype=np.float32) * np.array([iw / w, ih / h], np.float32)
    return crop, AnalyzedFace(box, 1.0, points)


def chosen_faces(analyzer, faces: list, shape: tuple[int, ...], all_faces: bool = False) -> list:
    """Every face, or the one the analyzer's multi-face rule picks (:mod:`faceforge.align.select`)."""
    from faceforge.align.select import pick_faces

    rule = "all" if all_faces else getattr(analyzer, "multi", "largest_center")
    return pick_faces(faces, shape, rule)


def faces_in(analyzer, img: np.ndarray, aligned: bool = False, all_faces: bool = False) -> list:
    """Faces of one RGB image with embeddings: every face, or the one the analyzer's ``multi`` rule
    picks (default)."""
    if aligned:
        crop, face = aligned_crop(analyzer, img)
        face.embedding = analyzer.embed_crops(crop[None])[0]
        return [face]
    faces = chosen_faces(analyzer, analyzer.detect(img), img.shape, all_faces)
    if not faces:
        return []
    crops = np.stack([analyzer.align(img, f) for f in faces])
    for f, e in zip(faces, analyzer.embed_crops(crops)):
        f.embedding = e
    return faces


def one_face(analyzer, img: np.ndarray, where: str, aligned: bool = False):
    faces = faces_in(analyzer, img, aligned)
    if not faces:
        raise UserError(f"{where}: no face found")
    return faces[0]


def _face_record(face, **extra) -> dict:
    d = {"box": [round(float(v), 2) for v in face.box], "score": round(float(face.score), 5),
         "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks]}
    d.update(extra)
    return d


# -------------------------------------------------------------------------------------- embed


PAIR_PREFIXES = ("pairs:", "calfw:", "facex:", "bin:")


def expand_sources(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from image paths, folders (every image below, sorted), list files (``@LIST`` or a
    ``.txt``/``.lst``: one path per line, relative to the list's folder) and pair sources
    (``pairs:...,root=DIR`` etc.: the images of every pair, so ``eval verify --embeddings`` can score
    the result)."""
    files: list[Path] = []
    for src in sources:
        text = str(src)
        if text.startswith(PAIR_PREFIXES):
            from faceforge.eval.pairs import open_pairs

            images = open_pairs(text, check_images=True).images
            if not all(isinstance(i, Path) for i in images):
                raise UserError(f"{text}: a .bin holds encoded images, not files: use 'eval verify' directly")
            files.extend(images)
            continue
        path = Path(text[1:] if text.startswith("@") else text)
        if text.startswith("@") or (path.is_file() and path.suffix.lower() in (".txt", ".lst")):
            if not path.is_file():
                raise UserError(f"{text}: list file not found")
            lines = read_text(path, f"list file {path}").splitlines()
            files.extend(path.parent / line.strip() for line in lines if line.strip())
        elif path.is_dir():
            files.extend(_image_files([path]))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: file not found")
    return files


def embed_files(paths: Sequence[str | os.PathLike], model, out: str | os.PathLike, all_faces: bool = False,
                aligned: bool = False, detector: str = "retinaface", device: str = "cpu",
                progress=None, workers: int = 1, batch: int = 32, card=None,
                multi: str = "largest_center") -> dict:
    """Embed the faces of images into ``out`` (.npz): ``embeddings`` [N, D] (L2-normalised),
    ``files``, ``face`` (index within its image), ``boxes`` [N, 4], ``points`` [N, 5, 2], ``scores``,
    ``model_id``, ``flip``. ``paths`` may name images, folders, list files and pair sources
    (:func:`expand_sources`). Unreadable images and images without a face are skipped and counted;
    with ``aligned``, images not at an aligned crop's size are listed in ``unaligned`` (they are
    resized whole); ``progress(done, total)`` is called after each image.

    ``batch`` images are detected together and their faces embedded in one batch; ``workers``
    processes (0: one per core) each run their own detector and model (``model`` must then be a
    file; ``card`` and ``multi`` go with it), with the cores shared out as intra-op threads."""
    from faceforge.atomic import atomic_open
    from faceforge.deploy.batch import faces_of_files

    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise UserError(f"--out {out}: expected a .npz file name")
    paths = expand_sources(paths)
    if not paths:
        raise UserError("embed: no image given")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if len(missing) == len(paths):
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise UserError(f"embed: none of the {len(paths)} images exists (missing: {shown})")
    paths = [p for p in paths if Path(p).is_file()]
    analyzer = load_analyzer(model, detector, device, card=card, multi=multi)
    from faceforge.embed.extract import looks_aligned

    rows, files, index, boxes, points, scores = [], [], [], [], [], []
    not_images, no_face, unaligned = [], [], []
    one_process = int(workers) == 1 or not isinstance(model, (str, os.PathLike))
    found = faces_of_files(list(map(str, paths)), model, analyzer=analyzer if one_process else None,
                           detector=detector, device=device, aligned=aligned, all_faces=all_faces,
                           workers=1 if one_process else workers, chunk=batch, card=card, multi=multi)
    for done, (p, status, faces, shape) in enumerate(found, 1):
        if progress:
            progress(done, len(paths))
        if status == "not_image":
            not_images.append(p)
            continue
        if aligned and not looks_aligned(shape, analyzer.card.input_size):
            unaligned.append(f"{p} ({shape[0]}x{shape[1]})")
        if status == "no_face":
            no_face.append(p)
        for j, f in enumerate(faces):
            rows.append(f.embedding)
            files.append(p)
            index.append(j)
            boxes.append(f.box)
            points.append(f.landmarks)
            scores.append(f.score)
    if not rows:
        raise UserError(f"embed: no face found in any of the {len(paths)} images "
                        f"({len(not_images)} not images, {len(no_face)} without a face"
                        f"{f', and {len(missing)} more missing' if missing else ''})")
    with atomic_open(out, "wb") as f:
        np.savez(f, embeddings=np.stack(rows).astype(np.float32), files=np.array(files), face=np.array(index),
                 boxes=np.stack(boxes).astype(np.float32), points=np.stack(points).astype(np.float32),
                 scores=np.array(scores, np.float32), model_id=np.array(analyzer_model_id(analyzer)),
                 flip=np.array(analyzer.flip))
    return {"out": str(out), "faces": len(rows), "images": len(paths) - len(not_images),
            "not_images": not_images, "no_face": no_face, "missing": missing, "dim": int(rows[0].shape[0]),
            "unaligned": unaligned}


# -------------------------------------------------------------------------------------- verify


def verify_files(a: str | os.PathLike, b: str | os.PathLike, model, threshold: float | None = None,
                 aligned: bool = False, detector: str = "retinaface", device: str = "cpu") -> dict:
    """Cosine similarity of the picked faces (multi-face rule) of two images, threshold and verdict."""
    analyzer = load_analyzer(model, detector, device, threshold)
    fa = one_face(analyzer, read_image_file(a), str(a), aligned)
    fb = one_face(analyzer, read_image_file(b), str(b), aligned)
    return verify_faces(analyzer, fa, fb)


def threshold_info(analyzer) -> dict:
    """The threshold in use, its FAR and where it came from (None values when there is none)."""
    thr = analyzer.threshold
    return {"threshold": None if thr is None else round(float(thr), 6), "far": analyzer.threshold_far,
            "source": analyzer.threshold_source}


def verify_faces(analyzer, fa, fb) -> dict:
    """Similarity and, when the model has a threshold, the verdict; without one ``same`` is None and
    ``hint`` says how to get a threshold."""
    from faceforge.deploy.analyzer import NO_THRESHOLD_HINT

    sim = float(np.dot(fa.embedding, fb.embedding))
    if not np.isfinite(sim):
        raise UserError("verify: the model gives non-finite embeddings (damaged or diverged weights?)")
    info = open_set_info(analyzer)
    out = {"similarity": round(sim, 6), **info,
           "same": None if info["threshold"] is None else bool(sim >= analyzer.threshold),
           "a": _face_record(fa), "b": _face_record(fb)}
    if out["same"] is None:
        out["hint"] = f"no threshold for this model: {NO_THRESHOLD_HINT}, or pass --threshold"
    return out


# -------------------------------------------------------------------------------------- gallery


def create_gallery(path: str | os.PathLike, model=None, ivf_threshold: int = 100_000, nprobe: int = 16,
                   detector: str = "retinaface", device: str = "cpu", card=None) -> dict:
    """A new gallery keyed to ``model`` (default dlib:resnet): its id and embedding width, and the
    model's path, content hash and card (so later commands need no ``--model``)."""
    from faceforge.deploy.gallery import Gallery
    from faceforge.deploy.gallery_model import model_record

    analyzer = load_analyzer(model, detector, device, card=card)
    h, w = (int(v) for v in analyzer.card.input_size)
    dim = int(analyzer.embed_crops(np.zeros((1, h, w, 3), np.uint8)).shape[1])
    mid = analyzer_model_id(analyzer)
    with Gallery.create(path, mid, dim, ivf_threshold=ivf_threshold, nprobe=nprobe,
                        model_record=model_record(analyzer, card)) as g:
        return g.info()


def _image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: file not found")
    return out


def enroll_arrays(gallery, analyzer, identity: str, images: Sequence[np.ndarray], sources: Sequence[str],
                  aligned: bool = False, contents: Sequence[str] | None = None) -> dict:
    """Enrol decoded images of one identity (the picked face of each) in one transaction; an image
    whose content hash the identity already holds is skipped (``already``)."""
    from faceforge.deploy.gallery import check_identity

    identity = check_identity(identity)
    contents = list(contents) if contents is not None else [""] * len(sources)
    rows, srcs, hashes, no_face = [], [], [], []
    for img, src, content in zip(images, sources, contents):
        faces = faces_in(analyzer, img, aligned)
        if faces:
            rows.append(faces[0].embedding)
            srcs.append(src)
            hashes.append(content)
        else:
            no_face.append(src)
    ids = (gallery.enroll(identity, np.stack(rows), srcs, model=analyzer_model_id(analyzer), contents=hashes)
           if rows else [])
    return {"identity": identity, "vector_ids": ids, "enrolled": len(ids), "no_face": no_face,
            "already": len(rows) - len(ids)}


def enroll_files(gallery_path: str | os.PathLike, model, identity: str | None,
                 paths: Sequence[str | os.PathLike],
                 aligned: bool = False, detector: str = "retinaface", device: str = "cpu",
                 progress=None) -> dict:
    """Enrol image files as ``identity``; with ``identity=None`` each path is a folder whose
    sub-folders are identities (``root/<identity>/*.jpg``). ``progress(done, total)`` is called
    after each chunk. Idempotent: a file whose content the identity already holds is skipped before
    it is decoded, so re-running an interrupted enrolment adds nothing twice. No usable face in any
    file is an error."""
    from faceforge.deploy.gallery import Gallery, check_identity
    from faceforge.deploy.gallery_records import file_content_hash

    if not paths:
        raise UserError("enroll: no image or folder given")
    if identity is None:
        groups = []
        for root in paths:
            root = Path(root)
            if not root.is_dir():
                raise UserError(f"{root}: without --identity, give folders of <identity>/<images>")
            groups += [(d.name, _image_files([d])) for d in sorted(root.iterdir()) if d.is_dir()]
    else:
        groups = [(identity, _image_files(paths))]
    for name, _ in groups:  # refuse a bad id before any work, naming where it came from
        try:
            check_identity(name)
        except UserError as e:
            where = "--identity" if identity is not None else f"folder '{name}'"
            raise UserError(f"{where}: {e}") from None
    n_files = sum(len(files) for _, files in groups)
    if n_files == 0:
        raise UserError(f"enroll: no image file in {', '.join(str(p) for p in paths)}")
    from faceforge.deploy.gallery_model import gallery_analyzer

    analyzer = gallery_analyzer(gallery_path, model, detector, device)
    summary = {"identities": 0, "enrolled": 0, "already": 0, "not_images": [], "no_face": []}
    done = 0
    with Gallery(gallery_path) as g:
        for name, files in groups:
            enrolled = 0
            for start in range(0, len(files), ENROL_CHUNK):  # one transaction per chunk: bounded memory
                chunk = files[start:start + ENROL_CHUNK]
                hashes = {f: file_content_hash(f) for f in chunk}
                held = g.enrolled_contents(check_identity(name), list(hashes.values()))
                images, sources, contents = [], [], []
                for f in chunk:
                    if hashes[f] in held:
                        summary["already"] += 1
                        continue
                    try:
                        images.append(read_image_file(f))
                        sources.append(str(f))
                        contents.append(hashes[f])
                    except UserError:
                        summary["not_images"].append(str(f))
                res = enroll_arrays(g, analyzer, name, images, sources, aligned, contents)
                summary["no_face"] += res["no_face"]
                summary["already"] += res["already"]
                enrolled += res["enrolled"]
                done += len(chunk)
                if progress:
                    progress(done, n_files)
            summary["enrolled"] += enrolled
            summary["identities"] += bool(enrolled)
        summary["gallery"] = g.info()
    if summary["enrolled"] == 0 and summary["already"] == 0:
        raise UserError(f"enroll: no usable face in any of the {n_files} files ({len(summary['not_images'])} "
                        f"not images, {len(summary['no_face'])} without a face); nothing was enrolled")
    return summary


def identify_file(probe: str | os.PathLike, gallery_path: str | os.PathLike, model=None, k: int = 5,
                  group: str = "max", all_faces: bool = False, aligned: bool = False,
                  detector: str = "retinaface", device: str = "cpu") -> dict:
    """Open-set identification of the (picked, or every) face of ``probe`` in a gallery: see
    :func:`identify_faces`. ``model`` None: the gallery's own model."""
    from faceforge.deploy.gallery_model import gallery_analyzer

    analyzer = gallery_analyzer(gallery_path, model, detector, device)
    out = identify_array(read_image_file(probe), gallery_path, analyzer, k, group, all_faces, aligned,
                         where=str(probe))
    return {"probe": str(probe), **out}


def identify_array(img: np.ndarray, gallery, analyzer, k: int = 5, group: str = "max",
                   all_faces: bool = False, aligned: bool = False, where: str = "image") -> dict:
    """:func:`identify_file` on a decoded image; ``gallery``: a folder or an open Gallery."""
    from faceforge.deploy.gallery import Gallery

    faces = faces_in(analyzer, img, aligned, all_faces)
    if not faces:
        raise UserError(f"{where}: no face found")
    if isinstance(gallery, Gallery):
        return {"faces": identify_faces(gallery, analyzer, faces, k, group), **open_set_info(analyzer)}
    with Gallery(gallery) as g:
        return {"faces": identify_faces(g, analyzer, faces, k, group), **open_set_info(analyzer)}


def open_set_info(analyzer) -> dict:
    """What an identification answer says about its threshold."""
    info = threshold_info(analyzer)
    return {"threshold": info["threshold"], "far": info["far"], "threshold_source": info["source"]}


def identify_faces(gallery, analyzer, faces, k: int = 5, group: str = "max") -> list[dict]:
    """Per face: the top-k ``matches`` (identity, score) and the open-set ``answer``: the best
    identity when its score reaches the analyzer's threshold, else "unknown" (``known`` False);
    without a threshold ``answer`` is the best identity and ``known`` None (ranking only)."""
    embs = np.stack([f.embedding for f in faces])
    results = gallery.search(embs, k=k, group=group, model=analyzer_model_id(analyzer))
    out = []
    for f, r in zip(faces, results):
        matches = [m.to_dict() for m in r]
        best = matches[0] if matches else None
        thr = analyzer.threshold
        known = None if thr is None or best is None else bool(best["score"] >= thr)
        answer = "unknown" if known is False or best is None else best["identity"]
        out.append(_face_record(f, answer=answer, known=known, matches=matches))
    return out
