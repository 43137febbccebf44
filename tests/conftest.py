from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is expected beside the checkout)")
    return p


@pytest.fixture(autouse=True, scope="session")
def _engine_cache_in_tmp(tmp_path_factory):
    """``engine: auto`` caches its measurements per user; tests (and the CLI processes they start) keep
    theirs in a temp folder, never in $HOME."""
    import os

    os.environ["FACEFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("engine_cache"))


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """6 identities × 8 noisy 112×112 JPEGs (each identity a fixed pattern) plus one corrupt file."""
    import cv2

    root = tmp_path_factory.mktemp("tiny_folder")
    rng = np.random.default_rng(0)
    for i in range(6):
        d = root / f"id{i}"
        d.mkdir()
        base = rng.integers(0, 255, (112, 112, 3))
        for k in range(8):
            img = np.clip(base + rng.integers(-25, 25, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(d / f"{k}.jpg"), img)
    (root / "id0" / "corrupt.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(autouse=True)
def _grad_mode_is_restored():
    """A test (or library call) that leaves autograd globally off breaks every later test."""
    import torch

    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("autograd was left globally disabled (torch.set_grad_enabled(False) leaked)")


@pytest.fixture(scope="session")
def tiny_mfn_ckpt(tmp_path_factory) -> Path:
    """A seeded ``mobilefacenet_tiny`` faceforge checkpoint (random weights: pipelines, not accuracy)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_mfn") / "tiny.ckpt")


def write_tiny_checkpoint(path: Path) -> Path:
    """A seeded ``mobilefacenet_tiny`` checkpoint at ``path`` (random weights)."""
    import torch

    from faceforge.models import build_backbone
    from faceforge.models.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    save_checkpoint(path, build_backbone("mobilefacenet_tiny"))
    return path


def write_identity_crops(root: Path, seed: int, prefix: str, identities: int = 4, per: int = 3) -> None:
    """``root/<prefix><j>/<k>.png``: synthetic aligned crops, ``per`` of each of ``identities``."""
    import cv2

    from faceforge.data.synthetic import SyntheticFaces

    synth = SyntheticFaces(seed=seed)
    for j in range(identities):
        (root / f"{prefix}{j}").mkdir(parents=True)
        for k in range(per):
            cv2.imwrite(str(root / f"{prefix}{j}" / f"{k}.png"), synth.render(j, k)[0][:, :, ::-1])


def need_retinaface() -> None:
    """Skip unless onnxruntime (which runs the detector faceforge ships) is installed."""
    pytest.importorskip("onnxruntime", reason="face detection needs onnxruntime")


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (``pg_server.PostgresServer``); skips without one."""
    from pg_server import start_or_skip

    server = start_or_skip()
    yield server
    server.close()
