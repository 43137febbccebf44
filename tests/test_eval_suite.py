"""Embedder, evaluate_pairs, the suite (report, plots, cache) and the eval CLI, with tiny models."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from faceforge.align.transform import fit_to_input
from faceforge.cli.main import main
from faceforge.embed.base import ConcatEmbedder
from faceforge.embed.extract import embed_images
from faceforge.embed.loading import load_embedders
from faceforge.embed.torch_embedder import TorchEmbedder
from faceforge.errors import UserError
from faceforge.eval import cache as cache_mod
from faceforge.eval.pairs import write_bin
from faceforge.eval.suite import load_suite, run_suite
from faceforge.eval.verification import evaluate_pairs


class TinyNet(nn.Module):
    """A few-parameter backbone with the backbone contract and a ``meta``."""

    def __init__(self, dim: int = 16, input_size=(112, 112), seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.fc = nn.Linear(8 * 4, dim)
        self.embedding_size = dim
        self.meta = {"input_size": input_size, "embedding_size": dim, "backbone": f"tiny{seed}"}
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = torch.relu(self.conv(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


def _face(identity: int, k: int) -> np.ndarray:
    """A synthetic 'face': a per-identity pattern plus per-image noise."""
    base = np.random.default_rng(identity).integers(0, 255, (14, 14, 3)).astype(np.float32)
    img = cv2.resize(base, (112, 112), interpolation=cv2.INTER_NEAREST)
    img += np.random.default_rng(1000 * identity + k).normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "data"
    for i in range(6):
        for k in range(3):
            _write(root / ("gallery" if k == 0 else "probe") / f"id{i}" / f"{k}.png", _face(i, k))
    lines = []
    for i in range(6):
        lines.append(f"probe/id{i}/1.png probe/id{i}/2.png 1")
        lines.append(f"probe/id{i}/1.png probe/id{(i + 1) % 6}/2.png 0")
    lines.append("probe/id0/1.png missing/x.png 1")  # unreadable: the pair is dropped
    (root / "list.txt").write_text("\n".join(lines * 2) + "\n")
    images, issame = [], []
    for i in range(10):
        images += [
            cv2.imencode(".jpg", _face(i % 6, 1))[1].tobytes(),
            cv2.imencode(".jpg", _face(i % 6, 2))[1].tobytes(),
        ]
        images += [
            cv2.imencode(".jpg", _face(i % 6, 1))[1].tobytes(),
            cv2.imencode(".jpg", _face((i + 1) % 6, 2))[1].tobytes(),
        ]
        issame += [True, False]
    images[5] = b"\xff\xd8 broken jpeg"
    write_bin(root / "mini.bin", images, issame)
    return root


def test_fit_to_input_sphereface_crop():
    img = np.arange(112 * 112 * 3, dtype=np.uint8).reshape(112, 112, 3)
    out = fit_to_input(img, (112, 96))
    assert out.shape == (112, 96, 3) and np.array_equal(out, img[:, 8:104])
    assert fit_to_input(img, (56, 56)).shape == (56, 56, 3)


def test_embed_images_flip_corrupt_and_concat(tmp_path):
    net = TinyNet()
    emb = TorchEmbedder(net)
    imgs = [_face(0, k) for k in range(3)] + [str(tmp_path / "nope.png")]
    r = embed_images(emb, imgs, batch_size=2, flip="sum")
    assert r.features.shape == (4, 16) and r.valid.tolist() == [True, True, True, False]
    assert r.num_corrupt == 1 and "nope.png" in r.corrupt[0]
    direct = emb.embed(np.stack(imgs[:1])) + emb.embed(np.stack(imgs[:1])[:, :, ::-1].copy())
    np.testing.assert_allclose(r.features[0], direct[0], rtol=1e-5, atol=1e-6)
    assert embed_images(emb, imgs[:3], flip="concat").features.shape == (3, 32)
    narrow = TorchEmbedder(TinyNet(8, input_size=(112, 96), seed=1))
    both = ConcatEmbedder([emb, narrow])
    f = embed_images(both, imgs[:3]).features
    assert f.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(f[:, :16], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(f[:, 16:], axis=1), 1, atol=1e-5)
    with pytest.raises(UserError, match="--flip"):
        embed_images(emb, imgs, flip="mirror")


def test_concat_feeds_the_full_crop_whatever_the_order():
    """An upper-half model listed first must not make the full-face model see a stretched half."""
    full = TorchEmbedder(TinyNet())
    upper_net = TinyNet(8, input_size=(56, 112), seed=1)
    upper_net.meta["template"] = "arcface_upper_half"
    upper = TorchEmbedder(upper_net)
    imgs = np.stack([_face(0, k) for k in range(2)])
    for pair in ([upper, full], [full, upper]):
        both = ConcatEmbedder(pair)
        assert tuple(both.meta.input_size) == (112, 112)
    f = embed_images(ConcatEmbedder([upper, full]), list(imgs), flip="none").features
    alone = embed_images(full, list(imgs), flip="none").features
    alone /= np.linalg.norm(alone, axis=1, keepdims=True)
    np.testing.assert_allclose(f[:, 8:], alone, rtol=1e-4, atol=1e-5)


def test_evaluate_pairs_drops_unreadable(data):
    emb = TorchEmbedder(TinyNet())
    res = evaluate_pairs(emb, f"facex:{data / 'list.txt'}", flip="none")
    assert res["dropped_pairs"] == 2 and res["pairs"] == 24 and res["corrupt_images"] == 1
    res = evaluate_pairs(emb, f"bin:{data / 'mini.bin'}", protocol="facex")
    assert res["dropped_pairs"] == 1 and res["pairs"] == 19
    assert 0.0 <= res["accuracy"] <= 1.0 and set(res["tar_at_far"]) == {"0.0001", "0.001", "0.01"}


SUITE = """
flip: sum
batch_size: 8
verification:
  mini: facex:list.txt
  minibin: bin:mini.bin
identification:
  six: {gallery: gallery, probe: probe}
megaface:
  mf: {probe: probe, distractors: "random:500", sizes: [10, 100, 500]}
masked:
  mk: {gallery: gallery, probe: probe, masked_probe: probe}
"""


def test_suite_report_and_cache(data, tmp_path, monkeypatch):
    (data / "suite.yaml").write_text(SUITE)
    models = [TorchEmbedder(TinyNet(seed=0)), TorchEmbedder(TinyNet(seed=1))]
    monkeypatch.setattr(cache_mod, "STATS", {"computed": 0, "hits": 0})
    out = tmp_path / "out"
    res = run_suite(data / "suite.yaml", models, out, log=lambda *a: None)
    # per model, computed: 2 pair sets, gallery, probe; read back: probe (megaface) and
    # gallery + probe twice (masked: unmasked row, and the pre-masked folder, here the same one)
    assert cache_mod.STATS == {"computed": 8, "hits": 10}
    table = res["table"].splitlines()
    assert table[0].split()[:5] == ["model", "mini", "minibin", "six", "mf@500"]
    assert [line.split()[0] for line in table[1:]] == ["tiny0", "tiny1"]
    report = (out / "report.md").read_text()
    assert "| tiny0 |" in report and "roc_mini.png" in report
    for png in ("roc_mini.png", "roc_minibin.png", "cmc_six.png", "megaface_mf.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["tiny0"]["six"]["rank1"] == res["results"]["tiny0"]["six"]["rank1"]
    assert res["results"]["tiny0"]["mk"]["masked"]["rank1"] == res["results"]["tiny0"]["six"]["rank1"]

    calls = models[0].model.calls
    again = run_suite(data / "suite.yaml", models, out, log=lambda *a: None)
    assert cache_mod.STATS["computed"] == 8  # nothing recomputed
    assert models[0].model.calls == calls
    assert again["table"] == res["table"]


def test_suite_strict_yaml(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("verificaton:\n  lfw: bin:x.bin\n")
    with pytest.raises(UserError, match="did you mean 'verification'"):
        load_suite(f)
    f.write_text("identification:\n  a: {gallery: g, probes: p}\n")
    with pytest.raises(UserError, match=r"identification.a: .*'probe'"):
        load_suite(f)
    f.write_text("flip: mirror\nverification: {a: 'bin:x.bin'}\n")
    with pytest.raises(UserError, match="flip"):
        load_suite(f)


def test_cli_verify_identify_suite(data, tmp_path, capsys):
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    save_checkpoint(ckpt, build_backbone("mobilefacenet_tiny", embedding_size=32))
    out = tmp_path / "v"
    rc = main(
        ["eval", "verify", "--model", str(ckpt), "--pairs", f"bin:{data / 'mini.bin'}", "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "accuracy" in text and "TAR@FAR" in text and "EER" in text
    assert (out / "roc.png").is_file() and json.loads((out / "verification.json").read_text())["pairs"] == 19

    assert load_embedders([ckpt, ckpt]).meta.embedding_size == 64
    rc = main(["eval", "identify", "--model", str(ckpt), "--model", str(ckpt),
               "--gallery", str(data / "gallery"), "--probe", str(data / "probe")])  # fmt: skip
    assert rc == 0 and "rank-1" in capsys.readouterr().out

    (data / "suite.yaml").write_text("verification:\n  mini: bin:mini.bin\n")
    rc = main(["eval", "suite", str(data / "suite.yaml"), "--model", str(ckpt), "--out", str(tmp_path / "s")])
    assert rc == 0 and (tmp_path / "s" / "report.md").is_file()

    rc = main(["eval", "verify", "--model", str(tmp_path / "none.ckpt"), "--pairs", "bin:x.bin"])
    assert rc == 2 and "file not found" in capsys.readouterr().err
