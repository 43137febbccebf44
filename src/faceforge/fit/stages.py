"""The stages of ``faceforge fit``, each a function of the run that returns its summary (a dict the
pipeline stores in the stage's marker). A stage writes only under ``OUT`` and calls the stage's
public function (align_folder, clean, split, write_pairs, gallery_probe, pack, train, calibrate,
evaluate_pairs, identify_folders, export_onnx)."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.atomic import atomic_write_text
from faceforge.errors import UserError

TIMING_STEPS = 20  # steps timed to turn --minutes into a step count
VAL_FOLDS, TEST_FOLDS = 10, 10


def fresh(folder: Path) -> Path:
    """An empty ``folder`` (what a killed stage left there is removed: it is redone whole)."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    return folder


def align(run) -> dict[str, Any]:
    """PHOTOS -> OUT/aligned (5-point ArcFace crops); resumable by itself (finished crops are kept)."""
    from faceforge.align.folder import align_folder

    if run.opts.aligned:
        return {"skipped": "--aligned: the photos are face crops already", "faces": run.photos_info["images"]}
    counts = align_folder(run.opts.photos, run.out / "aligned", detector=run.opts.detector,
                          workers=run.opts.workers, progress=not run.quiet)
    faces = sum(1 for p in (run.out / "aligned").rglob("*") if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
    return {"faces": faces, "no_face": counts["no_face"], "several_faces": counts["several_faces"],
            "corrupt": counts["corrupt"], "seconds_this_run": counts["seconds"]}


def clean(run) -> dict[str, Any]:
    """OUT/aligned -> OUT/clean: decode-checked RGB JPEGs, plain names, duplicates dropped."""
    from faceforge.data.tools.clean import clean as clean_folder

    src = run.opts.photos if run.opts.aligned else run.out / "aligned"
    r = clean_folder(src, fresh(run.out / "clean"))
    return {"kept": r["counts"]["images_out"], "identities": r["counts"]["identities_out"],
            "corrupt": r["counts"]["corrupt"], "duplicates": r["counts"]["duplicates"]}


def split(run) -> dict[str, Any]:
    """OUT/clean -> OUT/split/{train,val,test}: identity-disjoint links."""
    from faceforge.data.tools.split import split as split_folder

    r = split_folder(run.out / "clean", fresh(run.out / "split"), val=run.opts.val, test=run.opts.test,
                     seed=run.opts.seed, min_images=run.opts.min_images)
    for part in ("train", "val", "test"):
        if r["counts"][part]["identities"] < (1 if part == "train" else 4):
            raise UserError(f"fit: the {part} split has {r['counts'][part]['identities']} identities; "
                            f"{run.opts.photos} needs more identities with >= {run.opts.min_images} faces "
                            "(or change --val/--test)")
    return {"counts": r["counts"], "too_few": len(r["too_few"])}


def _folds(identities: int, wanted: int) -> int:
    return max(2, min(wanted, identities // 2))


def sets(run) -> dict[str, Any]:
    """Verification pairs of the val and test identities, gallery/probe sets of the test identities."""
    from faceforge.data.tools.pairs import write_pairs
    from faceforge.data.tools.split import gallery_probe

    out = fresh(run.out / "sets")
    counts = run.summary("split")["counts"]
    res = {}
    for part, wanted in (("val", VAL_FOLDS), ("test", TEST_FOLDS)):
        r = write_pairs(run.out / "split" / part, out / f"{part}_pairs.txt",
                        n_folds=_folds(counts[part]["identities"], wanted), seed=run.opts.seed)
        res[part] = {k: r[k] for k in ("spec", "folds", "per_fold", "same", "different")}
    gp = gallery_probe(run.out / "split" / "test", out / "gallery_probe", unknown=run.opts.unknown,
                       seed=run.opts.seed)
    res["gallery_probe"] = gp["counts"]
    return res


def pack(run) -> dict[str, Any]:
    """OUT/split/train -> OUT/data/train.ffpk (raw pixels: no decoding while training)."""
    from faceforge.data.tools.pack import pack as pack_source

    out = fresh(run.out / "data") / "train.ffpk"
    r = pack_source(f"folder:{run.out / 'split' / 'train'}", out, workers=1, progress=not run.quiet)
    return {"images": r["images"], "classes": r["classes"], "bytes": r["bytes"]}


def _config(run, steps: int | None = None, output: Path | None = None):
    from faceforge.config import ExperimentConfig, from_dict

    data = json.loads(json.dumps(run.recipe["config"]))
    if steps is not None:
        spe = max(1, run.steps_per_epoch())
        data["train"]["max_steps"] = steps
        data["train"]["epochs"] = max(1, math.ceil(steps / spe))
        # a checkpoint at least twice an epoch: a killed run loses little
        data["train"]["save_every_steps"] = max(1, min(data["train"]["save_every_steps"], spe // 2))
    if output is not None:
        data["output"] = str(output)
    return from_dict(ExperimentConfig, data)


def budget(run) -> dict[str, Any]:
    """The step count of the training budget: ``--epochs`` as they are, ``--minutes`` by timing
    ``TIMING_STEPS`` steps (in a scratch folder) and scaling to the minutes."""
    from faceforge.train.engine import train

    spe = run.steps_per_epoch()
    if "epochs" in run.opts.budget():
        return {"steps": spe * run.opts.budget()["epochs"], "steps_per_epoch": spe}
    scratch = fresh(run.out / "fit" / "timing")
    cfg = _config(run, TIMING_STEPS, scratch)
    cfg.data.val = None
    cfg.train.save_every_steps = 0
    r = train(cfg, quiet=True)
    shutil.rmtree(scratch, ignore_errors=True)
    per_step = r["seconds"] / max(1, r["steps"])
    minutes = run.opts.budget()["minutes"]
    # validation (one pass over the val pairs per epoch) comes out of the same minutes
    steps = max(spe, int(minutes * 60 / per_step * 0.9))
    return {"steps": steps, "steps_per_epoch": spe, "seconds_per_step": round(per_step, 4),
            "minutes": minutes, "epochs": math.ceil(steps / spe)}


def _finished_state(folder: Path, steps: int) -> dict | None:
    """The training state of ``last.ckpt`` when it already holds all ``steps`` (a run killed after
    training, before its marker): resuming it would train one step too many. The best-model copy that
    follows the final save is redone when the kill fell between the two."""
    from faceforge.atomic import atomic_copy
    from faceforge.models.checkpoint import read_checkpoint

    last, best = folder / "last.ckpt", folder / "best.ckpt"
    if not last.is_file():
        return None
    state = read_checkpoint(last)["train"]["state"]
    if state["global_step"] < steps:
        return None
    firsts = [h["step"] for h in state["history"] if h.get("val_accuracy") == state["best_metric"]]
    best_step = read_checkpoint(best)["train"]["state"]["global_step"] if best.is_file() else None
    if firsts and firsts[0] == state["global_step"] and best_step != firsts[0]:
        atomic_copy(last, best)
    return state


def train(run) -> dict[str, Any]:
    """Train into OUT/train, resuming from ``last.ckpt`` when a killed run left one; the model kept
    is ``best.ckpt`` (keep-best on the validation pairs), copied to OUT/model.ckpt."""
    from faceforge.atomic import atomic_copy
    from faceforge.train.engine import train as train_model

    folder = run.out / "train"
    steps = run.summary("budget")["steps"]
    state = _finished_state(folder, steps)
    if state is not None:
        run.say("  training had finished before the interruption; its checkpoints are kept")
        r = {"steps": state["global_step"], "epochs": state["epoch"], "history": state["history"]}
    else:
        last = folder / "last.ckpt"
        resume = str(last) if last.is_file() else None
        if resume:
            run.say(f"  resuming from {last}")
        r = train_model(_config(run, steps), resume=resume, quiet=run.quiet)
    best, last = folder / "best.ckpt", folder / "last.ckpt"
    atomic_copy(best if best.is_file() else last, run.out / "model.ckpt")
    hist = [h for h in r["history"] if "val_accuracy" in h]
    chosen = max(hist, key=lambda h: h["val_accuracy"]) if hist else {}
    kept = "best.ckpt" if best.is_file() else "last.ckpt"
    return {"steps": r["steps"], "epochs": r["epochs"], "kept": kept,
            "best_epoch": chosen.get("epoch"), "val_accuracy": chosen.get("val_accuracy")}


def _embedder(run):
    from faceforge.embed.torch_embedder import TorchEmbedder
    from faceforge.models.checkpoint import load_backbone

    return TorchEmbedder(load_backbone(run.out / "model.ckpt"))


def calibrate(run) -> dict[str, Any]:
    """The same-person threshold at ``--far`` on the validation pairs, stored in OUT/model.ckpt."""
    from faceforge.deploy.calibration import calibrate_checkpoint

    spec = run.summary("sets")["val"]["spec"]
    return calibrate_checkpoint(run.out / "model.ckpt", spec, far=run.opts.far)


def evaluate(run) -> dict[str, Any]:
    """On the test identities only: 10-fold verification, TAR at FARs, the calibrated threshold's
    measured FAR/TAR, and open-set identification (OUT/eval)."""
    from faceforge.eval.identification import identify_folders
    from faceforge.eval.pairs import open_pairs
    from faceforge.eval.verification import evaluate_pairs, to_jsonable, write_result

    out = fresh(run.out / "eval")
    embedder = _embedder(run)
    spec = run.summary("sets")["test"]["spec"]
    ver = evaluate_pairs(embedder, spec, flip="sum")
    write_result(ver, out)
    thr = run.summary("calibrate")["threshold"]
    pairs = open_pairs(spec)
    if not ver["complete"]:  # the pairs come from cleaned crops: every image decodes
        raise UserError(f"{spec}: {ver['dropped_pairs']} pairs lost an image since the sets stage; "
                        f"remove {run.out / 'fit'} and run again")
    scores, same = 1.0 - ver["dist"] / 2.0, pairs.issame  # squared L2 of unit rows = 2 - 2 cos
    at = {"threshold": thr, "far": float(np.mean(scores[~same] >= thr)),
          "tar": float(np.mean(scores[same] >= thr))}
    np.savez(out / "scores.npz", score=scores, issame=same)
    paths = [[str(pairs.images[a]), str(pairs.images[b])] for a, b in pairs.pairs]
    atomic_write_text(out / "pairs.json", json.dumps(paths) + "\n")
    gp = run.out / "sets" / "gallery_probe"
    ident = identify_folders(embedder, gp / "gallery", gp / "probe", threshold=thr)
    atomic_write_text(out / "identification.json", json.dumps(to_jsonable(ident), indent=2) + "\n")
    res = {"accuracy": ver["accuracy"], "accuracy_std": ver["accuracy_std"], "pairs": ver["pairs"],
           "folds": ver["folds"], "eer": ver["eer"],
           "tar_at_far": {k: v["tar"] for k, v in ver["tar_at_far"].items()}, "at_threshold": at,
           "rank1": ident["rank1"], "rank5": ident["rank5"], "probes": ident["probes"]}
    if "open_set" in ident:
        o = ident["open_set"]
        res["open_set"] = {"dir": {f"{k:g}": v for k, v in o["dir"].items()},
                           "resolved": {f"{k:g}": v for k, v in o["resolved"].items()},
                           "unknown_probes": o["unknown_probes"], **o.get("at_threshold", {})}
    return res


def export(run) -> dict[str, Any]:
    """OUT/model.onnx + its card (threshold, FAR, preprocessing) from OUT/model.ckpt."""
    from faceforge.deploy.export import export_onnx

    r = export_onnx(run.out / "model.ckpt", run.out / "model.onnx", log=lambda m: run.say(f"  {m}"))
    return {k: r[k] for k in ("onnx", "card", "size", "parity_min_cosine", "sha256")}


def report(run) -> dict[str, Any]:
    from faceforge.fit.report import write_report

    return {"report": str(write_report(run))}


STAGES = [("align", align), ("clean", clean), ("split", split), ("sets", sets), ("pack", pack),
          ("budget", budget), ("train", train), ("calibrate", calibrate), ("eval", evaluate),
          ("export", export), ("report", report)]


def seconds_since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)
