"""``faceforge landmarks train CONFIG``: a compact regression loop.

Why not the recognition engine: its dataset contract is labelled identities (``open_source`` needs
two or more classes; batch plans and flips work on class labels and aligned crops), and a mode's
``step(backbone, images, labels)`` receives integer labels, so 176 regression targets would have to
be smuggled through it. This loop reuses the engine's pieces instead: ``lr_factor`` schedules and
``OptimConfig``, parameter groups without decay on norms, atomic faceforge checkpoints, the JSONL
metrics log and a tqdm bar; budgets by epochs, steps or wall-clock minutes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from faceforge.config import COUNT, NON_NEGATIVE, POSITIVE, Bound, OptimConfig
from faceforge.errors import UserError


@dataclass
class LandmarkDataConfig:
    train: str = "synthetic:400x20,mode=wild"
    val: str | None = "synthetic:40x5,mode=wild,offset=100000"
    batch_size: int = 32
    workers: int = 0
    crop_scale: float = 1.25  # square side = crop_scale x max(box w, h)
    shift: float = 0.06  # centre jitter, fraction of the side
    scale_jitter: float = 0.1
    rotation: float = 18.0  # degrees, uniform +-
    flip: bool = True
    clean_margin: float = 0.1  # drop samples with points this far (fraction of side) outside the crop

    RANGES: ClassVar[dict[str, Bound]] = {
        "batch_size": COUNT, "workers": NON_NEGATIVE, "crop_scale": POSITIVE, "shift": NON_NEGATIVE,
        "scale_jitter": Bound(0, 1, open_high=True), "rotation": Bound(0, 180), "clean_margin": NON_NEGATIVE,
    }
    HELP: ClassVar[dict[str, str]] = {
        "train": "labelled faces: a labels .csv, or synthetic:NxK,mode=wild",
        "val": "held-out labels (null = none)",
        "batch_size": "crops per step", "workers": "DataLoader worker processes",
        "crop_scale": "square crop side = crop_scale x max(box w, h)",
        "shift": "centre jitter, fraction of side",
        "scale_jitter": "random crop-size jitter (fraction)", "rotation": "random rotation, degrees (+-)",
        "flip": "random horizontal flips (points mirrored)",
        "clean_margin": "drop samples with points this far (fraction of side) outside the crop",
    }


@dataclass
class LandmarkModelConfig:
    backbone: str = "mobilenet_v1_shallow"
    input_size: int = 160
    init: str | None = None  # start from a landmark checkpoint
    # detector box -> crop box at inference (predict.adjust_box); 0 and 1 for labels on detector boxes
    box_shift: float = 0.07
    box_scale: float = 1 / 1.05
    options: dict[str, Any] = field(default_factory=dict)

    RANGES: ClassVar[dict[str, Bound]] = {"input_size": COUNT}
    HELP: ClassVar[dict[str, str]] = {
        "backbone": "landmark backbone (mobilenet_v1_shallow)", "input_size": "square crop side in pixels",
        "init": "start from a landmark checkpoint (null = random)",
        "box_shift": "detector box -> crop box: downward shift (fraction of the box)",
        "box_scale": "detector box -> crop box: scale", "options": "other keys go to the backbone",
    }


@dataclass
class LandmarkTrainConfig:
    epochs: int = 10
    max_minutes: float = 0.0
    max_steps: int = 0
    loss: str = "mse"  # mse | wing | l1 (on crop pixels)
    wing_w: float = 10.0
    wing_eps: float = 2.0
    log_every: int = 20
    threads: int = 0  # torch intra-op threads (0 = torch's default)

    RANGES: ClassVar[dict[str, Bound]] = {
        "epochs": COUNT, "max_minutes": NON_NEGATIVE, "max_steps": NON_NEGATIVE, "wing_w": POSITIVE,
        "wing_eps": POSITIVE, "log_every": COUNT, "threads": NON_NEGATIVE,
    }
    HELP: ClassVar[dict[str, str]] = {
        "epochs": "passes over the data", "max_minutes": "wall-clock budget (0 = none)",
        "max_steps": "step budget (0 = none)", "loss": "mse | wing | l1 (on crop pixels)",
        "wing_w": "wing loss width", "wing_eps": "wing loss curvature",
        "log_every": "steps between log records",
        "threads": "torch intra-op threads (0 = torch's default)",
    }


@dataclass
class LandmarkConfig:
    seed: int = 0
    output: str = "runs/landmarks"
    device: str = "cpu"
    data: LandmarkDataConfig = field(default_factory=LandmarkDataConfig)
    model: LandmarkModelConfig = field(default_factory=LandmarkModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=0.2))
    train: LandmarkTrainConfig = field(default_factory=LandmarkTrainConfig)

    HELP: ClassVar[dict[str, str]] = {"seed": "random seed", "output": "run folder",
                                      "device": "cpu, cuda, cuda:N or auto"}


def load_landmark_config(path: str | None, overrides: list[str] | None = None) -> LandmarkConfig:
    from faceforge.config import load_config

    return load_config(path, overrides, cls=LandmarkConfig)


def _optimizer(net, o: OptimConfig):
    decay, no_decay = [], []
    for p in net.parameters():
        (no_decay if o.no_decay_norm and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr)
    raise UserError(f"optim.name: unknown optimizer '{o.name}' (valid: adamw, adam, sgd)")


def _loader(dataset, batch_size: int, workers: int, shuffle: bool, seed: int, drop_last: bool):
    from faceforge.landmarks.samples import collate

    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       collate_fn=collate, drop_last=drop_last, generator=g,
                                       worker_init_fn=_worker_init if workers else None)


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


@torch.no_grad()
def predict_crops(net, loader, device) -> tuple[np.ndarray, np.ndarray, int]:
    """Predicted and true points in crop pixels [N, 88, 2] over a loader, and the skipped count."""
    net.eval()
    preds, truths, skipped = [], [], 0
    for x, y, bad in loader:
        skipped += bad
        if x is None:
            continue
        preds.append(net(x.to(device)).cpu().numpy())
        truths.append(y.numpy())
    s = net.input_size
    if not preds:
        raise UserError("evaluation: no readable samples")
    return np.concatenate(preds) * s, np.concatenate(truths) * s, skipped


def evaluate_net(net, source_spec: str, batch_size: int = 64, workers: int = 0, device: str = "cpu",
                 clean_margin: float = 0.1) -> dict:
    """Errors on a source with un-augmented crops of the labelled boxes (crop pixels at input size)."""
    from faceforge.landmarks.metrics import landmark_errors
    from faceforge.landmarks.samples import CropDataset, clean, open_landmark_source

    source = open_landmark_source(source_spec)
    keep, report = clean(source, net.crop_scale, clean_margin)
    if len(keep) == 0:
        raise UserError(f"{source_spec}: no usable samples after cleaning ({report['reasons']})")
    ds = CropDataset(source, keep, net.input_size, net.crop_scale, net.mean, net.std, augment=None)
    pred, truth, skipped = predict_crops(net, _loader(ds, batch_size, workers, False, 0, False), device)
    out = landmark_errors(pred, truth)
    out.update({"source": source.description, "input_size": net.input_size, "skipped_images": skipped,
                "dropped_by_cleaning": report["dropped"]})
    out["ibug68"] = errors_68(pred, truth)
    return out


def errors_68(pred: np.ndarray, truth: np.ndarray) -> dict | None:
    """NME in the iBUG 68 scheme when the true 88 were derived from 68 (teacher labels), else None.

    The 68 come back exactly from such 88 (``schemes.to_68``; the labels carry 2 decimals); the
    prediction's 68 are its least-squares 68. Both are affine-equivariant, so crop pixels are fine.
    """
    from faceforge.landmarks.schemes import scheme_errors, to_68, to_88

    t68 = to_68(truth)
    if np.abs(to_88(t68) - truth).max() > 0.05:
        return None
    return scheme_errors(to_68(pred), t68, "ibug68")


def train(cfg: LandmarkConfig, quiet: bool = False) -> dict:
    """Train as configured; returns steps, seconds, the last metrics and the checkpoint path."""
    from tqdm import tqdm

    from faceforge.atomic import atomic_write_text
    from faceforge.config import to_dict
    from faceforge.landmarks.loss import landmark_loss
    from faceforge.landmarks.model import build_landmark_model, load_landmark_model, save_landmark_model
    from faceforge.landmarks.samples import CropDataset, clean, open_landmark_source
    from faceforge.train.schedule import lr_factor

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    from faceforge.distributed import check_device

    name = check_device(cfg.device, "device")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                          ("cpu" if name == "auto" else name))
    d = cfg.data
    if cfg.model.init:
        net = load_landmark_model(cfg.model.init)
        net.crop_scale = d.crop_scale
        net.box_shift, net.box_scale = cfg.model.box_shift, cfg.model.box_scale
    else:
        m = cfg.model
        net = build_landmark_model(m.backbone, m.input_size, d.crop_scale, m.box_shift, m.box_scale,
                                   **m.options)
    net.to(device)
    loss_fn = landmark_loss(cfg.train.loss, w=cfg.train.wing_w, eps=cfg.train.wing_eps)

    source = open_landmark_source(d.train)
    keep, report = clean(source, d.crop_scale, d.clean_margin)
    atomic_write_text(out / "clean_report.json", json.dumps(report, indent=2) + "\n")
    if len(keep) < d.batch_size:
        raise UserError(f"data.train: {len(keep)} usable samples after cleaning, fewer than one batch "
                        f"of {d.batch_size} (dropped: {report['reasons']})")
    augment = {"shift": d.shift, "scale_jitter": d.scale_jitter, "rotation": d.rotation, "flip": d.flip}
    dataset = CropDataset(source, keep, net.input_size, d.crop_scale, net.mean, net.std, augment, cfg.seed)
    loader = _loader(dataset, d.batch_size, d.workers, True, cfg.seed, True)
    val_loader = None
    if d.val:
        val_source = open_landmark_source(d.val)
        vkeep, _ = clean(val_source, d.crop_scale, d.clean_margin)
        val_ds = CropDataset(val_source, vkeep, net.input_size, d.crop_scale, net.mean, net.std, None)
        val_loader = _loader(val_ds, 64, d.workers, False, 0, False)

    opt = _optimizer(net, cfg.optim)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    atomic_write_text(out / "config.yaml", _yaml(to_dict(cfg)))
    log = open(out / "metrics.jsonl", "a")
    s = float(net.input_size)
    step, skipped, t0, stop = 0, 0, time.time(), False
    last: dict = {}
    bar = tqdm(total=total, disable=quiet, desc="landmarks", dynamic_ncols=True)
    epoch = 0
    try:
        while epoch < cfg.train.epochs and not stop:
            dataset.epoch = epoch
            net.train()
            t_log, n_log = time.time(), 0
            for x, y, bad in loader:
                skipped += bad
                if x is None:
                    continue
                f = lr_factor(step, cfg.optim, steps_per_epoch, total)
                for g in opt.param_groups:
                    g["lr"] = cfg.optim.lr * f
                pred = net(x.to(device)) * s  # losses in crop pixels, comparable with the published MSE
                loss = loss_fn(pred, y.to(device) * s)
                if not torch.isfinite(loss):
                    raise UserError(f"training diverged (loss {float(loss)}) at step {step}; lower optim.lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
                opt.step()
                step += 1
                n_log += len(x)
                bar.update(1)
                stop = (cfg.train.max_steps and step >= cfg.train.max_steps) or (
                    cfg.train.max_minutes and time.time() - t0 > cfg.train.max_minutes * 60)
                if stop or step % max(1, cfg.train.log_every) == 0:
                    with torch.no_grad():
                        mse = float(((pred - y.to(device) * s) ** 2).mean())
                    last = {"step": step, "epoch": epoch, "lr": cfg.optim.lr * f,
                            "loss": float(loss.detach()), "train_mse": mse, "skipped_images": skipped,
                            "samples_per_s": n_log / max(time.time() - t_log, 1e-9)}
                    log.write(json.dumps(last) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", mse=f"{mse:.2f}")
                    t_log, n_log = time.time(), 0
                if stop:
                    break
            epoch += 1
            val = {}
            if val_loader is not None:
                from faceforge.landmarks.metrics import landmark_errors

                p, t, _ = predict_crops(net, val_loader, device)
                e = landmark_errors(p, t)
                val = {"val_mse": e["mse"], "val_mae": e["mae"], "val_nme_percent": e["nme_percent"]}
                log.write(json.dumps({"step": step, "epoch": epoch, **val}) + "\n")
                log.flush()
            last = {**last, **val}
            save_landmark_model(out / "last.ckpt", net.cpu(), config=to_dict(cfg), metrics=last,
                                clean=report)
            net.to(device)
    finally:
        bar.close()
        log.close()
    return {"output": str(out), "steps": step, "epochs": epoch, "seconds": time.time() - t0,
            "last": last, "checkpoint": str(out / "last.ckpt"), "clean": {k: report[k] for k in
                                                                          ("total", "kept", "dropped")}}


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
