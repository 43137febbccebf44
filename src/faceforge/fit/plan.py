"""What ``faceforge fit`` will do: the options, a look at the photos, and the recipe chosen from them.

The recipe is a plain config dict (``faceforge.config.ExperimentConfig``) plus the reasons, one line
per choice, that ``--dry-run`` and the report print:

* **shallow data** (the median training identity has <= 2 images): semi-siamese training (Du et al.
  2020, FaceX-Zoo's recipe: probe net + moving-average gallery net, CosFace over a feature queue),
  because a class weight learnt from two photos is mostly noise;
* **many identities** (> ``PARTIAL_FC_FROM``): Partial FC, 10% of the negative class centres per step;
* **--init MODEL**: fine-tuning: the backbone starts from MODEL (imported first with ``--init-from``),
  a new head, the backbone at a tenth of the learning rate, and a head warm-up (backbone frozen)
  for the first epoch;
* **device**: on a CPU a CPU-sized backbone (``mobilefacenet_tiny``, 48K parameters, 10 MMACs) unless
  ``--backbone`` says otherwise; on CUDA ``mobilefacenet``;
* **budget**: ``--epochs N``, or ``--minutes N`` of training, turned into a step count by timing the
  first steps (saved, so a resumed run trains the same steps);
* **keep-best** on verification pairs of the validation identities.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.errors import UserError

PARTIAL_FC_FROM = 50_000  # training identities above which Partial FC samples the class centres
SHALLOW_AT_MOST = 2  # median images per training identity at or below which data is "shallow"
CPU_BACKBONE = "mobilefacenet_tiny"
GPU_BACKBONE = "mobilefacenet"
PEERS = ("arcface_torch", "facex")


@dataclass
class FitOptions:
    """Everything ``faceforge fit`` was asked (the CLI's options)."""

    photos: str
    out: str
    minutes: float | None = None
    epochs: int | None = None
    far: float = 1e-3
    seed: int = 0
    val: float = 0.1
    test: float = 0.2
    min_images: int = 2
    unknown: float = 0.3  # share of the test identities left out of the gallery (open set)
    init: str | None = None
    init_from: str | None = None
    backbone: str | None = None
    device: str = "auto"
    aligned: bool = False
    detector: str = "retinaface"
    workers: int = 1
    batch_size: int = 64

    def check(self) -> None:
        if self.minutes is not None and self.epochs is not None:
            raise UserError("fit: give --minutes or --epochs, not both")
        if self.minutes is not None and not self.minutes > 0:
            raise UserError(f"--minutes: must be positive, got {self.minutes}")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--epochs: must be at least 1, got {self.epochs}")
        if not 0 < self.far < 1:
            raise UserError(f"--far: expected a rate in (0, 1), got {self.far}")
        if self.init_from and not self.init:
            raise UserError("--init-from: names the format of --init MODEL; give --init too")
        if self.init_from and self.init_from not in PEERS:
            raise UserError(f"--init-from: expected one of {', '.join(PEERS)}, got '{self.init_from}'")
        if self.init_from and not self.backbone:
            raise UserError(f"--init-from {self.init_from}: say the peer's architecture with --backbone "
                            "(e.g. iresnet50, mobilefacenet)")
        if self.init and not Path(self.init).is_file():
            raise UserError(f"--init: model file not found: {self.init}")

    def budget(self) -> dict[str, Any]:
        if self.epochs is not None:
            return {"epochs": self.epochs}
        return {"minutes": 15.0 if self.minutes is None else float(self.minutes)}

    def fingerprint(self) -> str:
        """What decides the results (not where they go): stages compare it to resume safely."""
        keep = {k: v for k, v in asdict(self).items() if k not in ("out", "workers")}
        keep["photos"] = str(Path(self.photos).resolve())
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def look_at_photos(photos: str | Path) -> dict[str, Any]:
    """Identities, images and images per identity of an identity folder (nothing decoded)."""
    from faceforge.io.folders import list_identity_folder

    _, labels, names = list_identity_folder(Path(photos), "fit")
    per = np.bincount(labels, minlength=len(names))
    return {"identities": len(names), "images": int(per.sum()), "per_identity": {
        "min": int(per.min()), "median": float(np.median(per)), "max": int(per.max())}}


def device_kind(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _init_model(path: str | None) -> dict[str, Any] | None:
    """Backbone name, options and embedding size of the faceforge checkpoint to start from."""
    if not path:
        return None
    from faceforge.models.checkpoint import read_checkpoint

    rec = read_checkpoint(path).get("backbone")
    if not isinstance(rec, dict) or not rec.get("name"):
        raise UserError(f"--init {path}: not a faceforge checkpoint with a backbone record; for a "
                        f"peer's weights add --init-from {'|'.join(PEERS)} --backbone NAME")
    options = dict(rec.get("options", {}))
    size = int(options.pop("embedding_size", rec.get("meta", {}).get("embedding_size", 512)))
    return {"backbone": rec["name"], "options": options, "embedding_size": size}


def compute_threads(kind: str) -> tuple[int, str]:
    """Torch threads for training and embedding, and why: all cores, or one on a CPU already
    busier than its cores (OpenMP threads then spin-wait for each other: on a 2-core machine at load
    17 one thread trained mobilefacenet_tiny 4x faster than two)."""
    import os

    cores = os.cpu_count() or 1
    if kind != "cpu":
        return cores, f"{cores} CPU threads beside the GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cores > 1 and load > cores:
        return 1, (f"1 CPU thread: the machine is busy (load {load:.1f} on {cores} cores) and "
                   "oversubscribed threads wait for each other")
    return cores, f"{cores} CPU threads (load {load:.1f} on {cores} cores)"


def choose_recipe(opts: FitOptions, train: dict[str, Any], out: Path, init_path: str | None = None) -> dict:
    """The training config (a dict for ``ExperimentConfig``) and why, from the training split's
    sizes ``train`` (``identities``, ``images``, ``median``). ``init_path``: the faceforge checkpoint
    to start from (the imported one for ``--init-from``)."""
    why: list[str] = []
    kind = device_kind(opts.device)
    cfg: dict[str, Any] = {
        "seed": opts.seed, "output": str(out / "train"), "device": kind,
        "data": {"train": f"packed:{out / 'data' / 'train.ffpk'}",
                 "val": f"facex:{out / 'sets' / 'val_pairs.txt'}", "batch_size": opts.batch_size,
                 "workers": 0, "flip": True},
        "model": {"backbone": GPU_BACKBONE if kind == "cuda" else CPU_BACKBONE, "embedding_size": 512},
        "head": {"name": "arcface", "s": 30.0, "m": 0.5},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
                  "warmup_epochs": 0.2},
        "train": {"mode": "conventional", "epochs": 1, "log_every": 10, "keep": "best",
                  "val_every_epochs": 1, "save_every_steps": 50, "deterministic": kind == "cpu"},
    }
    init = _init_model(init_path or opts.init)
    if init:
        cfg["model"] = {"backbone": init["backbone"], "embedding_size": init["embedding_size"],
                        "options": init["options"]}
        why.append(f"backbone {init['backbone']} ({init['embedding_size']}-D): the architecture of --init")
    elif opts.backbone:
        cfg["model"]["backbone"] = opts.backbone
        why.append(f"backbone {opts.backbone}: --backbone")
    elif kind == "cpu":
        cfg["model"]["embedding_size"] = 128
        why.append(f"backbone {CPU_BACKBONE} (128-D, 48K parameters): a CPU-sized network, so the budget "
                   "buys many passes over the data (--backbone NAME for another)")
    else:
        why.append(f"backbone {GPU_BACKBONE} (512-D): a GPU is present")
    if train["median"] <= SHALLOW_AT_MOST:
        cfg["train"].update({"mode": "semi_siamese", "queue_size": int(min(4096, max(64, train["images"]))),
                             "momentum": 0.999})
        cfg["head"] = {"name": "cosface", "s": 30.0, "m": 0.35}
        cfg["optim"]["warmup_epochs"] = 0.5
        why.append(f"semi-siamese training + CosFace: shallow data (median {train['median']:g} images per "
                   f"training identity <= {SHALLOW_AT_MOST}), a class weight per identity would learn noise")
    else:
        why.append(f"conventional training + ArcFace (s 30, m 0.5): median {train['median']:g} images per "
                   "training identity")
        if train["identities"] > PARTIAL_FC_FROM:
            cfg["train"]["sample_rate"] = 0.1
            why.append(f"Partial FC, 10% of the negative class centres per step: {train['identities']} "
                       f"identities > {PARTIAL_FC_FROM}")
        else:
            why.append(f"full softmax over {train['identities']} identities (Partial FC from "
                       f"{PARTIAL_FC_FROM})")
    if init_path or opts.init:
        cfg["model"]["init"] = init_path or opts.init
        cfg["optim"].update({"lr": 0.01, "backbone_lr_mult": 0.1, "head_warmup_epochs": 1.0,
                             "warmup_epochs": 0.0})
        src = f"{opts.init_from} weights imported from {opts.init}" if opts.init_from else opts.init
        why.append(f"fine-tuning from {src}: a new head, learning rate 0.01 with the backbone at 0.1x, the "
                   "backbone frozen for the first epoch (head warm-up)")
    budget = opts.budget()
    if "epochs" in budget:
        cfg["train"]["epochs"] = budget["epochs"]
        why.append(f"budget: {budget['epochs']} epochs (--epochs)")
    else:
        why.append(f"budget: {budget['minutes']:g} minutes of training (--minutes), turned into a step count "
                   "by timing the first steps; the count is saved so a resumed run trains the same steps")
    why.append("keep-best: the checkpoint with the best verification accuracy on the validation "
               "identities' pairs, checked every epoch")
    threads, reason = compute_threads(kind)
    why.append(reason)
    if cfg["train"]["deterministic"]:
        why.append("deterministic CPU kernels (and the thread count saved with the recipe): the same seed "
                   "gives the same model, resumed or not")
    return {"config": cfg, "why": why, "threads": threads}
