"""Run a detector over image files: JSON-ready results and optional drawings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceforge.errors import UserError

# landmark colours (RGB): left eye red, right eye yellow, nose magenta, mouth left green, right blue
LANDMARK_COLOURS = ((255, 0, 0), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255))


def draw_faces(img: np.ndarray, faces: list) -> np.ndarray:
    """A copy of the RGB image with each face's box, score and 5 landmarks drawn."""
    import cv2

    out = np.ascontiguousarray(img[:, :, :3]).copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    for face in faces:
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        cv2.putText(out, f"{face.score:.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, (0, 255, 0), thick)
        for (x, y), colour in zip(face.landmarks, LANDMARK_COLOURS):
            cv2.circle(out, (int(round(float(x))), int(round(float(y)))), 2 * thick, colour, -1)
    return out


def detect_files(
    paths: list[str | os.PathLike],
    detector: str = "retinaface",
    options: dict | None = None,
    draw_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Detect faces in each file: ``[{"file", "width", "height", "faces": [Face.to_dict()]}]``.

    Unreadable images get ``"error"`` instead of faces. ``draw_dir`` receives ``<stem>_faces.png``.
    """
    import cv2

    from faceforge.align.detectors import get_detector
    from faceforge.atomic import atomic_write_bytes
    from faceforge.io.images import CorruptImage, read_image

    if not paths:
        raise UserError("detect: no image given")
    det = get_detector(detector, **(options or {}))
    results = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: image file not found")
        try:
            img = read_image(path)
        except CorruptImage as e:
            results.append({"file": str(path), "error": str(e)})
            continue
        faces = det.detect(img)
        results.append({"file": str(path), "width": img.shape[1], "height": img.shape[0],
                        "faces": [f.to_dict() for f in faces]})
        if draw_dir is not None:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(draw_faces(img, faces), cv2.COLOR_RGB2BGR))
            atomic_write_bytes(Path(draw_dir) / f"{path.stem}_faces.png", buf.tobytes())
    if all("error" in r for r in results):  # nothing could be read: an error, not a JSON of errors
        first = results[0]["error"]
        raise UserError(first if len(results) == 1 else f"detect: none of the {len(results)} images "
                        f"could be read (first: {first})")
    return results
