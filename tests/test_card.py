"""Model cards: strict validation, scale/offset, ONNX inference and contradictions, template fitting."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.embed.card import ModelCard, card_from_dict, load_card, save_card
from faceforge.errors import UserError


def test_defaults_and_round_trip(tmp_path):
    card = card_from_dict({"input_size": "112x96", "template": "sphereface", "channel_order": "BGR",
                           "layout": "nhwc", "embedding_size": 256, "flip": "concat", "score": "l2",
                           "threshold": 0.4, "far": 1e-3})
    assert card.input_size == (112, 96) and card.channel_order == "bgr" and card.layout == "NHWC"
    for suffix in (".yaml", ".json"):
        save_card(card, tmp_path / f"c{suffix}")
        assert load_card(tmp_path / f"c{suffix}").to_dict() == card.to_dict()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"input_szie": [112, 112]}, "did you mean 'input_size'"),
        ({"mean": 127.5, "std": 127.5}, "0..255 pixel units"),
        ({"layout": "CHW"}, "layout"),
        ({"channel_order": "rgba"}, "channel_order"),
        ({"template": "arcfce"}, "did you mean 'arcface'"),
        ({"template": {"points": [[1, 2]] * 4, "size": [112, 112]}}, "template.points"),
        ({"input_size": [112]}, "input_size"),
        ({"mean": 0.5, "scale": 0.1}, "not both"),
        ({"flip": "avg"}, "flip"),
        ({"far": 2}, "far"),
        ({"embedding_size": "big"}, "embedding_size"),
    ],
)
def test_validation_errors(fields, message):
    with pytest.raises(UserError, match=message):
        card_from_dict(fields, "x.yaml")


def test_scale_offset_equals_mean_std():
    images = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    a = card_from_dict({"scale": 1 / 127.5, "offset": -1.0}).preprocess(images)
    b = card_from_dict({"mean": 0.5, "std": 0.5}).preprocess(images)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_preprocess_honours_order_and_layout():
    img = np.zeros((1, 112, 112, 3), np.uint8)
    img[..., 0] = 255  # pure red
    nchw_rgb = card_from_dict({"mean": 0.0, "std": 1.0}).preprocess(img)
    bgr = card_from_dict({"mean": 0.0, "std": 1.0, "channel_order": "bgr", "layout": "NHWC"})
    nhwc_bgr = bgr.preprocess(img)
    assert nchw_rgb.shape == (1, 3, 112, 112)
    assert nchw_rgb[0, 0].min() == 1.0 and nchw_rgb[0, 2].max() == 0.0
    assert nhwc_bgr.shape == (1, 112, 112, 3)
    assert nhwc_bgr[0, ..., 2].min() == 1.0 and nhwc_bgr[0, ..., 0].max() == 0


def test_arcface_crop_to_sphereface_is_exact_realignment():
    """fit_to_input's 112x112 -> 112x96 crop equals warping the photo to the SphereFace template."""
    from faceforge.align.transform import fit_to_input, warp_face
    from faceforge.data.synthetic import SyntheticFaces

    img, truth = SyntheticFaces(seed=3, mode="wild").render(0, 0)
    arc = warp_face(img, truth["five"], "arcface")
    sph = warp_face(img, truth["five"], "sphereface")
    crop = fit_to_input(arc, (112, 96))
    assert crop.shape == sph.shape == (112, 96, 3)
    assert np.abs(crop.astype(int) - sph.astype(int)).max() <= 1


def _foreign_onnx(path, nhwc=False, batch1=False, out_dim=32):
    """A small 'foreign' embedder exported without faceforge metadata."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
            self.fc = torch.nn.Linear(8, out_dim)

        def forward(self, x):
            if nhwc:
                x = x.permute(0, 3, 1, 2)
            return self.fc(self.conv(x).mean((2, 3)))

    x = torch.zeros(1, 112, 96, 3) if nhwc else torch.zeros(1, 3, 112, 96)
    axes = None if batch1 else {"input": {0: "batch"}}
    torch.onnx.export(Net().eval(), (x,), str(path), input_names=["input"], output_names=["out"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def test_card_inferred_from_onnx_shape(tmp_path):
    pytest.importorskip("onnxruntime")
    from faceforge.cli.main import main
    from faceforge.embed.card import card_from_onnx
    from faceforge.embed.loading import load_embedder

    path = _foreign_onnx(tmp_path / "foreign.onnx", nhwc=True, batch1=True)
    card = card_from_onnx(path)
    assert card.layout == "NHWC" and card.input_size == (112, 96) and card.template == "sphereface"
    assert card.embedding_size == 32 and any("static batch of 1" in n for n in card.notes)
    emb = load_embedder(path)
    out = emb.embed(np.zeros((3, 112, 96, 3), np.uint8))  # batch 1 graph: run one at a time
    assert out.shape == (3, 32)
    assert main(["card", str(path), "--out", str(tmp_path / "foreign.yaml")]) == 0
    assert load_card(tmp_path / "foreign.yaml").layout == "NHWC"


def test_card_contradicting_onnx_is_an_error(tmp_path):
    pytest.importorskip("onnxruntime")
    from faceforge.cli.main import main
    from faceforge.embed.loading import load_embedder

    path = _foreign_onnx(tmp_path / "m.onnx")
    for fields, message in (
        ({"input_size": [112, 112], "embedding_size": 32}, "contradicts the graph input"),
        ({"input_size": [112, 96], "embedding_size": 32, "layout": "NHWC"}, "channels"),
        ({"input_size": [112, 96], "embedding_size": 512}, "embedding_size 512 contradicts"),
    ):
        save_card(card_from_dict(fields), tmp_path / "m.yaml")
        with pytest.raises(UserError, match=message):
            load_embedder(path)  # the card beside the model is found and checked
        assert main(["card", str(path), "--card", str(tmp_path / "m.yaml")]) == 2


def test_template_points_explicit():
    points = [[38, 51], [73, 51], [56, 71], [41, 92], [70, 92]]
    card = ModelCard(input_size=(224, 224), template={"points": points, "size": [112, 112]})
    assert np.allclose(card.template_points()[0], [76, 102])
