"""The training bar counts against the budget that will stop the run, with the ETA from it; the
phases after training (validation) and ``faceforge models`` say what they are doing."""

from __future__ import annotations

import io

from faceforge.cli.main import main
from faceforge.train.progress import TrainProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _line(bar: TrainProgress, step: int, elapsed: float) -> str:
    bar.step = step
    return bar.line(elapsed)


def test_step_budget_shorter_than_the_epochs():
    # max_steps=60 of 20 epochs x 68 steps: before, "epoch 1/20 ... 60/68" with an epoch ETA
    bar = TrainProgress(60, 68, 20, stream=io.StringIO())
    text = _line(bar, 30, 10.0)
    assert "step 30/60 (max_steps)" in text and "epoch 1/20" in text and "eta 0:10" in text


def test_minutes_budget_of_the_demo():
    # the 3-minute demo: epochs=1000 (68000 steps) but max_minutes=3 ends it; before, "epoch 1/1000"
    bar = TrainProgress(68_000, 68, 1000, budget_s=180.0, stream=io.StringIO())
    text = _line(bar, 40, 60.0)
    assert "1:00/3:00 (max_minutes) step 40" in text and "eta 2:00" in text
    assert "[########...." in text  # a third of the bar: a third of the time budget


def test_epochs_when_they_end_first():
    bar = TrainProgress(136, 68, 2, budget_s=3600.0, stream=io.StringIO())
    text = _line(bar, 68, 34.0)
    assert "step 68/136 (epochs)" in text and "epoch 2/2" in text and "eta 0:34" in text


def test_resumed_run_measures_its_own_rate():
    bar = TrainProgress(100, 50, 2, start_step=50, stream=io.StringIO())
    assert "eta 0:32" in _line(bar, 60, 8.0)  # 10 steps in 8 s since the resume, 40 left


def test_bar_on_a_terminal_only_and_messages_always():
    tty, pipe = _Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = TrainProgress(10, 5, 2, stream=stream, every_s=0.0)
        bar.update(5, loss="1.0")
        bar.say("validating on pairs:x ...")
        bar.update(10)
        bar.close()
    assert "step 5/10 (epochs)" in tty.getvalue() and "loss=1.0" in tty.getvalue()
    assert pipe.getvalue() == "validating on pairs:x ...\n"


def test_validation_says_what_it_does(tmp_path, capsys):
    from faceforge.data.synthetic import write_dataset, write_pairs

    test = tmp_path / "test"
    write_dataset(test, 8, 4, offset=50_000)
    write_pairs(test, 8, 4, folds=2, offset=50_000)
    sets = ["data.train=synthetic:8x4", "model.backbone=mobilefacenet_tiny", "model.embedding_size=16",
            "data.batch_size=16", "train.max_steps=2", f"data.val=pairs:{test / 'pairs.txt'}",
            f"output={tmp_path / 'run'}"]
    assert main(["train", *(a for s in sets for a in ("--set", s))]) == 0
    err = capsys.readouterr().err
    assert f"validating on pairs:{test / 'pairs.txt'} ..." in err
    assert "validation: accuracy " in err


def test_models_says_no_weights_ship(capsys):
    assert main(["models", "mobilefacenet_tiny"]) == 0
    out = capsys.readouterr().out
    assert "mobilefacenet_tiny" in out and "none of these architectures ships trained weights" in out
