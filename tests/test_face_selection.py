"""One multi-face rule everywhere, and a face not found is not silently dropped (real photos)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import need_retinaface, shared_path
from faceforge.align.select import centre_points, pick_faces
from faceforge.align.transform import template_points
from faceforge.cli.main import main


@pytest.fixture
def tiny_ckpt(tiny_mfn_ckpt):
    return tiny_mfn_ckpt


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """The 6-face group photo, shifted so that the largest face is not the one nearest the centre."""
    need_retinaface()
    img = cv2.imread(str(shared_path("data", "photos", "t1.jpg")))
    img = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("group") / "group.jpg"
    cv2.imwrite(str(path), img)
    return path


def test_sdk_cli_and_align_pick_the_same_face(tiny_ckpt, group, tmp_path):
    from faceforge.deploy.analyzer import FaceAnalyzer
    from faceforge.deploy.commands import faces_in, read_image_file

    img = read_image_file(group)
    analyzer = FaceAnalyzer(tiny_ckpt, threshold=0.5)
    faces = analyzer.detect(img)
    assert len(faces) >= 2
    centred = pick_faces(faces, img.shape, "largest_center")[0]
    largest = pick_faces(faces, img.shape, "largest")[0]
    # the CLI/service path and the SDK's compare take the same face as align
    assert np.allclose(faces_in(analyzer, img)[0].box, centred.box)
    want = analyzer.embed_crops(analyzer.align(img, centred)[None])[0]
    assert np.allclose(analyzer._embedding(str(group), "a"), want, atol=1e-6)
    # --multi on embed chooses the rule, and records the face it took
    for rule, face in (("largest_center", centred), ("largest", largest)):
        out = tmp_path / f"{rule}.npz"
        assert main(["embed", str(group), "--model", str(tiny_ckpt), "--out", str(out), "--multi", rule,
                     "--quiet"]) == 0
        with np.load(out) as z:
            assert z["boxes"].shape[0] == 1 and np.allclose(z["boxes"][0], face.box, atol=0.5)
    # align keeps the same face: its crop equals the SDK's
    src = tmp_path / "src" / "p"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "g.png"), cv2.imread(str(group)))
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--quiet"]) == 0
    crop = cv2.cvtColor(cv2.imread(str(tmp_path / "dst" / "p" / "g.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(crop.astype(int) - analyzer.align(img, centred).astype(int)).mean() < 1.0


def test_centre_points_put_the_template_in_the_middle():
    pts = centre_points((250, 250, 3), "arcface")
    assert np.allclose(pts.mean(axis=0), template_points("arcface").mean(axis=0) * 175 / 112 + 125 - 87.5)
    eye_gap = pts[1, 0] - pts[0, 0]
    assert eye_gap == pytest.approx((template_points("arcface")[1, 0] - template_points("arcface")[0, 0])
                                    * 175 / 112)


def test_align_fallback_center_and_other_detector(tmp_path):
    need_retinaface()
    src = tmp_path / "src" / "x"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "face.jpg"), cv2.imread(str(shared_path("data", "photos", "obama.jpg"))))
    mask = cv2.imread(str(shared_path("data", "masks", "mask_blue.jpg")))  # a texture: no face
    cv2.imwrite(str(src / "noface.jpg"), cv2.resize(mask, (250, 250)))
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "plain"), "--quiet"]) == 0
    plain = json.loads((tmp_path / "plain" / "align_summary.json").read_text())
    assert plain["no_face"] == 1 and not (tmp_path / "plain" / "x" / "noface.jpg").exists()

    assert main(["align", str(tmp_path / "src"), str(tmp_path / "centre"), "--quiet",
                 "--fallback", "center"]) == 0
    counts = json.loads((tmp_path / "centre" / "align_summary.json").read_text())
    assert counts["no_face"] == 0 and counts["fallback"] == {"center": 1} and counts["aligned"] == 2
    crop = cv2.imread(str(tmp_path / "centre" / "x" / "noface.jpg"))
    assert crop.shape == (112, 112, 3)
    report = (tmp_path / "centre" / "align_report.csv").read_text()
    assert "x/noface.jpg,fallback_center" in report

    assert main(["align", str(tmp_path / "src"), str(tmp_path / "o"), "--quiet", "--fallback", "nope"]) == 2


def test_serve_gallery_and_identify_take_card_and_multi(tiny_ckpt, tmp_path):
    """The options reach the analyzer the service (and gallery, identify) is built on."""
    from faceforge.cli.infer import analyzer_from_args
    from faceforge.cli.main import build_parser

    (tmp_path / "bgr.yaml").write_text("channel_order: bgr\n")
    parser = build_parser()
    commands = (["serve", "--gallery", "g"], ["gallery", "enroll", "g", "x"],
                ["identify", "p", "--gallery", "g"])
    for argv in commands:
        args = parser.parse_args([*argv, "--model", str(tiny_ckpt), "--card", str(tmp_path / "bgr.yaml"),
                                  "--multi", "largest"])
        analyzer = analyzer_from_args(args)
        assert analyzer.multi == "largest" and analyzer.card.channel_order == "bgr"
        assert analyzer.embedder.meta.channel_order == "bgr"
