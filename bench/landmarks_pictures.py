"""Pictures of a landmark model on real photos: held-out CelebA identities (prediction in colours, the
teacher's points as white dots) and the group photo ``t1.jpg``.

    python bench/landmarks_pictures.py --model builtin --heldout runs/lm/celeba_test.csv \
        --out-grid docs/landmarks_real_heldout.png --out-group docs/landmarks_real_t1.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _write(path: str, rgb: np.ndarray) -> None:
    import cv2

    from faceforge.atomic import atomic_write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    atomic_write_bytes(path, buf.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--heldout", required=True, help="label file of held-out identities")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--out-grid", required=True)
    ap.add_argument("--out-group", required=True)
    args = ap.parse_args()
    import cv2

    from faceforge.align.detectors import get_detector
    from faceforge.io.images import read_image
    from faceforge.landmarks import crop as C
    from faceforge.landmarks.draw import draw_faces, draw_landmarks
    from faceforge.landmarks.label_file import read_labels
    from faceforge.landmarks.predict import FaceLandmarker, LandmarkPredictor

    lm = FaceLandmarker(LandmarkPredictor.load(args.model), detector_object=get_detector("retinaface"))
    lab = read_labels(args.heldout)
    ids = sorted(set(lab.identities))
    step = max(1, len(ids) // args.n)
    rows = [lab.identities.index(i) for i in ids[::step][: args.n]]  # the first face of spread identities
    tiles = []
    for r in rows:
        img = read_image(lab.paths[r])
        box = lab.boxes[r]
        pts = lm.points_for(img, [box])[0]
        drawn = draw_landmarks(img, pts, box)
        for p in lab.points[r]:  # the teacher's points, white
            cv2.circle(drawn, (int(round(p[0])), int(round(p[1]))), 1, (255, 255, 255), -1, cv2.LINE_AA)
        cx, cy, side = C.square(box, 1.5)
        m = C.crop_matrix(cx, cy, side, args.tile)
        tiles.append(C.warp(drawn, m, args.tile))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    _write(args.out_grid, grid)
    img = read_image(SHARED / "photos" / "t1.jpg")
    _write(args.out_group, draw_faces(img, lm(img)))
    print({"grid": args.out_grid, "faces": len(rows), "group": args.out_group})


if __name__ == "__main__":
    main()
