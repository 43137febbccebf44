"""``faceforge import``: peer checkpoints in the peer's key layout become faceforge checkpoints."""

from __future__ import annotations

import pytest
import torch

from faceforge.cli.main import main
from faceforge.errors import UserError
from faceforge.models.checkpoint import load_backbone
from faceforge.models.convert import import_checkpoint
from reference_init import (
    assert_close_to_reference,
    build_with_reference_init,
    load_manifest,
    load_output,
    reference_input,
)


def _peer_weights(name):
    _, init = build_with_reference_init(name)
    return init


def test_import_arcface_mbf_via_cli(tmp_path, capsys):
    load_manifest("arcface_mbf")
    src = tmp_path / "backbone.pth"
    torch.save(_peer_weights("mbf"), src)  # arcface_torch saves a plain state_dict
    out = tmp_path / "mbf.ckpt"
    assert main(["import", str(src), "--from", "arcface_torch", "--backbone", "mbf", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_backbone(out)
    assert model.meta["backbone"] == "mbf" and model.meta["input_size"] == (112, 112)
    assert model.meta["mean"] == 0.5 and model.meta["std"] == 0.5 and model.meta["template"] == "arcface"
    with torch.no_grad():
        y = model(reference_input())
    assert_close_to_reference(y, load_output("arcface_mbf")["embeddings_fp32"])


def test_import_facex_mobilefacenet_with_prefixes(tmp_path):
    load_manifest("facex_mobilefacenet")
    sd = _peer_weights("mobilefacenet")
    # FaceX-Zoo saves the whole FaceModel (backbone + head) under state_dict, DDP adds module.
    wrapped = {f"module.backbone.{k}": v for k, v in sd.items()}
    wrapped["module.head.weight"] = torch.randn(512, 10)
    src = tmp_path / "Epoch_17.pt"
    torch.save({"state_dict": wrapped, "epoch": 17, "batch_id": 0}, src)
    out = tmp_path / "mfn.ckpt"
    summary = import_checkpoint(src, "facex", "mobilefacenet", out)
    assert summary["entries"] == 333
    model = load_backbone(out)
    assert model.meta["std"] == pytest.approx(128 / 255)  # FaceX-Zoo inputs are (x - 127.5) / 128
    with torch.no_grad():
        y = model(reference_input())
    assert_close_to_reference(y, load_output("facex_mobilefacenet")["embeddings_fp32"])


def test_import_sphere20a_drops_angle_linear(tmp_path):
    load_manifest("sphereface_sphere20a")
    sd = dict(_peer_weights("sphere20a"))
    sd["fc6.weight"] = torch.randn(512, 10574)
    src = tmp_path / "sphere20a.pth"
    torch.save(sd, src)
    import_checkpoint(src, "sphereface", "sphere20a", tmp_path / "s.ckpt")
    model = load_backbone(tmp_path / "s.ckpt")
    assert model.meta["input_size"] == (112, 96) and model.meta["template"] == "sphereface"
    with torch.no_grad():
        y = model(reference_input()[:, :, :, 8:104])
    assert_close_to_reference(y, load_output("sphereface_sphere20a")["embeddings_fp32"])


def test_import_key_mismatch_is_user_error(tmp_path):
    sd = build_with_reference_init("mobilefacenet_tiny")[1]
    src = tmp_path / "wrong.pth"
    torch.save(sd, src)
    with pytest.raises(UserError, match="missing: layers.0.layers.0.weight"):
        import_checkpoint(src, "arcface_torch", "mbf", tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()
    assert main(["import", str(src), "--from", "arcface_torch", "--backbone", "mbf",
                 "--out", str(tmp_path / "x.ckpt")]) == 2


def test_import_infers_embedding_size(tmp_path):
    _, sd = build_with_reference_init("iresnet_tiny", embedding_size=24)
    src = tmp_path / "backbone.pth"
    torch.save(sd, src)
    summary = import_checkpoint(src, "arcface_torch", "iresnet_tiny", tmp_path / "t.ckpt")
    assert summary["options"] == {"embedding_size": 24}
    model = load_backbone(tmp_path / "t.ckpt")
    assert model(torch.randn(2, 3, 112, 112)).shape == (2, 24)


def test_import_unreadable_file_is_user_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        import_checkpoint(bad, "arcface_torch", "mbf", tmp_path / "x.ckpt")
    with pytest.raises(UserError, match="not found"):
        import_checkpoint(tmp_path / "none.pth", "arcface_torch", "mbf", tmp_path / "x.ckpt")


def test_iresnet50_state_dict_loads_into_arcface_torch_layout():
    """A faceforge iresnet50 checkpoint has arcface_torch's exact keys and shapes (manifest list)."""
    manifest = load_manifest("arcface_r50")
    with torch.device("meta"):
        from faceforge.models import build_backbone

        sd = build_backbone("iresnet50").state_dict()
    layout = [(e["key"], e["shape"]) for e in manifest["entries"]]
    assert [(k, list(v.shape)) for k, v in sd.items()] == layout


@pytest.mark.parametrize(("peer", "backbone"), [("arcface_torch", "mbf"), ("facex", "mobilefacenet")])
def test_export_to_peer_and_import_back_is_exact(tmp_path, capsys, peer, backbone):
    """``faceforge import --to PEER``: the peer's own file layout, and ``--from`` reads it back."""
    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_backbone(backbone)
    save_checkpoint(tmp_path / "ff.ckpt", model)
    out = tmp_path / "peer.pth"
    assert main(["import", str(tmp_path / "ff.ckpt"), "--to", peer, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    if peer == "facex":  # FaceModel layout: {"state_dict": {"backbone.<key>": ...}}
        assert set(saved) == {"state_dict"} and all(k.startswith("backbone.") for k in saved["state_dict"])
    else:  # arcface_torch backbone.pth: the plain state_dict
        assert set(saved) == set(model.state_dict())
    back = tmp_path / "back.ckpt"
    assert main(["import", str(out), "--from", peer, "--backbone", backbone, "--out", str(back)]) == 0
    for k, v in load_backbone(back).state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_import_from_needs_a_backbone(tmp_path, capsys):
    args = ["import", str(tmp_path / "x.pth"), "--from", "arcface_torch", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--backbone" in capsys.readouterr().err
