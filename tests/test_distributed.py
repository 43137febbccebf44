"""Process-group teardown under torchrun: normal end, the repeat runner and an error all exit
without the interpreter-exit abort (``terminate called without an active exception``, -6)."""

from __future__ import annotations

import pytest
import torch

import test_partial_fc
import test_resume
from launch import torchrun

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")


def test_repeat_runner_under_torchrun_ends_cleanly(tmp_path, tiny_folder):
    out = tmp_path / "rep"
    cmd = test_resume._args(tiny_folder, out, "--set", "data.batch_size=4", "--set", "train.max_steps=2")
    run = torchrun(2, [*cmd[1:], "--repeat", "2"])
    assert "terminate called" not in run.stdout
    assert (out / "repeat_summary.json").exists()
    assert run.stdout.count("loss_total:") == 1  # rank 0 alone prints the summary


def test_user_error_under_torchrun_is_one_line_and_no_abort(tmp_path, tiny_folder):
    cmd = test_resume._args(tiny_folder, tmp_path / "err", "--set", "data.batch_size=4000")
    with pytest.raises(AssertionError) as failed:
        torchrun(2, cmd[1:], timeout=240)
    text = str(failed.value)
    assert "torchrun exited" in text and "faceforge: error: data.batch_size" in text
    assert "terminate called" not in text


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(10))
def test_distributed_tests_are_stable(attempt, tmp_path, tiny_folder):
    """Stress twin: the two multi-process tests, again and again (run with -m slow)."""
    (tmp_path / "pfc").mkdir()
    test_partial_fc.test_two_process_gloo_equals_single_process(tmp_path / "pfc")
    (tmp_path / "ws").mkdir()
    test_resume.test_resume_on_a_different_world_size(tmp_path / "ws", tiny_folder)
