"""Batched and parallel detect + align + embed over files (``faceforge embed --batch/--workers``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import cv2
    import torch

    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    pytest.importorskip("onnxruntime")
    if not (PHOTOS / "t1.jpg").is_file():
        pytest.skip(f"{PHOTOS} not present (../shared is expected beside the checkout)")
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("embed_batch")
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.ckpt", build_backbone("mobilefacenet_tiny"))
    (root / "broken.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(root / "blank.png"), np.full((160, 160, 3), 90, np.uint8))
    files = [PHOTOS / "obama.jpg", PHOTOS / "t1.jpg", PHOTOS / "biden.jpg", root / "broken.jpg",
             root / "blank.png", PHOTOS / "obama2.jpg"]
    return root, [str(f) for f in files]


def _summary(found):
    return [(Path(p).name, status, [f.embedding for f in faces], [f.box for f in faces])
            for p, status, faces, _shape in found]


def _same(a, b):
    assert [r[:2] for r in a] == [r[:2] for r in b]
    for ra, rb in zip(a, b):
        assert len(ra[2]) == len(rb[2])
        for ea, eb, ba, bb in zip(ra[2], rb[2], ra[3], rb[3]):
            np.testing.assert_allclose(ea, eb, atol=2e-4)
            np.testing.assert_allclose(ba, bb, atol=1e-2)


def test_chunks_equal_one_image_at_a_time(work):
    from faceforge.deploy.batch import faces_of_files
    from faceforge.deploy.commands import faces_in, load_analyzer, read_image_file

    root, files = work
    analyzer = load_analyzer(str(root / "tiny.ckpt"))
    for all_faces in (False, True):
        batched = _summary(faces_of_files(files, None, analyzer=analyzer, all_faces=all_faces, chunk=4))
        single = _summary(faces_of_files(files, None, analyzer=analyzer, all_faces=all_faces, chunk=1))
        _same(batched, single)
        assert [r[1] for r in batched] == ["ok", "ok", "ok", "not_image", "no_face", "ok"]
        assert len(batched[1][2]) == (6 if all_faces else 1)
        # and equal to the per-image path the other commands use
        ref = faces_in(analyzer, read_image_file(files[1]), all_faces=all_faces)
        for f, g in zip(batched[1][2], ref):
            np.testing.assert_allclose(f, g.embedding, atol=2e-4)


def test_worker_code_path_in_process(work):
    """What a worker process runs (its own analyzer, threads shared out), here without spawning."""
    from faceforge.deploy import batch

    root, files = work
    model = str(root / "tiny.ckpt")
    batch._init_worker(model, "retinaface", "cpu", 2, False, False)
    try:
        assert batch._STATE["analyzer"].detector.session.threads == \
            batch.threads_per_worker(2)
        got = _summary(batch._run_chunk(files))
    finally:
        batch._STATE.clear()
    from faceforge.deploy.commands import load_analyzer

    _same(got, _summary(batch.faces_of_chunk(load_analyzer(model), files)))


def test_worker_that_cannot_load_fails_its_tasks(tmp_path):
    from faceforge.deploy import batch
    from faceforge.errors import UserError

    batch._init_worker(str(tmp_path / "missing.onnx"), "retinaface", "cpu", 2, False, False)
    try:
        with pytest.raises(UserError, match="not found"):
            batch._run_chunk(["a.jpg"])
    finally:
        batch._STATE.clear()


def test_threads_per_worker_shares_the_cores():
    from faceforge.deploy.batch import threads_per_worker

    cores = os.cpu_count() or 1
    assert threads_per_worker(1) == cores
    assert threads_per_worker(cores) == 1 and threads_per_worker(4 * cores) == 1


def test_worker_errors(work):
    from faceforge.deploy.batch import faces_of_files
    from faceforge.deploy.commands import load_analyzer
    from faceforge.errors import UserError

    root, files = work
    with pytest.raises(UserError, match="--workers"):
        list(faces_of_files(files, None, workers=-1))
    with pytest.raises(UserError, match="pass a path"):
        list(faces_of_files(files * 2, load_analyzer(str(root / "tiny.ckpt")), workers=2, chunk=2))


def test_onnx_embedder_set_threads_keeps_outputs(work):
    from faceforge.deploy.export import export_onnx
    from faceforge.embed.onnx_embedder import OnnxEmbedder

    root, _ = work
    onnx = root / "tiny.onnx"
    if not onnx.is_file():
        export_onnx(root / "tiny.ckpt", onnx, log=lambda *_: None)
    emb = OnnxEmbedder(onnx)
    crops = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    ref = emb.embed(crops)
    emb.set_threads(1)
    assert emb.session.threads == 1
    np.testing.assert_allclose(emb.embed(crops), ref, atol=1e-5)


@pytest.mark.slow
def test_two_worker_processes_equal_one(work, tmp_path):
    from faceforge.deploy.commands import embed_files

    root, files = work
    model = str(root / "tiny.ckpt")
    one = embed_files(files, model, tmp_path / "one.npz", all_faces=True, batch=2)
    two = embed_files(files, model, tmp_path / "two.npz", all_faces=True, batch=2, workers=2)
    assert one["faces"] == two["faces"] == 9 and one["no_face"] == two["no_face"]
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert a["files"].tolist() == b["files"].tolist()
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=2e-4)
    assert str(a["model_id"]) == str(b["model_id"])
