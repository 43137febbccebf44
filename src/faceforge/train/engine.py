"""The training loop: one loop for every mode, device and world size.

``train(cfg)`` builds the dataset, backbone and mode, then runs epochs of
``mode.step`` → sum of ``loss*`` → backward → clip → optimiser → schedule, with mixed precision,
DDP for the backbone, checkpoints that hold everything needed to resume exactly (on any world
size), a JSONL metrics log, optional periodic verification and TensorBoard scalars.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceforge import distributed as D
from faceforge.atomic import atomic_copy, atomic_write_text
from faceforge.config import ExperimentConfig, to_dict
from faceforge.data.batches import BatchPlan, DeviceBatches, epoch_batches, make_plan
from faceforge.data.dataset import open_source
from faceforge.data.packed import apply_crc_options
from faceforge.errors import UserError
from faceforge.models import build_backbone
from faceforge.models.checkpoint import (
    FORMAT,
    backbone_record,
    read_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from faceforge.registry import MODES
from faceforge.train.checkpointing import (
    check_resume,
    gather_sharded_state,
    load_init,
    load_sharded_state,
    load_weights,
)
from faceforge.train.components import check_components
from faceforge.train.meter import Meter
from faceforge.train.optim import build_optimizer, param_groups
from faceforge.train.precision import choose_precision
from faceforge.train.preemption import StopSignals
from faceforge.train.progress import TrainProgress
from faceforge.train.schedule import lr_factor


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainState:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    samples_seen: int = 0
    best_metric: float = -1.0
    skipped_images: int = 0
    history: list[dict] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    name = D.check_device(name, "device")
    if name == "auto":
        name = f"cuda:{D.local_rank()}" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: ExperimentConfig, resume: str | None = None, quiet: bool = False):
        self.cfg = cfg
        self.quiet = quiet
        check_components(cfg)  # a misspelt key names the closest real ones before anything is built
        D.init_from_env(cfg.device)
        self.rank, self.world = D.rank(), D.world_size()
        self.device = _device(cfg.device)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        _seed_everything(cfg.seed + self.rank)
        self.out = Path(cfg.output)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            if not resume and (self.out / "metrics.jsonl").exists():
                # a fresh run into a used folder starts its own log (its checkpoints replace the old)
                (self.out / "metrics.jsonl").unlink()

        self.dataset = open_source(cfg.data.train)
        apply_crc_options(self.dataset, cfg.data.verify_crc, cfg.data.record_crc, cfg.data.train)
        self.num_classes = self.dataset.num_classes
        opts = dict(cfg.model.options)
        self.backbone = build_backbone(cfg.model.backbone, embedding_size=cfg.model.embedding_size, **opts)
        if cfg.model.init:
            load_init(self.backbone, cfg.model.init, cfg)
        self.meta = self.backbone.meta
        self.mode = MODES.build(
            cfg.train.mode,
            where="train",
            backbone=self.backbone,
            num_classes=self.num_classes,
            cfg=cfg,
            **cfg.train.options,
        )
        self.backbone.to(self.device)
        self.mode.to(self.device)
        cuda = self.device.type == "cuda"
        if cuda and not cfg.train.deterministic:
            torch.backends.cudnn.benchmark = True  # static shapes: autotuned convolutions pay off
        # train.precision auto: bf16 (+ channels_last) on a CPU where measured faster (train/precision.py)
        self.precision, self.channels_last, self.precision_reason = choose_precision(
            cfg.train.precision, cfg.train.channels_last, self.device, self.backbone,
            tuple(self.meta["input_size"]), cfg.data.batch_size, cfg.model.backbone)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if cfg.optim.grad_clip_scope not in ("all", "backbone"):
            scope = cfg.optim.grad_clip_scope
            raise UserError(f"optim.grad_clip_scope: '{scope}' is not one of all, backbone")
        self.groups = param_groups(self.backbone, self.mode, cfg)
        self.optimizer = build_optimizer(self.groups, cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        if cfg.train.cuda_graphs and not cuda:
            raise UserError(f"train.cuda_graphs: needs a CUDA device (device is {self.device})")

        self.plan: BatchPlan = make_plan(
            self.mode.plan,
            self.dataset,
            cfg.data.batch_size,
            cfg.seed,
            self.rank,
            self.world,
            k=self.mode.plan_k,
        )
        if self.plan.steps_per_epoch == 0:
            raise UserError(
                f"data.batch_size: {cfg.data.batch_size} x {self.world} processes exceeds "
                f"the {len(self.dataset)} training images"
            )
        self.total_steps = self.plan.steps_per_epoch * cfg.train.epochs
        if cfg.train.max_steps:  # a step budget ends the schedule there
            self.total_steps = min(self.total_steps, cfg.train.max_steps)
        self.state = TrainState()
        self.tb = None
        if resume:
            self._resume(resume)

        self.model = self.backbone
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.backbone, device_ids=ids)
        if cfg.train.cuda_graphs:
            # the backbone's shapes are static (drop_last batches); "reduce-overhead" captures its
            # forward and backward as CUDA graphs and replays them. The classifier stays eager:
            # Partial FC sampling changes its shapes every step.
            self.model = torch.compile(self.model, mode="reduce-overhead")
        elif cfg.train.compile:
            mode = cfg.train.compile if isinstance(cfg.train.compile, str) else None
            self.model = torch.compile(self.model, mode=mode)
        if cfg.train.tensorboard and self.rank == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError(
                    "train.tensorboard needs the tensorboard package: pip install 'faceforge[tensorboard]'"
                ) from None
            self.tb = SummaryWriter(str(self.out / "tensorboard"))

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, metrics: dict | None = None) -> dict:
        mode_state, optim_state = gather_sharded_state(self.mode, self.optimizer)
        return {
            "format": FORMAT,
            "version": 1,
            "backbone": backbone_record(self.backbone),
            "head": {
                "name": self.cfg.head.name,
                "options": dict(self.cfg.head.options),
                "weight": self.mode.classifier_weight(),
            },
            "train": {
                "mode": self.cfg.train.mode,
                "mode_state": mode_state,
                "optimizer": optim_state,
                "scaler": self.scaler.state_dict(),
                "state": self.state.__dict__,
                "world_size": self.world,
                "rng": rng_state(),  # tensors and plain types: weights_only loading
            },
            "config": to_dict(self.cfg),
            "metrics": metrics or {},
        }

    def save(self, name: str, metrics: dict | None = None) -> Path | None:
        ckpt = self._checkpoint(metrics)  # collective: every rank takes part in the gather
        if self.rank != 0:
            return None
        path = self.out / name
        write_checkpoint(path, ckpt)
        return path

    def _resume(self, path: str) -> None:
        if path == "auto":
            path = str(self.out / "last.ckpt")
            if not Path(path).is_file():
                return
        ckpt = read_checkpoint(path)
        tr = ckpt.get("train")
        if not tr:
            raise UserError(f"{path}: holds no training state (an exported or imported checkpoint?)")
        if tr["mode"] != self.cfg.train.mode:
            raise UserError(
                f"{path}: was trained in mode '{tr['mode']}', config says '{self.cfg.train.mode}'"
            )
        check_resume(path, ckpt, self.cfg, self.num_classes)
        load_weights(self.backbone, path, ckpt["backbone"], self.cfg)
        load_sharded_state(self.mode, self.optimizer, tr["mode_state"], tr["optimizer"])
        self.scaler.load_state_dict(tr["scaler"])
        self.state = TrainState(**tr["state"])
        if tr["world_size"] == self.world:
            set_rng_state(tr["rng"])
        # a different world size keeps the sample position; the step is re-derived from it
        self.state.step_in_epoch = self.state.samples_seen // self.plan.global_batch
        self._truncate_log(self.state.global_step)
        self._log_line(
            {
                "event": "resume",
                "from": str(path),
                "epoch": self.state.epoch,
                "step_in_epoch": self.state.step_in_epoch,
                "world_size": self.world,
                "saved_world_size": tr["world_size"],
            }
        )

    # -- logging -------------------------------------------------------------------------------

    def _truncate_log(self, step: int) -> None:
        """Drop the records of steps after ``step`` (a resumed run logs them again), atomically."""
        log = self.out / "metrics.jsonl"
        if self.rank != 0 or not log.is_file():
            return
        kept = []
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int) or rec["step"] <= step:
                kept.append(line)
        atomic_write_text(log, "".join(x + "\n" for x in kept))

    def _log_line(self, record: dict) -> None:
        if self.rank != 0:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and "step" in record:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    # -- validation ----------------------------------------------------------------------------

    def validate(self) -> dict:
        if not self.cfg.data.val or self.rank != 0:
            return {}
        from faceforge.embed.torch_embedder import TorchEmbedder
        from faceforge.eval.verification import evaluate_pairs
        from faceforge.io.progress import progress_callback

        say = self.bar.say if getattr(self, "bar", None) else (lambda text: None)
        say(f"validating on {self.cfg.data.val} ...")
        t0 = time.time()
        self.backbone.eval()
        try:
            res = evaluate_pairs(
                TorchEmbedder(self.backbone, device=str(self.device),
                              precision="bf16" if (self.precision, self.device.type) == ("bf16", "cpu")
                              else "fp32"),
                self.cfg.data.val, flip="sum",
                progress=progress_callback("validate", enabled=not self.quiet),
            )
        finally:
            self.backbone.train()
        say(f"validation: accuracy {res['accuracy']:.4f} ({time.time() - t0:.1f} s)")
        return {"val_accuracy": float(res["accuracy"]), "val_std": float(res["accuracy_std"])}

    # -- the loop ------------------------------------------------------------------------------

    def _set_lr(self) -> float:
        f = lr_factor(self.state.global_step, self.cfg.optim, self.plan.steps_per_epoch, self.total_steps)
        # head warm-up (fine-tuning): a new head learns on the frozen backbone first
        frozen = self.state.global_step < self.cfg.optim.head_warmup_epochs * self.plan.steps_per_epoch
        for g in self.optimizer.param_groups:
            mult = 0.0 if frozen and g.get("name", "").startswith("backbone") else g.get("lr_mult", 1.0)
            g["lr"] = self.cfg.optim.lr * f * mult
        return self.cfg.optim.lr * f

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step. Returns its terms (mean over ``grad_accum`` chunks) as detached
        device tensors: nothing is read back to the host here (see :class:`Meter`)."""
        cfg = self.cfg
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        accum = max(1, cfg.train.grad_accum)
        sums: dict[str, torch.Tensor] = {}
        for x, y in zip(images.chunk(accum), labels.chunk(accum)):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)  # free when already so
            with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = self.mode.step(self.model, x, y)
            loss = sum(v for k, v in out.items() if k.startswith("loss"))
            self.scaler.scale(loss / accum).backward()
            for k, v in (out | {"loss_total": loss}).items():
                v = v.detach().float().mean()
                sums[k] = sums[k] + v if k in sums else v
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._clip_params, cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.mode.after_step(self.backbone)
        return {k: v / accum for k, v in sums.items()} if accum > 1 else sums

    @property
    def _clip_params(self) -> list[torch.Tensor]:
        """What ``optim.grad_clip`` clips: every parameter, or the backbone's only (train_v2)."""
        if self.cfg.optim.grad_clip_scope == "backbone":
            return [p for p in self.backbone.parameters() if p.requires_grad]
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _input_size(self) -> tuple[int, int]:
        """What the backbone reads: the upper-half mode crops full crops itself."""
        size = tuple(self.meta["input_size"])
        return (2 * size[0], size[1]) if self.meta.get("template") == "arcface_upper_half" else size

    def _read_window(self, meter: Meter, t_start: float, budget_s: float) -> tuple[dict, bool]:
        """The one device->host read of a log record: the window's mean terms, its first
        non-finite loss (-> :class:`TrainingDiverged`) and the decision to stop (time budget
        spent, or a SIGTERM/SIGINT on any rank), which is all-reduced here (every rank logs at the
        same steps) so every rank stops together: ``2 * signal number + over budget``, max."""
        flag = None
        if budget_s or D.is_distributed():
            over = bool(budget_s) and time.time() - t_start > budget_s
            code = 2 * (self.signals.received or 0) + float(over)
            flag = torch.tensor([float(code)], device=self.device)
            D.all_reduce_(flag, op=torch.distributed.ReduceOp.MAX if D.is_distributed() else None)
        means, bad_step, bad_value, code = meter.read(flag)
        if bad_step is not None:
            self._diverged(bad_step, bad_value)
        if int(code) >= 2 and self.signals.received is None:  # another rank was signalled
            self.signals.received = int(code) // 2
        return means, bool(code)

    def _diverged(self, step: int, value: float) -> None:
        raise TrainingDiverged(
            f"loss became {value} at step {step} (epoch {self.state.epoch}); the last good "
            f"checkpoint in {self.out} is kept — lower optim.lr or use optim.grad_clip"
        )

    def fit(self) -> dict:
        with StopSignals(self.device) as self.signals:
            try:
                return self._fit()
            finally:  # an error then starts on a line of its own, not after the bar
                if getattr(self, "bar", None) is not None:
                    self.bar.close()

    def _fit(self) -> dict:
        cfg, st = self.cfg, self.state
        budget_s = cfg.train.max_minutes * 60.0
        t_start = time.time()
        stop = False
        last_metrics: dict[str, Any] = {}
        self.backbone.train()
        self.mode.train()
        if self.rank == 0:
            atomic_write_text(self.out / "config.yaml", _yaml(to_dict(cfg)))
        bar = TrainProgress(self.total_steps, self.plan.steps_per_epoch, cfg.train.epochs, budget_s,
                            st.global_step, enabled=not self.quiet and self.rank == 0)
        self.bar = bar
        while st.epoch < cfg.train.epochs and not stop and not (self.world == 1 and self.signals.received):
            t_log, n_log = time.time(), 0
            batches = epoch_batches(
                self.dataset,
                self.plan,
                st.epoch,
                st.step_in_epoch,
                flip=cfg.data.flip,
                workers=cfg.data.workers,
                size=self._input_size(),
                template=self.meta.get("template", "arcface"),
                pin_memory=self.device.type == "cuda",
            )
            # uint8 batches travel to the device (one ahead, on a side stream) and become model
            # input there; closing shuts the DataLoader workers down now, not at interpreter exit
            feed = DeviceBatches(
                batches, self.device, self.meta["mean"], self.meta["std"], channels_last=self.channels_last
            )
            meter = Meter()
            with contextlib.closing(feed):
                for step, images, labels, skipped in feed:
                    if not len(labels) and self.world == 1:  # every image damaged: no step (NaN loss)
                        st.skipped_images += int(skipped)
                        st.step_in_epoch = step + 1
                        st.samples_seen = st.step_in_epoch * self.plan.global_batch
                        continue
                    lr = self._set_lr()
                    out = self._step(images, labels)
                    st.global_step += 1
                    st.step_in_epoch = step + 1
                    st.samples_seen = st.step_in_epoch * self.plan.global_batch
                    n_log += len(labels) * self.world
                    st.skipped_images += int(skipped)
                    meter.add(out, st.global_step)
                    bar.update(st.global_step)
                    stop = bool(cfg.train.max_steps) and st.global_step >= cfg.train.max_steps
                    # one process reads its signal flag at every step; ranks agree at log steps
                    stop = stop or (self.signals.received is not None and not D.is_distributed())
                    if (
                        stop
                        or st.global_step % max(1, cfg.train.log_every) == 0
                        or st.step_in_epoch == self.plan.steps_per_epoch
                    ):
                        means, over_budget = self._read_window(meter, t_start, budget_s)
                        stop = stop or over_budget
                        dt = max(time.time() - t_log, 1e-9)
                        rec = {
                            "step": st.global_step,
                            "epoch": st.epoch,
                            "lr": lr,
                            **means,
                            "skipped_images": st.skipped_images,
                            "samples_per_s": n_log / dt,
                        }
                        bar.postfix = f"loss {means['loss_total']:.3f} lr {lr:.3g} {n_log / dt:.0f} img/s"
                        self._log_line(rec)
                        last_metrics = rec
                        t_log, n_log = time.time(), 0
                    if cfg.train.save_every_steps and st.global_step % cfg.train.save_every_steps == 0:
                        bad = meter.first_bad()  # a checkpoint is only ever written of good weights
                        if bad is not None:
                            self._diverged(*bad)
                        self.save("last.ckpt", last_metrics)
                    if stop:
                        break
            epoch_done = st.step_in_epoch >= self.plan.steps_per_epoch
            if epoch_done:
                st.epoch += 1
                st.step_in_epoch = 0
                st.samples_seen = 0
            val = {}
            if (
                epoch_done
                and cfg.data.val
                and st.epoch % max(1, cfg.train.val_every_epochs) == 0
                or (stop and cfg.data.val)
            ) and not self.signals.received:  # a preempted run saves at once
                val = self.validate()
                if val:
                    self._log_line({"step": st.global_step, "epoch": st.epoch, **val})
            metrics = {**last_metrics, **val}
            st.history.append(
                {"epoch": st.epoch, "step": st.global_step, **val, "loss": last_metrics.get("loss_total")}
            )
            best = bool(val) and cfg.train.keep == "best" and val["val_accuracy"] > st.best_metric
            if best:
                st.best_metric = val["val_accuracy"]  # before the save, so a resume knows it
            self.save("last.ckpt", metrics)
            # the copies appear whole or not at all, like last.ckpt itself
            if self.rank == 0 and epoch_done and cfg.train.keep == "all":
                atomic_copy(self.out / "last.ckpt", self.out / f"epoch{st.epoch}.ckpt")
            if self.rank == 0 and best:
                atomic_copy(self.out / "last.ckpt", self.out / "best.ckpt")
        bar.close()
        if self.signals.received:
            self._log_line({"event": "stopped", "signal": self.signals.name, "step": st.global_step})
        if st.global_step == 0 and st.skipped_images:  # nothing learnt is not a result
            raise UserError(f"train: no step ran: all {st.skipped_images} images read from {cfg.data.train} "
                            "were skipped as corrupt or damaged (see 'faceforge data stats --verify')")
        result = {
            "output": str(self.out),
            "stopped_by": self.signals.name,
            "steps": st.global_step,
            "epochs": st.epoch,
            "seconds": time.time() - t_start,
            "last": last_metrics,
            "history": st.history,
        }
        return result

    def close(self) -> None:
        """Release what owns background threads whatever ended the run: the TensorBoard writer, and
        the DDP wrapper (its reducer holds the process group, which must die before the group is
        destroyed — see :func:`faceforge.distributed.shutdown`)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        self.model = self.backbone


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def train(cfg: ExperimentConfig, resume: str | None = None, quiet: bool = False) -> dict:
    """Train as configured; returns a summary (steps, seconds, last metrics, per-epoch history).

    Under torchrun the process group lives exactly as long as this call (see
    :func:`faceforge.distributed.process_group`); ``result["rank"]`` says which rank ran it.
    """
    with D.process_group(cfg.device):
        trainer = Trainer(cfg, resume=resume, quiet=quiet)
        try:
            result = trainer.fit()
        finally:
            trainer.close()
        result["checkpoint"] = str(Path(cfg.output) / "last.ckpt")
        result["rank"], result["world_size"] = trainer.rank, trainer.world
    return result


def repeat(cfg: ExperimentConfig, n: int, quiet: bool = False) -> dict:
    """Run ``n`` seeds (seed, seed+1, ...) into ``output/seed<k>`` and report mean ± std per metric."""
    with D.process_group(cfg.device):
        return _repeat(cfg, n, quiet)


def _repeat(cfg: ExperimentConfig, n: int, quiet: bool) -> dict:
    import copy

    runs = []
    for k in range(n):
        c = copy.deepcopy(cfg)
        c.seed = cfg.seed + k
        c.output = os.path.join(cfg.output, f"seed{c.seed}")
        runs.append(train(c, quiet=quiet))
        if runs[-1]["stopped_by"]:  # SIGTERM/SIGINT: the later seeds are not started
            break
    keys = sorted(
        {
            k
            for r in runs
            for k, v in (r["last"] | (r["history"][-1] if r["history"] else {})).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    summary = {}
    for key in keys:
        vals = [(r["history"][-1] if r["history"] else {}).get(key, r["last"].get(key)) for r in runs]
        vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        if vals:
            summary[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    if D.rank() == 0:
        atomic_write_text(Path(cfg.output) / "repeat_summary.json", json.dumps(summary, indent=2))
    return {"runs": runs, "summary": summary, "rank": D.rank()}
