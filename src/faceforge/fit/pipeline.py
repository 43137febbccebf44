"""Run the stages of ``faceforge fit`` resumably, print the plan, and end with the commands.

Resuming: ``OUT/fit/plan.json`` records the options' fingerprint at the first run (a second run
with other options into the same OUT is refused rather than mixed). Each stage, when it finishes,
writes its marker ``OUT/fit/<stage>.json`` (summary + seconds) atomically as its last act; a stage
with a marker is skipped. A stage killed before its marker is redone: it empties its own output
folder first, except ``align`` (finished crops are kept) and ``train`` (resumes from
``last.ckpt``, exactly: the checkpoint holds the sampler position and every RNG state, and the CPU
kernels are deterministic), so a run killed with ``kill -9`` at any moment and started again ends
with the same model, threshold and numbers as one that never stopped.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from faceforge.atomic import atomic_write_text
from faceforge.errors import UserError
from faceforge.fit import stages
from faceforge.fit.plan import FitOptions, choose_recipe, look_at_photos

OUTPUTS = {  # what each stage leaves in OUT, for the plan
    "align": "aligned/ (5-point ArcFace crops, align_report.csv)",
    "clean": "clean/ (decode-checked RGB JPEGs, duplicates dropped)",
    "split": "split/{train,val,test}/ (identity-disjoint links)",
    "sets": "sets/ (val and test pairs, open-set gallery/probe of the test identities)",
    "pack": "data/train.ffpk",
    "budget": "fit/budget.json (training steps)",
    "train": "train/ (last.ckpt, best.ckpt, metrics.jsonl), model.ckpt",
    "calibrate": "model.ckpt's threshold at --far, on the val pairs",
    "eval": "eval/ (verification.json, roc.png, identification.json) on the test identities",
    "export": "model.onnx + model.yaml (card: threshold, preprocessing)",
    "report": "report.md + report/*.png",
}


class Run:
    """One ``fit`` run: options, OUT, the markers, and the recipe once the split is known."""

    def __init__(self, opts: FitOptions, say=print, quiet: bool = False):
        opts.check()
        self.opts, self.out, self.say, self.quiet = opts, Path(opts.out), say, quiet
        self.photos_info = look_at_photos(opts.photos)
        self.marks = self.out / "fit"
        self._recipe: dict | None = None

    def marker(self, stage: str) -> Path:
        return self.marks / f"{stage}.json"

    def done(self, stage: str) -> bool:
        return self.marker(stage).is_file()

    def summary(self, stage: str) -> dict[str, Any]:
        if not self.done(stage):
            raise UserError(f"fit: stage '{stage}' has not finished (no {self.marker(stage)})")
        return json.loads(self.marker(stage).read_text())["summary"]

    def seconds(self, stage: str) -> float | None:
        return json.loads(self.marker(stage).read_text()).get("seconds") if self.done(stage) else None

    def train_sizes(self) -> dict[str, Any]:
        """Identities, images and median images per identity of the training split (the split
        stage's, or an estimate from the photos before it ran)."""
        import numpy as np

        from faceforge.io.folders import list_identity_folder

        if self.done("split"):
            root = self.out / "split" / "train"
        else:
            from faceforge.data.tools.split import split_identities

            names = split_identities(self.opts.photos, self.opts.val, self.opts.test, self.opts.seed,
                                     self.opts.min_images)["train"]
            counts = [sum(1 for _ in (Path(self.opts.photos) / n).iterdir()) for n in names]
            return {"identities": len(names), "images": int(sum(counts)), "median": float(np.median(counts)),
                    "estimate": True}
        _, labels, names = list_identity_folder(root, "fit")
        per = np.bincount(labels, minlength=len(names))
        return {"identities": len(names), "images": int(per.sum()), "median": float(np.median(per))}

    @property
    def recipe(self) -> dict:
        """The recipe: an estimate from the photos until the split is done; then chosen from the
        training split once and saved (``fit/recipe.json``), so a resumed run trains the same way."""
        if self._recipe is not None:
            return self._recipe
        path = self.marks / "recipe.json"
        if path.is_file():
            self._recipe = json.loads(path.read_text())
            return self._recipe
        recipe = choose_recipe(self.opts, self.train_sizes(), self.out, self.init_checkpoint())
        if self.done("split"):
            atomic_write_text(path, json.dumps(recipe, indent=2) + "\n")
            self._recipe = recipe
        return recipe

    def init_checkpoint(self) -> str | None:
        """``--init`` as a faceforge checkpoint (a peer's weights imported into OUT/fit once)."""
        if not self.opts.init_from:
            return self.opts.init
        target = self.marks / "init.ckpt"
        if not target.is_file():
            from faceforge.models.convert import import_checkpoint

            import_checkpoint(self.opts.init, self.opts.init_from, self.opts.backbone, target)
        return str(target)

    def steps_per_epoch(self) -> int:
        from faceforge.data.batches import make_plan
        from faceforge.data.tools import open_any

        kind, k = ("pairs", 2) if self.recipe["config"]["train"]["mode"] == "semi_siamese" else ("samples", 2)
        data = open_any(self.recipe["config"]["data"]["train"])
        return make_plan(kind, data, self.opts.batch_size, self.opts.seed, 0, 1, k=k).steps_per_epoch


def _check_same_run(run: Run) -> None:
    plan = run.marks / "plan.json"
    record = {"fingerprint": run.opts.fingerprint(), "options": vars(run.opts)}
    if plan.is_file():
        old = json.loads(plan.read_text())
        if old.get("fingerprint") != record["fingerprint"]:
            before = old.get("options", {})
            diff = [k for k, v in record["options"].items() if before.get(k) != v and k != "out"]
            raise UserError(f"{run.out}: holds a fit run with other options ({', '.join(diff) or 'photos'}); "
                            "give the same options to continue it, or another OUT")
    else:
        atomic_write_text(plan, json.dumps(record, indent=2) + "\n")


def plan_text(run: Run) -> str:
    """The ``--dry-run`` text: data, stages (done or to do, and their outputs), recipe and why."""
    info, train = run.photos_info, run.train_sizes()
    p = info["per_identity"]
    estimate = " (estimated before alignment)" if train.get("estimate") else ""
    lines = [f"fit {run.opts.photos} -> {run.out}",
             f"photos: {info['images']} images of {info['identities']} identities "
             f"({p['min']}-{p['max']} per identity, median {p['median']:g})",
             f"split (seed {run.opts.seed}, identities with >= {run.opts.min_images} images): val "
             f"{run.opts.val:g}, test {run.opts.test:g} of the identities; training: {train['identities']} "
             f"identities / {train['images']} images{estimate}",
             "stages:"]
    for name, _ in stages.STAGES:
        state = "done" if run.done(name) else "to do"
        if name == "align" and run.opts.aligned:
            state = "skipped (--aligned)"
        lines.append(f"  {name:<9} {state:<6} -> {OUTPUTS[name]}")
    lines.append("recipe:")
    lines += [f"  - {why}" for why in run.recipe["why"]]
    lines.append(f"threshold: calibrated at FAR {run.opts.far:g} on the val pairs, checked on the test pairs "
                 "(raised to the smallest FAR the val pairs measure, 10 / impostor pairs, if they cannot "
                 "measure it: said in the report)")
    return "\n".join(lines)


def _stage(run: Run, name: str, fn) -> None:
    if run.done(name):
        run.say(f"[{name}] done already ({run.marker(name)}), skipped")
        return
    run.say(f"[{name}] {OUTPUTS[name]}")
    if run.done("split"):  # the recipe's thread count: results depend on it, resumed or not
        import torch

        torch.set_num_threads(run.recipe["threads"])
    t0 = time.perf_counter()
    summary = fn(run)
    seconds = round(time.perf_counter() - t0, 2)
    # the marker is the stage's last act: a stage without one is redone
    atomic_write_text(run.marker(name), json.dumps({"stage": name, "seconds": seconds, "summary": summary},
                                                   indent=2, default=float) + "\n")
    run.say(f"[{name}] {seconds:.1f} s")


def next_commands(run: Run) -> list[str]:
    """Commands that use the new model on real files of this run (the fit's last lines)."""
    out, photos = run.out, Path(run.opts.photos)
    model = shlex.quote(str(out / "model.onnx"))
    gallery = shlex.quote(str(out / "gallery"))
    enrol = shlex.quote(str(out / "sets" / "gallery_probe" / "gallery"))
    test = sorted((out / "split" / "test").iterdir())
    aligned = " --aligned" if run.opts.aligned else ""
    name = next((t.name for t in test if (photos / t.name).is_dir()
                 and len([p for p in (photos / t.name).iterdir() if p.is_file()]) >= 3), test[0].name)
    files = sorted(p for p in (photos / name).iterdir() if p.is_file())
    a, b, c = (shlex.quote(str(f)) for f in (files * 2)[:3])  # an identity of 2 photos: c is a
    return [
        f"faceforge verify {a} {b} --model {model}{aligned}",
        f"faceforge gallery create {gallery} --model {model}",
        f"faceforge gallery enroll {gallery} --model {model} --aligned {enrol}",
        f"faceforge identify {c} --gallery {gallery} --model {model}{aligned}",
        "export FACEFORGE_API_KEY=$(openssl rand -hex 16) && "
        f"faceforge serve --gallery {gallery} --model {model}",
    ]


def fit(opts: FitOptions, dry_run: bool = False, say=print, quiet: bool = False,
        stop_after: str | None = None) -> dict[str, Any]:
    """Run (or with ``dry_run`` only describe) the fit; returns the summaries of every stage.
    ``stop_after``: end after that stage (tests and benchmarks run part of the pipeline)."""
    run = Run(opts, say, quiet)
    if dry_run:
        say(plan_text(run))
        return {"dry_run": True}
    run.out.mkdir(parents=True, exist_ok=True)
    _check_same_run(run)
    say(plan_text(run))
    for name, fn in stages.STAGES:
        _stage(run, name, fn)
        if name == stop_after:
            return {n: run.summary(n) for n, _ in stages.STAGES if run.done(n)}
    result = {n: run.summary(n) for n, _ in stages.STAGES}
    ev = result["eval"]
    say(f"test identities: accuracy {ev['accuracy']:.4f} ± {ev['accuracy_std']:.4f} ({ev['folds']}-fold), "
        f"TAR@FAR=1e-3 {_tar(ev['tar_at_far'].get('0.001'))}, rank-1 {100 * ev['rank1']:.1f}%; "
        f"threshold {ev['at_threshold']['threshold']:.4f} (FAR {result['calibrate']['far']:g} on val) "
        "gives FAR "
        f"{ev['at_threshold']['far']:.4f} / TAR {ev['at_threshold']['tar']:.4f} on test")
    say(f"report: {result['report']['report']}")
    say("use the model:")
    for line in next_commands(run):
        say(f"  {line}")
    return result


def _tar(value) -> str:
    """A TAR, or n/m where the test pairs cannot measure the FAR (faceforge.eval.thresholds)."""
    return "n/m" if value is None else f"{value:.4f}"
