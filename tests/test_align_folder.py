"""align_folder / faceforge align on a small real tree (celeba299 photos, a group photo, bad files)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from faceforge.align.detectors import Face
from faceforge.align.folder import align_folder, parse_size, pick_faces
from faceforge.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _need_detector():
    pytest.importorskip("onnxruntime", reason="face detection needs onnxruntime")
    if not (SHARED / "celeba299").is_dir() or not (SHARED / "photos").is_dir():
        pytest.skip(f"shared data absent: {SHARED}")


@pytest.fixture
def tree(tmp_path):
    """src/<id>/: two celeba identities (3 photos each), a group photo, a blank and a corrupt file."""
    _need_detector()
    src = tmp_path / "src"
    for ident in sorted(p.name for p in (SHARED / "celeba299").iterdir())[:2]:
        (src / ident).mkdir(parents=True)
        for f in sorted((SHARED / "celeba299" / ident).glob("*.jpg"))[:3]:
            shutil.copy(f, src / ident / f.name)
    odd = src / "odd"
    odd.mkdir()
    import cv2

    for name, out in (("t1.jpg", "group.jpg"), ("obama.jpg", "obama.jpg")):
        img = cv2.imread(str(SHARED / "photos" / name))  # halved: keeps the tests light
        cv2.imwrite(str(odd / out), cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))

    cv2.imwrite(str(odd / "blank.png"), np.full((120, 100, 3), 90, np.uint8))
    (odd / "broken.jpg").write_bytes(b"not a jpeg at all")
    return src


def _report(dst: Path) -> dict[str, list[str]]:
    with open(dst / "align_report.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "status", "faces", "detail"]
    return {r[0]: r for r in rows[1:]}


def test_align_counts_report_and_resume(tree, tmp_path):
    import cv2

    dst = tmp_path / "out"
    counts = align_folder(tree, dst)
    assert counts["images"] == 10 and counts["processed"] == 10
    assert counts["corrupt"] == 1 and counts["no_face"] == 1
    assert counts["aligned"] == 8 and counts["crops_written"] == 8
    assert counts["several_faces"] >= 1  # group.jpg; some celeba photos hold two people too
    report = _report(dst)
    assert report["odd/broken.jpg"][1] == "corrupt"
    assert report["odd/blank.png"][1] == "no_face"
    assert report["odd/group.jpg"][1:3] == ["several_faces", "6"]
    outs = sorted(p for p in dst.rglob("*") if p.is_file() and p.parent != dst)
    assert len(outs) == 8 and not (dst / "odd" / "blank.png").exists()
    for p in outs:
        assert cv2.imread(str(p)).shape == (112, 112, 3)
    summary = json.loads((dst / "align_summary.json").read_text())
    assert summary["aligned"] == 8
    # the source tree is untouched
    names = sorted(p.name for p in (tree / "odd").iterdir())
    assert names == ["blank.png", "broken.jpg", "group.jpg", "obama.jpg"]

    # resume: finished outputs are skipped, failures are retried and stay in the report
    (dst / "odd" / "obama.jpg").unlink()
    again = align_folder(tree, dst)
    assert again["skipped_existing"] == 7 and again["processed"] == 3 and again["aligned"] == 1
    report = _report(dst)
    assert report["odd/group.jpg"][1] == "several_faces" and report["odd/broken.jpg"][1] == "corrupt"


def test_aligned_face_lands_on_template(tree, tmp_path):
    from faceforge.align.detectors import get_detector
    from faceforge.align.transform import ARCFACE_112
    from faceforge.io.images import read_image

    dst = tmp_path / "out"
    align_folder(tree, dst)
    crop = read_image(dst / "odd" / "obama.jpg")
    faces = get_detector("retinaface", score_threshold=0.5).detect(crop)
    assert len(faces) == 1
    # re-detected landmarks sit on the ArcFace template (a few pixels of detector noise)
    assert np.abs(faces[0].landmarks - ARCFACE_112).max() < 5.0


def test_multi_policies(tree, tmp_path):
    skip = align_folder(tree, tmp_path / "skip", multi="skip")
    assert not (tmp_path / "skip" / "odd" / "group.jpg").exists()
    assert _report(tmp_path / "skip")["odd/group.jpg"][1] == "skipped_multi"
    assert skip["skipped_multi"] >= 1
    align_folder(tree, tmp_path / "all", multi="all")
    group = sorted(p.name for p in (tmp_path / "all" / "odd").glob("group*"))
    assert group == ["group.jpg"] + [f"group_face{k}.jpg" for k in range(1, 6)]


def test_sphereface_template_and_size(tree, tmp_path):
    import cv2

    align_folder(tree, tmp_path / "sf", template="sphereface")
    assert cv2.imread(str(tmp_path / "sf" / "odd" / "obama.jpg")).shape == (112, 96, 3)
    align_folder(tree, tmp_path / "big", size=(224, 224))
    assert cv2.imread(str(tmp_path / "big" / "odd" / "obama.jpg")).shape == (224, 224, 3)


def test_refuses_to_write_into_source(tree, tmp_path):
    with pytest.raises(UserError, match="equals the source"):
        align_folder(tree, tree)
    with pytest.raises(UserError, match="inside the source"):
        align_folder(tree, tree / "aligned")
    with pytest.raises(UserError, match="contains the source"):
        align_folder(tree, tmp_path)
    with pytest.raises(UserError, match="not found"):
        align_folder(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(UserError, match="--multi"):
        align_folder(tree, tmp_path / "out", multi="biggest")
    with pytest.raises(UserError, match="unknown detector"):
        align_folder(tree, tmp_path / "out", detector="yolo")


def test_two_workers_match_one(tree, tmp_path):
    one = align_folder(tree, tmp_path / "one", workers=1)
    two = align_folder(tree, tmp_path / "two", workers=2)
    for key in ("aligned", "no_face", "corrupt", "several_faces", "crops_written"):
        assert one[key] == two[key], key
    a = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.jpg"))
    b = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.jpg"))
    assert a == b


def test_cli_align_and_detect(tree, tmp_path, capsys):
    from faceforge.cli.main import main

    assert main(["align", str(tree), str(tmp_path / "cli"), "--quiet", "--size", "112x112"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["aligned"] == 8
    assert main(["align", str(tree), str(tree / "x"), "--quiet"]) == 2
    assert "inside the source" in capsys.readouterr().err
    assert main(["detect", str(SHARED / "photos" / "t1.jpg"), "--output", str(tmp_path / "d.json")]) == 0
    assert len(json.loads((tmp_path / "d.json").read_text())[0]["faces"]) == 6


def _face(x1, y1, x2, y2, score=0.9):
    return Face(np.array([x1, y1, x2, y2], np.float32), score, np.zeros((5, 2), np.float32))


def test_pick_faces_policies():
    big_corner = _face(0, 0, 60, 60)
    small_centre = _face(45, 45, 85, 85)
    faces = [big_corner, small_centre]
    shape = (130, 130, 3)
    assert pick_faces(faces, shape, "largest") == [big_corner]
    assert pick_faces(faces, shape, "largest_center") == [small_centre]
    assert pick_faces(faces, shape, "skip") == []
    assert pick_faces(faces, shape, "all") == faces
    assert pick_faces([big_corner], shape, "skip") == [big_corner]


def test_parse_size():
    assert parse_size("112x96") == (112, 96)
    assert parse_size("128") == (128, 128)
    assert parse_size(None) is None
    for bad in ("112x", "axb", "8x8", "112x96x3"):
        with pytest.raises(UserError, match="--size"):
            parse_size(bad)
