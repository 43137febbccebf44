"""Imported peer checkpoints are fed the way the peer fed them: channel order, scaling, input size.

FaceX-Zoo (``test_protocol/utils/``, ``CommonTestDataset``) and sphereface_pytorch (``lfw_eval.py``)
read with ``cv2.imread`` (BGR, never converted) and scale ``(pixel - 127.5) / 128``; OpenSphere
(``dataset/utils.py: image_pipeline``) reverses cv2's BGR to RGB and scales by 127.5. The peer side of
each test below reimplements that documented preprocessing on the image *file* and runs the same
weights; faceforge must give the same embedding from the same file.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from faceforge.cli.main import main
from faceforge.embed.loading import load_embedder
from faceforge.io.images import read_image
from faceforge.models import build_backbone
from reference_init import reference_init


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _face_file(tmp_path, size):
    """A real colour photo (the aligned sample is grey, where channel order cannot matter), resized
    to ``size`` and written losslessly: the test is about feeding the network, not alignment."""
    img = cv2.imread(str(shared_path("data", "photos", "biden.jpg")), cv2.IMREAD_COLOR)
    assert np.abs(img[..., 0].astype(int) - img[..., 2]).mean() > 5  # really in colour
    h, w = size
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    return path


def _peer_embedding(model, path, divisor: float, to_rgb: bool) -> np.ndarray:
    image = cv2.imread(str(path))  # BGR uint8, as the peers read it
    if to_rgb:
        image = image[:, :, ::-1]
    x = (image.transpose(2, 0, 1).astype(np.float32) - 127.5) / divisor
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x))[None]).numpy()[0]


def _weights(backbone, **options):
    model = build_backbone(backbone, **options)
    model.load_state_dict(reference_init(model.state_dict()))
    return model.eval()


CASES = [
    # source, backbone, CLI size, peer divisor, peer converts to RGB, how the peer saves it
    ("facex", "mobilefacenet", "112x96", 128.0, False, "facemodel"),
    ("sphereface", "sphere20a", None, 128.0, False, "plain"),
    ("opensphere", "sfnet20", None, 127.5, True, "plain"),
    ("arcface_torch", "mbf", None, 127.5, True, "plain"),
]


@pytest.mark.parametrize("source,backbone,size,divisor,to_rgb,layout", CASES, ids=[c[0] for c in CASES])
def test_imported_model_embeds_a_file_as_the_peer_does(tmp_path, capsys, source, backbone, size, divisor,
                                                       to_rgb, layout):
    options = {"input_size": tuple(int(v) for v in size.split("x"))} if size else {}
    peer = _weights(backbone, **options)
    sd = peer.state_dict()
    if layout == "facemodel":
        sd = {"state_dict": {**{f"module.backbone.{k}": v for k, v in sd.items()},
                             "module.head.weight": torch.randn(512, 10)}}
    src = tmp_path / "peer.pt"
    torch.save(sd, src)
    out = tmp_path / "ff.ckpt"
    argv = ["import", str(src), "--from", source, "--backbone", backbone, "--out", str(out)]
    assert main(argv + (["--input-size", size] if size else [])) == 0
    printed = capsys.readouterr().out
    assert ("BGR" if not to_rgb else "RGB") in printed

    embedder = load_embedder(out)
    h, w = embedder.meta.input_size
    assert embedder.meta.channel_order == ("rgb" if to_rgb else "bgr")
    face = _face_file(tmp_path, (h, w))
    ours = embedder.embed(read_image(face)[None])[0]
    want = _peer_embedding(peer, face, divisor, to_rgb)
    swapped = _peer_embedding(peer, face, divisor, not to_rgb)
    print(f"{source}: cosine to the peer's preprocessing {_cos(ours, want):.6f} "
          f"(with the other channel order {_cos(ours, swapped):.6f})")
    assert _cos(ours, want) > 0.99999
    np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_import_input_size_and_option_errors(tmp_path):
    src = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, src)
    base = ["import", str(src), "--from", "facex", "--backbone", "mobilefacenet",
            "--out", str(tmp_path / "o")]
    assert main(base + ["--input-size", "112y96"]) == 2
    assert main(base + ["--option", "width"]) == 2
