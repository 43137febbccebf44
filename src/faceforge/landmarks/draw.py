"""Drawing 88 landmarks (points and per-group outlines) on images and every frame of a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.errors import UserError
from faceforge.io.folders import KEEP_SUFFIXES, output_name

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
# RGB colour per group, and the outlines as (start, stop, closed) within the group
GROUP_STYLE = {
    "contour": ((255, 215, 0), [(0, 21, False)]),
    "left_eye": ((0, 200, 255), [(0, 8, True)]),
    "right_eye": ((0, 200, 255), [(0, 8, True)]),
    "left_brow": ((255, 120, 0), [(0, 8, True)]),
    "right_brow": ((255, 120, 0), [(0, 8, True)]),
    "mouth": ((255, 40, 120), [(0, 12, True), (12, 22, True)]),
    "nose": ((60, 255, 60), [(0, 5, False), (5, 13, False)]),
}


def draw_landmarks(img: np.ndarray, points: np.ndarray, box=None, thickness: int | None = None) -> np.ndarray:
    """A copy of RGB ``img`` with the 88 ``points`` (and the face ``box``) drawn."""
    import cv2

    from faceforge.data.synthetic import LANDMARK_GROUPS

    out = np.ascontiguousarray(img.copy())
    pts = np.asarray(points, np.float64)
    span = float(np.ptp(pts[:, 0])) if len(pts) else 100.0
    lw = thickness or max(1, int(round(span / 150)))
    r = max(1, int(round(span / 120)))
    sh = 4
    fx = np.round(pts * (1 << sh)).astype(np.int32)
    if box is not None:
        b = np.round(np.asarray(box, np.float64) * (1 << sh)).astype(np.int32)
        corners = (int(b[0]), int(b[1])), (int(b[2]), int(b[3]))
        cv2.rectangle(out, *corners, (255, 255, 255), lw, cv2.LINE_AA, sh)
    for name, sl in LANDMARK_GROUPS.items():
        colour, lines = GROUP_STYLE[name]
        g = fx[sl]
        for a, b, closed in lines:
            cv2.polylines(out, [g[a:b]], closed, colour, lw, cv2.LINE_AA, sh)
        for p in g:
            cv2.circle(out, (int(p[0]), int(p[1])), r << sh, colour, -1, cv2.LINE_AA, sh)
    return out


def draw_faces(img: np.ndarray, results) -> np.ndarray:
    for face, pts in results:
        img = draw_landmarks(img, pts, face.box)
    return img


def check_draw_output(src: str | Path, out: str | Path) -> None:
    """``--out`` must be writable as what ``src`` gives (an MP4 for a video, an image type OpenCV
    encodes otherwise): said before the model is loaded, not after the work."""
    if Path(src).suffix.lower() in VIDEO_SUFFIXES:
        if Path(out).suffix.lower() != ".mp4":
            raise UserError(f"--out: videos are written as MP4; got '{Path(out).name}'")
        return
    from faceforge.io.images import check_output_image

    check_output_image(out)


def draw_file(src: str | Path, out: str | Path, landmarker, progress: bool = False) -> dict:
    """Draw on an image or on every frame of a video (written as MP4, codec mp4v)."""
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise UserError(f"input not found: {src}")
    check_draw_output(src, out)
    if src.suffix.lower() in VIDEO_SUFFIXES:
        return draw_video(src, out, landmarker, progress)
    import cv2

    from faceforge.atomic import atomic_write_bytes
    from faceforge.io.images import CorruptImage, read_image

    try:
        img = read_image(src)
    except CorruptImage as e:
        raise UserError(str(e)) from None
    results = landmarker(img)
    suffix = out.suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(draw_faces(img, results), cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"--out: cannot write images of type '{suffix}'")
    atomic_write_bytes(out, buf.tobytes())
    return {"input": str(src), "output": str(out), "faces": len(results),
            "landmarks": [np.round(p, 2).tolist() for _, p in results]}


def draw_files(srcs: list[str | Path], out: str | Path, landmarker, progress: bool = False) -> list[dict]:
    """Draw on several images/videos into the folder ``out``: each as ``out/NAME`` (a video as
    ``NAME.mp4``, a format OpenCV cannot write as ``NAME.png``), one result per input."""
    out = Path(out)
    if out.suffix.lower() in VIDEO_SUFFIXES or out.is_file() or out.suffix.lower() in KEEP_SUFFIXES:
        raise UserError(f"--out {out}: {len(srcs)} inputs are drawn into a folder, not one file")
    names: dict[str, Path] = {}
    for src in map(Path, srcs):
        name = src.stem + ".mp4" if src.suffix.lower() in VIDEO_SUFFIXES else output_name(src.name)
        if name in names:
            raise UserError(f"{src}: its output {out / name} would replace that of {names[name]}")
        names[name] = src
    out.mkdir(parents=True, exist_ok=True)
    return [draw_file(src, out / name, landmarker, progress) for name, src in names.items()]


def draw_video(src: Path, out: Path, landmarker, progress: bool = False) -> dict:
    import os

    import cv2
    from tqdm import tqdm

    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out: videos are written as MP4; got '{out.name}'")
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise UserError(f"{src}: cannot open the video")
    from faceforge.io.images import CorruptImage, check_size

    try:  # frames go through the same pixel limit as images
        check_size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), str(src))
    except CorruptImage as e:
        cap.release()
        raise UserError(str(e)) from None
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.mp4")  # renamed into place when complete
    writer = None
    frames = faces = 0
    try:
        with tqdm(total=n, disable=not progress, unit="frame", desc="landmarks") as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                results = landmarker(rgb)
                faces += len(results)
                drawn = cv2.cvtColor(draw_faces(rgb, results), cv2.COLOR_RGB2BGR)
                if writer is None:
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise UserError(f"--out: OpenCV cannot write MP4 (mp4v) to {out}")
                writer.write(drawn)
                frames += 1
                bar.update(1)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{src}: no frames could be read")
    os.replace(tmp, out)
    return {"input": str(src), "output": str(out), "frames": frames, "faces": faces, "fps": fps}
