"""``faceforge fit``: the plan, the stages end to end on tiny aligned data, resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import write_identity_crops
from faceforge.cli.main import main
from faceforge.errors import UserError
from faceforge.fit.pipeline import fit
from faceforge.fit.plan import FitOptions, choose_recipe

SRC = Path(__file__).resolve().parents[1] / "src"


def _photos(root: Path, identities: int = 24, per: int = 4) -> Path:
    write_identity_crops(root, seed=3, prefix="p", identities=identities, per=per)
    return root


def _opts(photos: Path, out: Path, **kw) -> FitOptions:
    base = {"aligned": True, "epochs": 2, "batch_size": 16, "val": 6, "test": 6, "device": "cpu"}
    return FitOptions(photos=str(photos), out=str(out), **{**base, **kw})


def test_recipe_follows_the_data(tmp_path, tiny_mfn_ckpt):
    opts = FitOptions(photos="x", out=str(tmp_path), epochs=3, device="cpu")
    r = choose_recipe(opts, {"identities": 300, "images": 6000, "median": 20}, tmp_path)
    c = r["config"]
    assert c["train"]["mode"] == "conventional" and c["model"]["backbone"] == "mobilefacenet_tiny"
    assert "sample_rate" not in c["train"] and c["train"]["keep"] == "best" and c["train"]["epochs"] == 3
    shallow = choose_recipe(opts, {"identities": 300, "images": 600, "median": 2}, tmp_path)["config"]
    assert shallow["train"]["mode"] == "semi_siamese" and shallow["head"]["name"] == "cosface"
    many = choose_recipe(opts, {"identities": 90_000, "images": 10**6, "median": 11}, tmp_path)
    assert many["config"]["train"]["sample_rate"] == 0.1 and any("Partial FC" in w for w in many["why"])
    tuned = choose_recipe(opts, {"identities": 30, "images": 300, "median": 10}, tmp_path, str(tiny_mfn_ckpt))
    o, m = tuned["config"]["optim"], tuned["config"]["model"]
    assert m["init"] == str(tiny_mfn_ckpt) and m["backbone"] == "mobilefacenet_tiny"
    assert o["backbone_lr_mult"] == 0.1
    assert o["head_warmup_epochs"] == 1.0 and any("fine-tuning" in w for w in tuned["why"])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    assert main(["fit", str(photos), str(out), "--dry-run", "--aligned", "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    assert "photos: 96 images of 24 identities" in text and "recipe:" in text
    assert "train     to do" in text and "budget: 2 epochs" in text
    assert not out.exists()
    assert main(["fit", str(photos), str(out), "--minutes", "1", "--epochs", "2"]) == 2


def test_stages_resume_and_refuse_other_options(tmp_path):
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    said: list[str] = []
    first = fit(_opts(photos, out), say=said.append, quiet=True, stop_after="sets")
    assert set(first) == {"align", "clean", "split", "sets"}
    split = json.loads((out / "split" / "split.json").read_text())
    # a stage killed half-way (no marker) is redone from scratch; finished ones are skipped
    (out / "fit" / "sets.json").unlink()
    (out / "sets" / "val_pairs.txt").write_text("half")
    said.clear()
    again = fit(_opts(photos, out), say=said.append, quiet=True, stop_after="sets")
    assert any("[split] done already" in s for s in said) and again == first
    assert json.loads((out / "split" / "split.json").read_text()) == split
    with pytest.raises(UserError, match="other options .*seed"):
        fit(_opts(photos, out, seed=1), say=said.append, quiet=True)


def _peer_fit(tmp_path: Path, stop_after: str) -> tuple[Path, str]:
    from reference_init import build_with_reference_init

    _, sd = build_with_reference_init("iresnet_tiny", embedding_size=24)
    torch.save(sd, tmp_path / "backbone.pth")
    photos = _photos(tmp_path / "photos")
    opts = _opts(photos, tmp_path / "out", epochs=1, init=str(tmp_path / "backbone.pth"),
                 init_from="arcface_torch", backbone="iresnet_tiny")
    said: list[str] = []
    fit(opts, say=said.append, quiet=True, stop_after=stop_after)
    return tmp_path / "out", "\n".join(said)


def test_fine_tune_plan_from_a_peer_backbone(tmp_path):
    out, text = _peer_fit(tmp_path, "align")
    assert "backbone iresnet_tiny (24-D): the architecture of --init" in text
    assert "fine-tuning from arcface_torch weights imported from" in text and "head warm-up" in text
    assert (out / "fit" / "init.ckpt").is_file()


@pytest.mark.slow
def test_fine_tune_warms_the_head_up_first(tmp_path):
    out, _ = _peer_fit(tmp_path, "train")
    before = torch.load(out / "fit" / "init.ckpt", weights_only=True)["backbone"]["state_dict"]
    after = torch.load(out / "model.ckpt", weights_only=True)["backbone"]["state_dict"]
    # one epoch, all of it the head warm-up: the backbone's weights are untouched (BN statistics move)
    weights = [k for k, v in before.items() if v.dtype.is_floating_point and "running" not in k]
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)


def _state(out: Path) -> dict:
    ck = torch.load(out / "model.ckpt", map_location="cpu", weights_only=True)
    marks = {s: json.loads((out / "fit" / f"{s}.json").read_text())["summary"]
             for s in ("train", "calibrate", "eval", "export")}
    return {"weights": ck["backbone"]["state_dict"], **marks}


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
    photos = _photos(tmp_path / "photos", identities=30, per=5)
    args = [str(photos), "--aligned", "--epochs", "3", "--batch-size", "16", "--val", "6", "--test", "6",
            "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "faceforge", "fit"]
    subprocess.run([*cmd, args[0], str(tmp_path / "whole"), *args[1:]], env=env, check=True,
                   capture_output=True)
    out = tmp_path / "killed"
    for wait_for in ("train/last.ckpt", "fit/calibrate.json"):  # mid-training, then mid-evaluation
        proc = subprocess.Popen([*cmd, args[0], str(out), *args[1:]], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while not (out / wait_for).exists() and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before {wait_for} appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "fit" / "report.json").exists()
    done = subprocess.run([*cmd, args[0], str(out), *args[1:]], env=env, check=True, capture_output=True,
                          text=True)
    assert "[align] done already" in done.stdout and "faceforge serve" in done.stdout.splitlines()[-1]
    a, b = _state(tmp_path / "whole"), _state(out)
    assert a.keys() == b.keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    # killed after training, before its marker: the finished checkpoints are kept (no extra step)
    (out / "fit" / "train.json").unlink()
    again = subprocess.run([*cmd, args[0], str(out), *args[1:]], env=env, check=True, capture_output=True,
                           text=True)
    assert "training had finished before the interruption" in again.stdout
    assert torch.equal(next(iter(_state(out)["weights"].values())), next(iter(b["weights"].values())))
    def without_out(summary: dict, root: Path) -> dict:  # paths name their own OUT: compare the rest
        return json.loads(json.dumps(summary).replace(str(root), "OUT"))

    for stage in ("train", "calibrate", "eval"):
        assert without_out(a[stage], tmp_path / "whole") == without_out(b[stage], out), stage
    assert a["export"]["sha256"] == b["export"]["sha256"]


def test_shallow_photos_get_semi_siamese_and_working_commands(tmp_path):
    from faceforge.fit.pipeline import Run, next_commands

    photos = _photos(tmp_path / "photos", identities=30, per=2)
    said: list[str] = []
    fit(_opts(photos, tmp_path / "out"), say=said.append, quiet=True, stop_after="sets")
    assert any("semi-siamese training" in s for s in said)
    lines = next_commands(Run(_opts(photos, tmp_path / "out"), say=said.append))
    assert lines[0].startswith("faceforge verify ") and lines[0].endswith("--aligned")
    assert lines[3].startswith("faceforge identify ") and "faceforge serve" in lines[-1]
