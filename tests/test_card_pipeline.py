"""A model card drives the pipeline: ``eval verify`` scores with the card's flip and mean subtraction
unless the command line says otherwise, cards are found under the names people use, ``faceforge card``
shows what is used, and ``verification.json`` records it all. Real photos: ORL faces (tight crops)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from conftest import need_retinaface, shared_path
from faceforge.cli.main import main
from faceforge.embed.card import card_names, find_card, load_card
from faceforge.eval.verification import facex_folds, kfold_ids, pair_scores, verify_embeddings

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def orl_pairs(tmp_path_factory):
    """40 interleaved same / different pairs of real ORL faces (FaceX-Zoo list layout)."""
    root = shared_path("data", "orl")
    lines = []
    for i in range(1, 21):
        lines.append(f"s{i}/1.pgm s{i}/2.pgm 1")
        lines.append(f"s{i}/3.pgm s{i + 20}/3.pgm 0")
    path = tmp_path_factory.mktemp("orl") / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return f"facex:{path},root={root}"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_mfn_ckpt, tmp_path_factory):
    """A tiny faceforge model exported to ONNX (its card lives in the metadata: flip sum)."""
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    assert main(["export", str(tiny_mfn_ckpt), "--onnx", str(out)]) == 0
    return out


def _copy(src, dst_dir, name="m.onnx", strip=False):
    import onnx

    model = onnx.load(str(src))
    if strip:  # a foreign export: no faceforge metadata
        del model.metadata_props[:]
    dst_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst_dir / name))
    return dst_dir / name


def _verify(model, pairs, out, *extra):
    assert main(["eval", "verify", "--model", str(model), "--pairs", pairs, "--protocol", "facex",
                 "--quiet", "--out", str(out), *extra]) == 0
    return json.loads((out / "verification.json").read_text())


def test_card_flip_and_mean_subtract_drive_eval_verify(tiny_onnx, orl_pairs, tmp_path, capsys):
    model = _copy(tiny_onnx, tmp_path / "m")
    (tmp_path / "m" / "m.card.yaml").write_text("flip: concat\nmean_subtract: true\n")
    res = _verify(model, orl_pairs, tmp_path / "a")
    printed = capsys.readouterr().out
    assert res["flip"] == "concat" and res["flip_from"] == "model card"
    assert res["mean_subtract"] is True and res["mean_subtract_from"] == "model card"
    assert "flip concat (model card), mean subtraction on (model card)" in printed
    assert "scored 40 of 40 pairs" in printed
    # what was used is recorded: model file, card and where it came from, preprocessing
    pre = res["preprocessing"]
    assert pre["model_path"] == str(model) and pre["card"]["flip"] == "concat"
    assert pre["card_origin"].startswith("beside the model") and pre["channel_order"] == "rgb"
    assert res["protocol_pairs"] == res["pairs"] == 40 and res["complete"] is True
    # the same numbers as asking for it on the command line, without the card
    plain = _copy(tiny_onnx, tmp_path / "p")
    same = _verify(plain, orl_pairs, tmp_path / "b", "--flip", "concat", "--mean-subtract")
    assert same["flip_from"] == "command line" and same["fold_accuracy"] == res["fold_accuracy"]
    assert same["best_threshold"] == res["best_threshold"]
    # the command line overrides the card
    over = _verify(model, orl_pairs, tmp_path / "c", "--flip", "none", "--no-mean-subtract")
    assert (over["flip"], over["flip_from"], over["mean_subtract"]) == ("none", "command line", False)
    # a result file is readable like any other output (it was 0600)
    mode = stat.S_IMODE((tmp_path / "a" / "verification.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_without_a_card_the_metadata_or_default_applies_and_is_said(tiny_onnx, orl_pairs, tmp_path, capsys):
    res = _verify(_copy(tiny_onnx, tmp_path / "m"), orl_pairs, tmp_path / "a")
    assert res["flip"] == "sum" and res["flip_from"] == "model card"  # faceforge export's metadata
    foreign = _copy(tiny_onnx, tmp_path / "f", "foreign.onnx", strip=True)
    capsys.readouterr()
    res = _verify(foreign, orl_pairs, tmp_path / "b")
    err = capsys.readouterr().err
    assert res["flip"] == "sum" and res["flip_from"] == "default"
    lines = [line for line in err.splitlines() if "no model card" in line]
    assert len(lines) == 1 and "foreign.yaml" in lines[0] and "assuming RGB, 112x112 NCHW" in lines[0]


@pytest.mark.parametrize("name", ["m.yaml", "m.yml", "m.json", "m.card.json", "m.card.yaml", "m.onnx.yaml"])
def test_card_found_beside_the_model_under_usual_names(tiny_onnx, tmp_path, name):
    model = _copy(tiny_onnx, tmp_path, strip=True)
    text = '{"flip": "concat"}' if name.endswith(".json") else "flip: concat\n"
    (tmp_path / name).write_text(text)
    card, origin = find_card(model)
    assert card.flip == "concat" and origin == f"beside the model: {tmp_path / name}"
    assert tmp_path / name in card_names(model)


def test_card_command_shows_the_card_and_its_origin_without_contradiction(tiny_onnx, tmp_path, capsys):
    import onnx

    from faceforge.embed.card import card_from_onnx

    # a foreign 112x96 graph: the inferred card says sphereface, and so must its note
    m = onnx.load(str(_copy(tiny_onnx, tmp_path, strip=True)))
    for dim, value in zip(m.graph.input[0].type.tensor_type.shape.dim[2:], (112, 96)):
        dim.dim_value = value
    onnx.save(m, str(tmp_path / "narrow.onnx"))  # only the card is inferred: the graph need not run
    card = card_from_onnx(tmp_path / "narrow.onnx")
    assert card.template == "sphereface"
    assert any("template sphereface" in n for n in card.notes)
    assert not any("arcface" in n.lower() for n in card.notes)

    assert main(["card", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "# card: inferred from the graph shape" in out and "template: arcface" in out
    (tmp_path / "m.card.yaml").write_text("flip: concat\nchannel_order: bgr\n")
    assert main(["card", str(tmp_path / "m.onnx"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["origin"] == f"beside the model: {tmp_path / 'm.card.yaml'}"
    assert shown["card"]["flip"] == "concat" and shown["card"]["channel_order"] == "bgr"
    assert load_card(tmp_path / "m.card.yaml").declared == {"flip", "channel_order"}


def _loop_mean_subtract_accuracy(emb, issame, k=10):
    """SphereFace-style scoring written out: per fold, centre on the other folds' mean, normalise,
    cosine, then the FaceX-Zoo threshold rule on the other folds."""
    folds = kfold_ids(len(issame), k)
    accs = []
    for f in range(k):
        train_rows = np.repeat(folds != f, 2)
        mu = emb[train_rows].astype(np.float64).mean(axis=0)
        centred = emb.astype(np.float64) - mu
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        scores = pair_scores(centred.astype(np.float32))
        accs.append(facex_folds(scores, issame, folds, k)["fold_accuracy"][f])
    return np.array(accs)


def test_mean_subtraction_matches_a_written_out_loop_and_helps_offset_features():
    rng = np.random.default_rng(0)
    n, d = 200, 16
    ids = rng.normal(size=(n, d))
    issame = np.arange(n) % 2 == 0
    other = np.where(issame[:, None], ids, rng.normal(size=(n, d)))
    emb = np.stack([ids, other], axis=1).reshape(2 * n, d) + rng.normal(scale=0.8, size=(2 * n, d))
    emb = (emb + 6.0).astype(np.float32)  # a large shared offset, as un-centred features have
    res = verify_embeddings(emb, issame, protocol="facex", mean_subtract=True)
    np.testing.assert_array_equal(res["fold_accuracy"], _loop_mean_subtract_accuracy(emb, issame))
    plain = verify_embeddings(emb, issame, protocol="facex")
    assert res["accuracy"] > plain["accuracy"]
    ins = verify_embeddings(emb, issame, protocol="insightface", mean_subtract=True)
    assert ins["mean_subtract"] and ins["accuracy"] > verify_embeddings(emb, issame)["accuracy"]


def test_card_option_on_embed_and_align(tiny_mfn_ckpt, tmp_path):
    """``--card`` reaches the commands that embed or align for a model (a real colour photo)."""
    import cv2

    photo = cv2.imread(str(shared_path("data", "photos", "biden.jpg")))
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), cv2.resize(photo, (112, 112), interpolation=cv2.INTER_AREA))
    (tmp_path / "bgr.yaml").write_text("channel_order: bgr\n")
    outs = {}
    for name, extra in (("plain", []), ("bgr", ["--card", str(tmp_path / "bgr.yaml")])):
        out = tmp_path / f"{name}.npz"
        assert main(["embed", str(crop), "--model", str(tiny_mfn_ckpt), "--aligned", "--out", str(out),
                     "--quiet", *extra]) == 0
        with np.load(out) as z:
            outs[name] = z["embeddings"][0]
    assert float(outs["plain"] @ outs["bgr"]) < 0.9999  # the card's channel order was applied

    (tmp_path / "sphere.yaml").write_text("template: sphereface\ninput_size: [112, 96]\n")
    src = tmp_path / "src" / "p"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "obama.jpg"), cv2.imread(str(shared_path("data", "photos", "obama.jpg"))))
    need_retinaface()
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--quiet",
                 "--card", str(tmp_path / "sphere.yaml")]) == 0
    assert cv2.imread(str(tmp_path / "dst" / "p" / "obama.jpg")).shape == (112, 96, 3)
