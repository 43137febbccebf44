"""Contact sheets of landmark-driven masks on real faces (docs/masked_faces_*.jpg), and a check of
the crop-mode landmarks against the photo-mode ones.

    python bench/mask_sheets.py [--out docs] [--every 8]

* ``masked_faces_photos.jpg``: raw celeba299 photos (detector -> landmarks -> mask), the face
  region enlarged; row 1 the most turned one way, rows 2-3 near-frontal, row 4 the most turned the
  other way (head turn from the landmarks, ``faceforge.data.mask_mesh.head_turn``, over every
  ``--every``-th photo); shapes cycle surgical / cloth / n95, surgical masks wear the 4 real textures.
* ``masked_faces_crops.jpg``: aligned 112x112 crops, plain | masked (crop mode: no detector).
* ``masked_faces_group.jpg``: ``photos/t1.jpg``, every face masked.

Printed: how far the crop-mode 88 points (fixed box ``CROP_BOX_ARCFACE``) land from the photo-mode
points mapped into the crop, as NME (% of the outer-eye-corner distance).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from faceforge.align.transform import alignment_matrix, transform_points, warp_face
from faceforge.data.mask_mesh import SHAPES, apply_landmark_masks, head_turn
from faceforge.data.masks import file_rng, load_textures
from faceforge.io.images import read_image
from faceforge.landmarks.mask_points import mask_points
from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TILE = 150


def face_tile(img: np.ndarray, box, size: int = TILE) -> np.ndarray:
    x1, y1, x2, y2 = box[:4]
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2 + 0.05 * (y2 - y1), 1.5 * max(x2 - x1, y2 - y1)
    s = size / side
    m = np.float32([[s, 0, size / 2 - cx * s], [0, s, size / 2 - cy * s]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def label(tile: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(tile, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1,
                cv2.LINE_AA)
    return tile


def grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, 0)


def save(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    print(f"wrote {path} ({rgb.shape[1]}x{rgb.shape[0]}, {path.stat().st_size // 1024} KB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args()
    out = Path(args.out)
    textures = load_textures(SHARED / "masks")
    landmarker = FaceLandmarker(LandmarkPredictor.load("builtin"))
    on_crops = mask_points("builtin", "crops")

    found = []
    for f in sorted((SHARED / "celeba299").glob("*/*.jpg"))[:: args.every]:
        img = read_image(f)
        faces = landmarker(img)
        if len(faces) == 1:
            found.append((head_turn(faces[0][1]), f, img, faces[0]))
    found.sort(key=lambda t: t[0])
    frontal = sorted(found, key=lambda t: abs(t[0]))[:12]
    picks = found[:6] + frontal + found[-6:][::-1]
    print(f"{len(found)} single-face photos; head turn {found[0][0]:+.2f} .. {found[-1][0]:+.2f}")

    tiles, crops, errors = [], [], []
    for k, (turn, f, img, (face, pts)) in enumerate(picks):
        shape = SHAPES[k % 3]
        masked, _ = apply_landmark_masks(img, [pts], file_rng(0, f.name), textures, shapes=(shape,))
        tiles.append(label(face_tile(masked, face.box), f"{shape} turn {turn:+.2f}"))
        crop = warp_face(img, face.landmarks, "arcface", (112, 112))
        (crop_pts,) = on_crops(crop)
        photo_pts = transform_points(pts, alignment_matrix(face.landmarks, "arcface", (112, 112)))
        iod = np.linalg.norm(photo_pts[21:29].mean(0) - photo_pts[29:37].mean(0))
        errors.append(np.linalg.norm(crop_pts - photo_pts, axis=1).mean() / iod)
        if k % 2 == 0:
            crop_masked, _ = apply_landmark_masks(crop, [crop_pts], file_rng(1, f.name), textures)
            crops.append(np.concatenate([crop, crop_masked], 1))
    out.mkdir(parents=True, exist_ok=True)
    save(out / "masked_faces_photos.jpg", grid(tiles, 6))
    save(out / "masked_faces_crops.jpg", grid(crops, 4))
    group = read_image(SHARED / "photos" / "t1.jpg")
    faces = landmarker(group)
    masked, _ = apply_landmark_masks(group, [p for _, p in faces], file_rng(0, "t1.jpg"), textures)
    scale = 900 / masked.shape[1]
    small = cv2.resize(masked, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    save(out / "masked_faces_group.jpg", small)
    e = 100 * np.array(errors)
    print(f"crop-mode vs photo-mode points on {len(e)} crops: NME mean {e.mean():.2f}% median "
          f"{np.median(e):.2f}% max {e.max():.2f}% (eye-centre distance)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
