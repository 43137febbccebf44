"""kill -9 at a fixed point, then the same command again (issue 13, section 3).

The killed process SIGKILLs itself from inside a patched function, at a point where a temporary
file exists, so the tests do not depend on timing. The re-run must sweep the dead writer's
temporaries and finish as if nothing had happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from faceforge.atomic import TEMP_SUFFIX, atomic_write_bytes, sweep_stale_temps, temp_path
from faceforge.cli.main import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Kill this process the N-th time a temporary file is about to replace its target: the temporary
# is complete on disk, the target not yet written.
KILL_ON_REPLACE = """
import os, signal, sys
import faceforge.atomic as atomic
suffix, n = os.environ["KILL_SUFFIX"], int(os.environ["KILL_AT"])
calls = [0]
class _Os:
    def __getattr__(self, name):
        return getattr(os, name)
    def replace(self, src, dst):
        if str(dst).endswith(suffix):
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return os.replace(src, dst)
atomic.os = _Os()
from faceforge.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _killed_run(argv: list[str], suffix: str, n: int) -> int:
    env = {**ENV, "KILL_SUFFIX": suffix, "KILL_AT": str(n)}
    proc = subprocess.run([sys.executable, "-c", KILL_ON_REPLACE, *argv], env=env, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{TEMP_SUFFIX}")]


def test_stale_temp_of_a_dead_pid_is_swept_live_one_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.ffpk.{pid}.0123abcd{TEMP_SUFFIX}"
    stale.write_bytes(b"x" * 100)
    live = temp_path(tmp_path / "other.bin")  # this process: alive
    live.write_bytes(b"y")
    unrelated = tmp_path / ".hidden.tmp"
    unrelated.write_bytes(b"z")
    assert sweep_stale_temps(tmp_path) == 1
    assert not stale.exists() and live.exists() and unrelated.exists()
    # an atomic write into a folder not yet swept by this process sweeps it first
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / stale.name).write_bytes(b"x")
    atomic_write_bytes(sub / "a.bin", b"a")
    assert sorted(p.name for p in sub.iterdir()) == ["a.bin"]


def _tiny_tree(root: Path, n_ids: int = 3, per_id: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n_ids):
        d = root / f"id{i}"
        d.mkdir(parents=True)
        for k in range(per_id):
            img = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
            cv2.imwrite(str(d / f"{k}.jpg"), img)
    return root


def test_data_pack_killed_mid_write_then_rerun(tmp_path, capsys):
    src = _tiny_tree(tmp_path / "src")
    out = tmp_path / "p.ffpk"
    argv = ["data", "pack", f"folder:{src}", str(out), "--quiet", "--workers", "1"]
    assert _killed_run(argv, ".ffpk", 1) == -signal.SIGKILL
    assert not out.exists() and len(_temps(tmp_path)) == 1  # the killed writer's whole temp file
    assert main(argv) == 0
    assert "12 images of 3 identities" in capsys.readouterr().out
    assert out.is_file() and _temps(tmp_path) == []


def _align_tree(root: Path) -> Path:
    photos = shared_path("data", "celeba299")
    ids = sorted(p for p in photos.iterdir() if p.is_dir())[:2]
    for d in ids:
        (root / d.name).mkdir(parents=True)
        for f in sorted(d.glob("*.jpg"))[:3]:
            shutil.copy(f, root / d.name / f.name)
    (root / "odd").mkdir()
    (root / "odd" / "broken.jpg").write_bytes(b"not a jpeg")
    blank = cv2.imencode(".png", np.full((160, 160, 3), 90, np.uint8))[1].tobytes()
    (root / "odd" / "blank.png").write_bytes(blank)
    return root


def test_align_killed_mid_crop_then_rerun(tmp_path):
    src = _align_tree(tmp_path / "src")
    dst = tmp_path / "dst"
    images = sorted(f"{p.parent.name}/{p.name}" for p in src.rglob("*") if p.is_file())
    argv = ["align", str(src), str(dst), "--workers", "1"]
    assert _killed_run(argv, ".jpg", 3) == -signal.SIGKILL  # dies with the 3rd crop half-written
    assert len(_temps(dst)) == 1
    journal = (dst / ".align_journal.jsonl").read_text().splitlines()
    assert len(journal) >= 2  # the images finished before the kill are on record
    first_run = {json.loads(line)[0] for line in journal}

    assert main(argv) == 0
    assert _temps(dst) == []
    summary = json.loads((dst / "align_summary.json").read_text())
    assert summary["skipped_existing"] >= 2  # finished crops were not redone
    assert summary["all_runs"]["recorded"] == len(images)  # both runs, every image
    report = {line.split(",")[0] for line in (dst / "align_report.csv").read_text().splitlines()[1:]}
    assert {"odd/broken.jpg", "odd/blank.png"} <= report
    rows = {json.loads(line)[0] for line in (dst / ".align_journal.jsonl").read_text().splitlines()}
    assert rows == set(images) and first_run <= rows
    crops = sorted(p for p in dst.rglob("*.jpg") if not p.name.startswith("."))
    assert len(crops) == summary["all_runs"]["crops_written"]


@pytest.mark.slow
def test_align_killed_at_every_point(tmp_path):
    """The heavy twin: a kill at each crop write in turn, each followed by a re-run."""
    src = _align_tree(tmp_path / "src")
    for n in range(1, 7):
        dst = tmp_path / f"dst{n}"
        argv = ["align", str(src), str(dst), "--workers", "1"]
        code = _killed_run(argv, ".jpg", n)
        assert code in (0, -signal.SIGKILL), (n, code)
        assert main(argv) == 0 and _temps(dst) == []
        summary = json.loads((dst / "align_summary.json").read_text())
        assert summary["all_runs"]["recorded"] == 8
