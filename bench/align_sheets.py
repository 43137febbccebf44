"""Contact sheets for docs/alignment.md: aligned faces, and the same faces with synthetic masks.

    .venv/bin/python bench/align_sheets.py ALIGNED_DIR [--textures ../shared/data/masks] [--out docs]

ALIGNED_DIR is the output of ``faceforge align`` (e.g. on ../shared/data/celeba299). One image is
taken from evenly spaced identities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = t
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("aligned", type=Path)
    parser.add_argument("--textures", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=1, help="blocks of masked rows (4 rows each)")
    args = parser.parse_args()

    import cv2

    from faceforge.atomic import atomic_write_bytes
    from faceforge.data.masks import apply_mask, file_rng, load_textures
    from faceforge.io.images import read_image

    idents = sorted(p for p in args.aligned.iterdir() if p.is_dir())
    n = args.cols * args.rows
    picks = [idents[int(i)] for i in np.linspace(0, len(idents) - 1, n)]
    files = [sorted(p.glob("*.jpg"))[0] for p in picks]
    faces = [read_image(f) for f in files]

    def save(name: str, sheet: np.ndarray) -> None:
        bgr = cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        atomic_write_bytes(args.out / name, buf.tobytes())
        print(f"{args.out / name}: {sheet.shape[1]}x{sheet.shape[0]}, {len(buf) // 1024} KiB")

    save("contact_sheet_aligned.png", grid(faces, args.cols))
    textures = load_textures(args.textures) if args.textures else None
    tiles = []
    # per block of `cols` faces: a row of aligned faces, two rows of drawn masks, a row of textured ones
    half = args.cols
    for start in range(0, args.blocks * half, half):
        chunk = list(zip(files[start : start + half], faces[start : start + half]))
        rel = [f"{f.parent.name}/{f.name}" for f, _ in chunk]
        tiles += [img for _, img in chunk]
        tiles += [apply_mask(img, file_rng(0, r)) for r, (_, img) in zip(rel, chunk)]
        tiles += [apply_mask(img, file_rng(1, r)) for r, (_, img) in zip(rel, chunk)]
        if textures:
            tiles += [apply_mask(img, file_rng(2, r), texture=textures) for r, (_, img) in zip(rel, chunk)]
    save("contact_sheet_masked.png", grid(tiles, half))


if __name__ == "__main__":
    main()
