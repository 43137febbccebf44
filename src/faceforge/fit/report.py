"""``OUT/report.md`` and ``OUT/report/*.png``: the one page a person reads after ``faceforge fit``.

The data funnel (photos -> faces -> kept -> per split), the recipe and why, training curves, the
test ROC with the calibrated threshold marked, genuine/impostor score histograms, the worst false
accepts and false rejects as thumbnail pairs, the open-set identification CMC and rates, and the
time of each stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faceforge.eval.report import markdown_table, plot_cmc, pyplot, save_figure
from faceforge.eval.verification import roc_curve

WORST = 6  # thumbnail pairs per row (false accepts, false rejects)


def _funnel(run, path: Path) -> list[tuple[str, int]]:
    s = run.summary("split")["counts"]
    steps = [("photos", run.photos_info["images"]), ("faces", run.summary("align")["faces"]),
             ("kept (clean)", run.summary("clean")["kept"]), ("train", s["train"]["images"]),
             ("val", s["val"]["images"]), ("test", s["test"]["images"])]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    colors = ["#4c72b0"] * 3 + ["#55a868", "#c44e52", "#8172b2"]
    bars = ax.barh([n for n, _ in steps][::-1], [v for _, v in steps][::-1], color=colors[::-1])
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel("images")
    ax.set_title("data funnel")
    ax.set_xlim(0, steps[0][1] * 1.15)
    save_figure(fig, path)
    return steps


def _curves(run, path: Path) -> None:
    rows = [json.loads(line) for line in (run.out / "train" / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    train = [r for r in rows if "loss_total" in r]
    val = [r for r in rows if "val_accuracy" in r]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([r["step"] for r in train], [r["loss_total"] for r in train], color="#4c72b0",
            label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in val], [r["val_accuracy"] for r in val], "o-", color="#c44e52", ms=3,
             label="val pair accuracy")
    ax2.set_ylabel("val accuracy")
    if val:  # the kept checkpoint: the first best validation (as keep-best chose it)
        r = max(val, key=lambda r: r["val_accuracy"])
        ax2.plot([r["step"]], [r["val_accuracy"]], "*", color="black", ms=12, label="kept (best)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax.set_title("training")
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)


def _roc_and_scores(run, roc_path: Path, hist_path: Path) -> dict:
    z = np.load(run.out / "eval" / "scores.npz")
    score, same = z["score"], z["issame"].astype(bool)
    ev = run.summary("eval")
    thr, at = ev["at_threshold"]["threshold"], ev["at_threshold"]
    roc = roc_curve(score, same)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    keep = roc["fpr"] > 0
    ax.plot(roc["fpr"][keep], roc["tpr"][keep], label="test pairs")
    if at["far"] > 0:
        ax.plot([at["far"]], [at["tar"]], "o", color="#c44e52",
                label=f"threshold {thr:.3f}: FAR {at['far']:.4f}, TAR {at['tar']:.3f}")
    else:
        ax.axhline(at["tar"], color="#c44e52", ls=":",
                   label=f"threshold {thr:.3f}: FAR 0, TAR {at['tar']:.3f}")
    ax.axvline(run.opts.far, color="gray", ls="--", lw=0.8, label=f"target FAR {run.opts.far:g}")
    ax.set_xscale("log")
    ax.set_xlim(max(1e-5, min(run.opts.far / 2, 0.5 / max(1, (~same).sum()))), 1.0)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title("ROC, test identities")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    save_figure(fig, roc_path)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(min(score.min(), thr) - 0.02, max(score.max(), thr) + 0.02, 50)
    ax.hist(score[same], bins=bins, alpha=0.6, color="#55a868", label=f"genuine ({same.sum()})")
    ax.hist(score[~same], bins=bins, alpha=0.6, color="#c44e52", label=f"impostor ({(~same).sum()})")
    ax.axvline(thr, color="black", ls="--", label=f"threshold {thr:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("pairs")
    ax.set_title("test pair scores")
    ax.legend(fontsize=8)
    save_figure(fig, hist_path)
    return {"score": score, "same": same, "threshold": thr}


def _worst(run, scores: dict, path: Path) -> tuple[int, int]:
    """The highest-scoring impostor pairs and the lowest-scoring genuine pairs, as thumbnails."""
    from faceforge.io.images import CorruptImage, read_image

    pairs = json.loads((run.out / "eval" / "pairs.json").read_text())
    score, same, thr = scores["score"], scores["same"], scores["threshold"]
    fa = [i for i in np.argsort(-score) if not same[i]][:WORST]
    fr = [i for i in np.argsort(score) if same[i]][:WORST]
    plt = pyplot()
    fig, axes = plt.subplots(2, WORST, figsize=(2.1 * WORST, 3.0))
    for row, (idx, kind) in enumerate(((fa, "impostor"), (fr, "genuine"))):
        for col in range(WORST):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(idx):
                continue
            i = idx[col]
            try:
                a, b = (read_image(Path(p)) for p in pairs[i])
            except CorruptImage:
                continue
            h = min(a.shape[0], b.shape[0])
            ax.imshow(np.hstack([a[:h], b[:h]]))
            wrong = (score[i] >= thr) != same[i]
            ax.set_title(f"{kind} {score[i]:.3f}" + (" x" if wrong else ""), fontsize=8,
                         color="#c44e52" if wrong else "black")
    fig.suptitle("worst false accepts (top: highest impostor scores) and false rejects (bottom: lowest "
                 "genuine scores); x = wrong at the threshold", fontsize=8)
    save_figure(fig, path)
    return int(((score >= thr) & ~same).sum()), int(((score < thr) & same).sum())


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def write_report(run) -> Path:
    from faceforge.atomic import atomic_write_text

    folder = run.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    funnel = _funnel(run, folder / "funnel.png")
    _curves(run, folder / "training.png")
    scores = _roc_and_scores(run, folder / "roc.png", folder / "scores.png")
    n_fa, n_fr = _worst(run, scores, folder / "worst_pairs.png")
    ident = json.loads((run.out / "eval" / "identification.json").read_text())
    plot_cmc({"test identities (closed-set part)": ident["cmc"]}, folder / "cmc.png",
             title="identification CMC")
    ev, tr, cal = run.summary("eval"), run.summary("train"), run.summary("calibrate")
    sp = run.summary("split")["counts"]
    text = [f"# faceforge fit: `{run.opts.photos}`", "",
            f"Model: `{run.out / 'model.onnx'}` (card `{run.out / 'model.yaml'}`), checkpoint "
            f"`{run.out / 'model.ckpt'}`.", "",
            "## Data", "", "![funnel](report/funnel.png)", "",
            markdown_table({n: {"images": str(v)} for n, v in funnel}, ["images"], corner="stage"), "",
            markdown_table({p: {"identities": str(sp[p]["identities"]), "images": str(sp[p]["images"])}
                            for p in ("train", "val", "test")}, ["identities", "images"], corner="split"),
            "", "Splits are identity-disjoint: no test or val person is ever seen in training.", "",
            "## Recipe", "", *[f"- {w}" for w in run.recipe["why"]], "",
            "## Training", "", "![training](report/training.png)", "",
            f"{tr['steps']} steps, {tr['epochs']} epochs; kept {tr['kept']} (epoch {tr['best_epoch']}, "
            f"val pair accuracy {_fmt(tr['val_accuracy'])}).", "",
            "## Verification on the test identities", "",
            f"{ev['folds']}-fold accuracy **{ev['accuracy']:.4f} ± {ev['accuracy_std']:.4f}** on "
            f"{ev['pairs']} pairs ({ev['folds']} identity-disjoint folds), EER {ev['eer']:.4f}.", "",
            markdown_table({"TAR": {f"FAR={k}": _fmt(v) for k, v in ev["tar_at_far"].items()}},
                           [f"FAR={k}" for k in ev["tar_at_far"]], corner=""), "",
            f"Threshold **{cal['threshold']:.4f}** (cosine) calibrated at FAR {cal['far']:g} on the "
            f"{cal['pairs']} validation pairs (smallest FAR they measure: {cal['smallest_far']:.2g}"
            f"{'; ' + cal['far_note'] if cal.get('far_note') else ''}); on the "
            f"test pairs it gives FAR {ev['at_threshold']['far']:.4f} and TAR "
            f"{ev['at_threshold']['tar']:.4f} "
            f"({n_fa} false accepts, {n_fr} false rejects).", "",
            "![ROC](report/roc.png) ![scores](report/scores.png)", "",
            "![worst pairs](report/worst_pairs.png)", "",
            "## Identification (test identities)", "",
            f"Gallery: one image per enrolled identity; probes: the rest. Closed-set rank-1 "
            f"{_fmt(ev['rank1'], True)}, rank-5 {_fmt(ev['rank5'], True)} over {ev['probes']} probes.", ""]
    if "open_set" in ev:
        o = ev["open_set"]
        rates = ", ".join(f"DIR@FAR={k} {_fmt(v, True)}" + ("" if o["resolved"][k] else " (below resolution)")
                          for k, v in o["dir"].items())
        text += [f"Open set ({o['unknown_probes']} probes of people not in the gallery): {rates}. At the "
                 f"calibrated threshold {_fmt(o.get('unknown_rejected'), True)} of the unknown probes are "
                 f"rejected and {_fmt(o.get('known_identified'), True)} of the known ones identified.", ""]
    times = {n: run.seconds(n) for n in ("align", "clean", "split", "sets", "pack", "budget", "train",
                                         "calibrate", "eval", "export")}
    text += ["![CMC](report/cmc.png)", "", "## Time per stage", "",
             markdown_table({n: {"seconds": "-" if s is None else f"{s:.1f}"} for n, s in times.items()},
                            ["seconds"], corner="stage"),
             "", "(the seconds of the run that finished each stage; a resumed stage counts its last run)", ""]
    path = run.out / "report.md"
    atomic_write_text(path, "\n".join(text))
    return path
