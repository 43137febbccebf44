"""Every command group against bad input: missing, empty, non-image, truncated, header bomb, extreme
aspect, wrong types and ranges (issue 13, sections 1, 2 and 7).

Each case runs ``faceforge.cli.main.main`` in-process and must end with exit status 2 and exactly
one stderr line ``faceforge: error: ...``: no traceback, no usage dump. Inside a folder a bad image
is skipped and counted instead (``test_bad_images_inside_a_folder_are_counted``).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.cli.main import main
from faceforge.io.images import CorruptImage, decode_image, image_size, read_image, set_max_pixels


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny valid-looking PNG whose header declares a huge image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _face_like(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (112, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """The bad (and a few good) inputs every case draws from."""
    import torch

    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("bad_inputs")
    good = cv2.imencode(".jpg", _face_like(0))[1].tobytes()
    files = {
        "good": good,
        "text": b"this is a text file, not an image\n",
        "zero": b"",
        "truncated": good[: len(good) // 3],
        "bomb": header_bomb_png(),
        "strip": cv2.imencode(".png", np.zeros((1, 20000, 3), np.uint8))[1].tobytes(),
    }
    paths: dict[str, Path] = {}
    for name, data in files.items():
        ext = ".png" if name in ("bomb", "strip") else ".jpg"
        paths[name] = root / f"{name}{ext}"
        paths[name].write_bytes(data)
    paths["empty_dir"] = root / "empty_dir"
    paths["empty_dir"].mkdir()
    (root / "empty_tree" / "person").mkdir(parents=True)  # an identity folder without images
    paths["empty_tree"] = root / "empty_tree"
    for kind in ("text", "zero", "truncated", "bomb"):  # trees holding only one kind of bad file
        d = root / f"tree_{kind}" / "person"
        d.mkdir(parents=True)
        (d / paths[kind].name).write_bytes(files[kind])
        paths[f"tree_{kind}"] = d.parent
    mixed = root / "mixed"
    for i in range(2):
        d = mixed / f"id{i}"
        d.mkdir(parents=True)
        for k in range(3):
            (d / f"{k}.jpg").write_bytes(cv2.imencode(".jpg", _face_like(10 * i + k))[1].tobytes())
    for kind in ("text", "zero", "truncated", "bomb"):
        (mixed / "id0" / paths[kind].name).write_bytes(files[kind])
    paths["mixed"] = mixed
    paths["missing"] = root / "does_not_exist"
    paths["file_parent"] = root / "good.jpg" / "sub"  # a path under a regular file
    torch.manual_seed(0)
    paths["ckpt"] = root / "tiny.ckpt"
    save_checkpoint(paths["ckpt"], build_backbone("mobilefacenet_tiny"))
    paths["empty_yaml"] = root / "empty.yaml"
    paths["empty_yaml"].write_text("")
    paths["text_onnx"] = root / "model.onnx"
    paths["text_onnx"].write_text("not onnx")
    paths["text_ffpk"] = root / "data.ffpk"
    paths["text_ffpk"].write_text("not a pack")
    paths["out"] = root / "out"
    return paths


def run(argv: list[str]) -> tuple[int, str]:
    """Exit status and stderr of one in-process run (argparse errors exit through SystemExit)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def assert_one_line_error(argv: list[str]) -> str:
    code, err = run(argv)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("faceforge: error: "), (argv, err)
    return lines[0]


def _out(w, name: str) -> str:
    return str(w["out"] / name)


# (case id, argv builder). ``{x}`` names a path of the fixture; OUT:<name> a fresh output path.
CASES: list[tuple[str, list[str]]] = [
    # missing inputs
    ("align-missing", ["align", "{missing}", "OUT:a1"]),
    ("clean-missing", ["data", "clean", "{missing}", "OUT:c1"]),
    ("balance-missing", ["data", "balance", "{missing}", "OUT:b1"]),
    ("merge-missing", ["data", "merge", "{missing}", "{missing}", "OUT:m1"]),
    ("shallow-missing", ["data", "shallow", "{missing}", "OUT:s1"]),
    ("stats-missing", ["data", "stats", "{missing}"]),
    ("pack-missing", ["data", "pack", "{missing}", "OUT:p1.ffpk"]),
    ("convert-missing", ["data", "convert", "{missing}", "--to", "lst", "OUT:c1.lst"]),
    ("mask-missing", ["data", "mask", "{missing}", "OUT:k1"]),
    ("eval-verify-missing-model", ["eval", "verify", "--model", "{missing}", "--pairs", "pairs:{missing}"]),
    ("eval-identify-missing", ["eval", "identify", "--model", "{ckpt}", "--gallery", "{missing}",
                               "--probe", "{missing}"]),
    ("eval-megaface-missing", ["eval", "megaface", "--model", "{ckpt}", "--probe", "{missing}",
                               "--distractors", "random:10"]),
    ("eval-suite-missing", ["eval", "suite", "{missing}", "--model", "{ckpt}"]),
    ("export-missing", ["export", "{missing}", "--onnx", "OUT:x.onnx"]),
    ("card-missing", ["card", "{missing}"]),
    ("calibrate-missing", ["calibrate", "{missing}", "--pairs", "pairs:{missing}"]),
    ("gallery-list-missing", ["gallery", "list", "{missing}"]),
    ("gallery-create-missing-model", ["gallery", "create", "OUT:g1", "--model", "{missing}"]),
    ("embed-missing", ["embed", "{missing}", "--model", "{ckpt}", "--out", "OUT:e1.npz", "--quiet"]),
    ("verify-missing", ["verify", "{missing}", "{good}", "--model", "{ckpt}", "--aligned"]),
    ("identify-missing-gallery", ["identify", "{good}", "--gallery", "{missing}", "--model", "{ckpt}"]),
    ("landmarks-eval-missing", ["landmarks", "eval", "--model", "{missing}", "--data", "synthetic:2x2"]),
    ("landmarks-draw-missing", ["landmarks", "draw", "{missing}", "--model", "{missing}",
                                "--out", "OUT:d.png"]),
    ("landmarks-clean-missing", ["landmarks", "clean", "{missing}"]),
    ("landmarks-export-missing", ["landmarks", "export", "{missing}", "OUT:l.onnx"]),
    ("import-missing", ["import", "{missing}", "--from", "arcface_torch", "--backbone", "iresnet18",
                        "--out", "OUT:i.ckpt"]),
    ("train-missing-config", ["train", "{missing}"]),
    ("landmarks-train-missing-config", ["landmarks", "train", "{missing}"]),
    # empty inputs: an error in every command alike
    ("align-empty", ["align", "{empty_dir}", "OUT:a2"]),
    ("align-empty-tree", ["align", "{empty_tree}", "OUT:a3"]),
    ("clean-empty", ["data", "clean", "{empty_dir}", "OUT:c2"]),
    ("balance-empty", ["data", "balance", "{empty_tree}", "OUT:b2"]),
    ("merge-empty", ["data", "merge", "{empty_dir}", "{empty_tree}", "OUT:m2"]),
    ("shallow-empty", ["data", "shallow", "{empty_tree}", "OUT:s2"]),
    ("stats-empty", ["data", "stats", "{empty_tree}"]),
    ("pack-empty", ["data", "pack", "{empty_tree}", "OUT:p2.ffpk"]),
    ("mask-empty", ["data", "mask", "{empty_tree}", "OUT:k2"]),
    ("eval-identify-empty", ["eval", "identify", "--model", "{ckpt}", "--gallery", "{empty_tree}",
                             "--probe", "{empty_tree}"]),
    ("embed-zero-byte", ["embed", "{zero}", "--model", "{ckpt}", "--out", "OUT:e2.npz",
                         "--aligned", "--quiet"]),
    ("stats-text-ffpk", ["data", "stats", "{text_ffpk}"]),
    ("card-text-onnx", ["card", "{text_onnx}"]),
    # single bad images: a one-line error
    ("embed-text", ["embed", "{text}", "--model", "{ckpt}", "--out", "OUT:e3.npz", "--quiet"]),
    ("embed-truncated", ["embed", "{truncated}", "--model", "{ckpt}", "--out", "OUT:e4.npz",
                         "--aligned", "--quiet"]),
    ("embed-bomb", ["embed", "{bomb}", "--model", "{ckpt}", "--out", "OUT:e5.npz", "--quiet"]),
    ("embed-strip", ["embed", "{strip}", "--model", "{ckpt}", "--out", "OUT:e6.npz", "--quiet"]),
    ("detect-text", ["detect", "{text}"]),
    ("detect-bomb", ["detect", "{bomb}", "{truncated}"]),
    ("detect-missing", ["detect", "{missing}"]),
    ("verify-text", ["verify", "{text}", "{good}", "--model", "{ckpt}", "--aligned"]),
    ("verify-bomb", ["verify", "{bomb}", "{good}", "--model", "{ckpt}"]),
    ("verify-strip", ["verify", "{strip}", "{good}", "--model", "{ckpt}"]),
    ("verify-truncated", ["verify", "{truncated}", "{good}", "--model", "{ckpt}", "--aligned"]),
    ("landmarks-draw-not-landmark-model", ["landmarks", "draw", "{bomb}", "--model", "{ckpt}",
                                           "--out", "OUT:d2.png"]),
    # folders holding nothing usable: vacuous results are errors
    ("mask-only-bad", ["data", "mask", "{tree_bomb}", "OUT:k3", "--quiet"]),
    ("eval-identify-no-usable-probe", ["eval", "identify", "--model", "{ckpt}", "--gallery", "{mixed}",
                                       "--probe", "{tree_text}"]),
    ("eval-megaface-too-few-distractors", ["eval", "megaface", "--model", "{ckpt}", "--probe", "{mixed}",
                                           "--distractors", "random:20", "--sizes", "100"]),
    # output paths the OS refuses
    ("clean-out-under-file", ["data", "clean", "{mixed}", "{file_parent}"]),
    ("synth-out-under-file", ["synth", "{file_parent}", "-n", "1", "-k", "1", "--quiet"]),
    ("pack-out-under-file", ["data", "pack", "folder:{mixed}", "{file_parent}", "--quiet", "--workers", "1"]),
    # wrong types and ranges
    ("clean-quality-zero", ["data", "clean", "{mixed}", "OUT:c3", "--quality", "0"]),
    ("clean-quality-text", ["data", "clean", "{mixed}", "OUT:c4", "--quality", "high"]),
    ("balance-cap-negative", ["data", "balance", "{mixed}", "OUT:b3", "--cap", "-1"]),
    ("align-workers-negative", ["align", "{mixed}", "OUT:a4", "--workers", "-1"]),
    ("align-size-tiny", ["align", "{mixed}", "OUT:a5", "--size", "4x4"]),
    ("train-batch-negative", ["train", "--set", "data.batch_size=-4", "--set", "output=OUT:t1"]),
    ("train-epochs-negative", ["train", "--set", "train.epochs=-1", "--set", "output=OUT:t2"]),
    ("train-lr-zero", ["train", "--set", "optim.lr=0", "--set", "output=OUT:t3"]),
    ("train-lr-nan", ["train", "--set", "optim.lr=.nan", "--set", "output=OUT:t4"]),
    ("train-epochs-text", ["train", "--set", "train.epochs=ten", "--set", "output=OUT:t5"]),
    ("train-repeat-zero", ["train", "--repeat", "0"]),
    ("train-device-cuda7", ["train", "--set", "device=cuda:7", "--set", "output=OUT:t6"]),
    ("landmarks-train-device-cuda7", ["landmarks", "train", "--set", "device=cuda:7",
                                      "--set", "output=OUT:t7"]),
    ("landmarks-train-batch-zero", ["landmarks", "train", "--set", "data.batch_size=0"]),
    ("verify-threshold-nan", ["verify", "{good}", "{good}", "--model", "{ckpt}", "--threshold", "nan"]),
    ("verify-threshold-range", ["verify", "{good}", "{good}", "--model", "{ckpt}", "--threshold", "2"]),
    ("eval-batch-zero", ["eval", "verify", "--model", "{ckpt}", "--pairs", "pairs:x", "--batch-size", "0"]),
    ("eval-device-cuda7", ["eval", "verify", "--model", "{ckpt}", "--pairs", "pairs:x",
                           "--device", "cuda:7"]),
    ("embed-device-bogus", ["embed", "{good}", "--model", "{ckpt}", "--out", "OUT:e7.npz",
                            "--device", "gpu9"]),
    ("megaface-sizes-text", ["eval", "megaface", "--model", "{ckpt}", "--probe", "{mixed}",
                             "--distractors", "random:20", "--sizes", "ten"]),
    ("gallery-search-topk-zero", ["gallery", "search", "OUT:g2", "{good}", "--model", "{ckpt}",
                                  "--top-k", "0"]),
    ("serve-port-range", ["serve", "--gallery", "OUT:g3", "--model", "{ckpt}", "--port", "70000"]),
    ("synth-identities-zero", ["synth", "OUT:y1", "-n", "0", "-k", "1"]),
    ("demo-minutes-zero", ["demo", "--minutes", "0", "--output", "OUT:demo"]),
    ("calibrate-far-range", ["calibrate", "{ckpt}", "--pairs", "pairs:x", "--far", "1.5"]),
    ("unknown-option", ["data", "clean", "{mixed}", "OUT:c5", "--qualty", "9"]),
]


def _argv(w, template: list[str]) -> list[str]:
    out = []
    for a in template:
        if a.startswith("OUT:"):
            a = _out(w, a[4:])
        elif "OUT:" in a:
            key, _, rest = a.partition("OUT:")
            a = key + _out(w, rest)
        out.append(a.format(**{k: str(v) for k, v in w.items()}))
    return out


@pytest.mark.parametrize("case, template", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_error(w, case, template):
    assert_one_line_error(_argv(w, template))


def test_bad_images_inside_a_folder_are_counted(w):
    """Inside a folder every bad kind is skipped and counted; the run succeeds."""
    code, err = run(["data", "clean", str(w["mixed"]), _out(w, "clean_ok")])
    assert code == 0, err
    report = json.loads((w["out"] / "clean_ok" / "clean_report.json").read_text())
    assert report["counts"]["corrupt"] == 4 and report["counts"]["images_out"] == 6
    code, err = run(["data", "pack", f"folder:{w['mixed']}", _out(w, "ok.ffpk"), "--quiet", "--workers", "1"])
    assert code == 0, err
    code, err = run(["data", "balance", str(w["mixed"]), _out(w, "bal_ok"), "--drop-at-most", "0",
                     "--double-above", "0", "--keep-above", "0", "--cap", "100"])
    assert code == 0, err
    kept = sorted(p.name for p in (w["out"] / "bal_ok").rglob("*.jpg"))
    assert len(kept) == 6  # the text file and the 0-byte/truncated JPEGs are not copied as images
    code, err = run(["data", "merge", str(w["mixed"]), str(w["tree_text"]), _out(w, "merge_ok")])
    assert code == 0, err
    merged = json.loads((w["out"] / "merge_ok" / "merge_report.json").read_text())
    assert merged["images"] == 6 and merged["corrupt"] == 5  # 4 in mixed, 1 in tree_text


def test_header_bomb_is_refused_before_decoding():
    bomb = header_bomb_png()
    assert len(bomb) < 200 and image_size(bomb) == (100_000, 100_000)
    with pytest.raises(CorruptImage, match="over the 40000000-pixel limit"):
        decode_image(bomb, "bomb.png")


def test_formats_without_a_checked_header_are_refused():
    hdr = cv2.imencode(".hdr", np.zeros((4, 4, 3), np.float32))[1].tobytes()
    with pytest.raises(CorruptImage, match="not a supported image format"):
        decode_image(hdr, "x.hdr")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
def test_header_size_matches_decoder(ext):
    img = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    data = cv2.imencode(ext, img[..., 0] if ext == ".pgm" else img)[1].tobytes()
    assert image_size(data) == (53, 37)
    assert decode_image(data).shape == (37, 53, 3)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((40, 50, 3), np.uint8))[1].tobytes())
    try:
        set_max_pixels(1999)
        with pytest.raises(CorruptImage, match="50x40 is over the 1999-pixel limit"):
            read_image(path)
        set_max_pixels(None)
        monkeypatch.setenv("FACEFORGE_MAX_PIXELS", "2000")
        assert read_image(path).shape == (40, 50, 3)
        monkeypatch.setenv("FACEFORGE_MAX_PIXELS", "1000")
        with pytest.raises(CorruptImage):
            read_image(path)
    finally:
        set_max_pixels(None)


@pytest.mark.parametrize("name", ["retinaface", "mtcnn"])
@pytest.mark.parametrize("shape", [(1, 20000, 3), (20000, 1, 3), (9, 20000, 3), (40, 40000, 3)])
def test_detectors_cope_with_extreme_aspect(name, shape):
    from faceforge.align.detectors import get_detector

    assert get_detector(name).detect(np.zeros(shape, np.uint8)) == []


def test_broken_pipe_exits_quietly(monkeypatch, capsys):
    import faceforge.cli.models as models

    def flood(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(models, "_models", flood)
    assert main(["models"]) == 141
    assert capsys.readouterr().err == ""


def test_closed_stdout_pipe_is_quiet():
    """`faceforge models | head -0`: the reader is gone before anything is written."""
    import os
    import subprocess
    import sys

    r, wfd = os.pipe()
    os.close(r)  # a pipe without a reader: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "faceforge", "models"], stdout=wfd,
                              stderr=subprocess.PIPE, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        os.close(wfd)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
