"""``faceforge eval suite``: several benchmarks for several models, one table and one report.

A suite file (strict YAML: an unknown key is an error naming the closest valid one)::

    flip: card                # card (default: each model's card, else sum) | none | sum | concat
    protocol: insightface     # or facex
    batch_size: 64
    workers: 0
    verification:             # name: pair source (see faceforge.eval.pairs) or an IJB tree
      lfw: pairs:lfw/pairs.txt,root=lfw
      cfp_fp: bin:cfp_fp.bin
      ijbc: ijbc:IJB/IJBC     # IJB-B/C 1:1 (faceforge.eval.ijb): TAR@FAR columns
    identification:           # name: gallery and probe identity folders
      orl: {gallery: orl/gallery, probe: orl/probe}
    megaface:                 # name: probe identity folder, distractors (folder or random:N), sizes
      mf: {probe: facescrub, distractors: "random:1000000", sizes: [10, 1000, 1000000]}
    masked:                   # name: gallery, probe, optional pre-masked probe folder
      mfr: {gallery: g, probe: p, masked_probe: p_masked}

Relative paths are relative to the suite file. Each model is a row of the table (``a+b`` names a
concatenation of two checkpoints); each benchmark a column. Embeddings are cached per (model
file, dataset, flip) under ``OUT/cache``, so a re-run only reads them. With ``flip: card`` each model
is scored as its card says (flip and mean subtraction), like ``eval verify`` without ``--flip``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from faceforge.config import COUNT, Bound, from_dict, load_yaml
from faceforge.embed.base import FLIPS, Embedder
from faceforge.embed.loading import load_embedders
from faceforge.errors import UserError
from faceforge.eval import report
from faceforge.eval.thresholds import tar_cell
from faceforge.eval.verification import PROTOCOLS


@dataclass
class IdentificationSpec:
    gallery: str
    probe: str


@dataclass
class MegafaceSpec:
    probe: str
    distractors: str
    sizes: list[int] = field(default_factory=lambda: [10, 100, 1000, 10000, 100000, 1000000])

    RANGES: ClassVar[dict[str, Bound]] = {"sizes": COUNT}


@dataclass
class MaskedSpec:
    gallery: str
    probe: str
    masked_probe: str | None = None
    seed: int = 0


@dataclass
class SuiteConfig:
    flip: str = "card"
    protocol: str = "insightface"
    batch_size: int = 64
    workers: int = 0
    verification: dict[str, Any] = field(default_factory=dict)
    identification: dict[str, Any] = field(default_factory=dict)
    megaface: dict[str, Any] = field(default_factory=dict)
    masked: dict[str, Any] = field(default_factory=dict)


def _abs(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


def _resolve_source(spec: str, base: Path) -> str:
    """Make the file path and ``root=`` of a pair source absolute against ``base``."""
    prefix, sep, rest = spec.partition(":")
    if not sep:
        return _abs(spec, base)
    path, *opts = rest.split(",")
    opts = [f"root={_abs(o[5:], base)}" if o.startswith("root=") else o for o in opts]
    return ",".join([f"{prefix}:{_abs(path, base)}", *opts])


def load_suite(path: str | Path) -> SuiteConfig:
    """Parse and check a suite file; paths come back absolute."""
    path = Path(path)
    data = load_yaml(path)
    try:
        cfg = from_dict(SuiteConfig, data)
        if cfg.flip not in (*FLIPS, "card"):
            raise UserError(f"flip: '{cfg.flip}' is not one of card, {', '.join(FLIPS)}")
        if cfg.protocol not in PROTOCOLS:
            raise UserError(f"protocol: '{cfg.protocol}' is not one of {', '.join(PROTOCOLS)}")
        base = path.parent
        for name, spec in cfg.verification.items():
            if not isinstance(spec, str):
                raise UserError(f"verification.{name}: expected a pair source string, got {spec!r}")
            cfg.verification[name] = _resolve_source(spec, base)
        for section, cls, keys in (
            ("identification", IdentificationSpec, ("gallery", "probe")),
            ("megaface", MegafaceSpec, ("probe",)),
            ("masked", MaskedSpec, ("gallery", "probe", "masked_probe")),
        ):
            entries = getattr(cfg, section)
            for name, spec in entries.items():
                if not isinstance(spec, dict):
                    raise UserError(f"{section}.{name}: expected a mapping, got {spec!r}")
                try:
                    missing = [f for f in keys[:2] if f not in spec and f != "masked_probe"]
                    if missing:
                        raise UserError(f"missing key '{missing[0]}'")
                    entry = from_dict(cls, spec)
                except UserError as e:
                    raise UserError(f"{section}.{name}: {e}") from None
                for key in keys:
                    if getattr(entry, key, None):
                        setattr(entry, key, _abs(getattr(entry, key), base))
                if section == "megaface" and not entry.distractors.startswith("random:"):
                    entry.distractors = _abs(entry.distractors.removeprefix("folder:"), base)
                entries[name] = entry
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if not any((cfg.verification, cfg.identification, cfg.megaface, cfg.masked)):
        raise UserError(f"{path}: no benchmark listed (verification, identification, megaface, masked)")
    return cfg


def _unique(base: str, taken) -> str:
    name, k = base, 2
    while name in taken:
        name, k = f"{base}#{k}", k + 1
    return name


def run_suite(
    suite: str | Path | SuiteConfig,
    models: list,
    out: str | Path,
    device: str = "cpu",
    log=print,
) -> dict[str, Any]:
    """Run every benchmark of ``suite`` for every model; write ``report.md``, plots and JSON."""
    from faceforge.eval.identification import identify_folders, megaface_folders
    from faceforge.eval.ijb import evaluate_ijb, is_ijb_source
    from faceforge.eval.masked import masked_identification
    from faceforge.eval.verification import evaluate_pairs, pipeline_choices

    cfg = suite if isinstance(suite, SuiteConfig) else load_suite(suite)
    if not models:
        raise UserError("--model: at least one model is needed")
    out = Path(out)
    cache = out / "cache"
    results: dict[str, dict[str, Any]] = {}
    for model in models:
        if isinstance(model, Embedder):
            embedder = model
        else:
            embedder = load_embedders(str(model).split("+"), device)
        name = _unique(report.model_label(embedder), results)  # table rows and legends
        choices = pipeline_choices(embedder, None if cfg.flip == "card" else cfg.flip)
        kw = dict(flip=choices["flip"], batch_size=cfg.batch_size, workers=cfg.workers, cache_dir=cache)
        res: dict[str, Any] = {}
        for bench, source in cfg.verification.items():
            log(f"[{name}] verification {bench}")
            if is_ijb_source(source):
                res[bench] = evaluate_ijb(embedder, source, **kw)
            else:
                res[bench] = evaluate_pairs(embedder, source, protocol=cfg.protocol,
                                            mean_subtract=choices["mean_subtract"], **kw)
        for bench, spec in cfg.identification.items():
            log(f"[{name}] identification {bench}")
            res[bench] = identify_folders(embedder, spec.gallery, spec.probe, **kw)
        for bench, spec in cfg.megaface.items():
            log(f"[{name}] megaface {bench}")
            res[bench] = megaface_folders(embedder, spec.probe, spec.distractors, spec.sizes, **kw)
        for bench, spec in cfg.masked.items():
            log(f"[{name}] masked {bench}")
            res[bench] = masked_identification(
                embedder, spec.gallery, spec.probe, spec.masked_probe, seed=spec.seed, **kw
            )
        results[name] = res
    table = write_report(cfg, results, out)
    log(table)
    return {"results": results, "table": table, "report": str(out / "report.md")}


def _cells(cfg: SuiteConfig, res: dict[str, Any]) -> dict[str, str]:
    cells = {}
    for bench in cfg.verification:
        r = res[bench]
        if "benchmark" in r:  # an IJB row: TAR at the FAR the field quotes first
            cells[f"{bench} TAR@1e-4"] = tar_cell(r["tar_at_far"]["0.0001"], percent=True)
        else:
            cells[bench] = f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}"
    for bench in cfg.identification:
        cells[bench] = f"{100 * res[bench]['rank1']:.2f}"
    for bench in cfg.megaface:
        r = res[bench]
        cells[f"{bench}@{r['sizes'][-1]:g}"] = f"{100 * r['rank1'][-1]:.2f}"
    for bench in cfg.masked:
        cells[f"{bench} (masked)"] = f"{100 * res[bench]['masked']['rank1']:.2f}"
    return cells


def write_report(cfg: SuiteConfig, results: dict[str, dict[str, Any]], out: Path) -> str:
    """Write report.md, results.json and the plots; return the terminal table."""
    from faceforge.eval.ijb import is_ijb_source, report_section
    from faceforge.eval.verification import to_jsonable

    rows = {name: _cells(cfg, res) for name, res in results.items()}
    columns = list(next(iter(rows.values())).keys()) if rows else []
    sections = [
        (
            "Summary",
            "Verification: accuracy % ± spread (std for insightface, standard error for facex), "
            f"protocol {cfg.protocol}, "
            + ("flip as each model's card says (else sum)" if cfg.flip == "card" else f"flip {cfg.flip}")
            + ". IJB rows: TAR % at FAR=1e-4. Identification, MegaFace and masked: rank-1 %.\n\n"
            + report.markdown_table(rows, columns),
        )
    ]
    for bench, source in cfg.verification.items():
        if is_ijb_source(source):
            sections.append(report_section(results, bench, out))
            continue
        curves = {m: (r[bench]["roc_fpr"], r[bench]["roc_tpr"]) for m, r in results.items()}
        report.plot_roc(curves, out / f"roc_{bench}.png", title=f"ROC {bench}")
        detail = {
            m: {
                "accuracy": f"{100 * r[bench]['accuracy']:.2f}",
                "threshold": f"{r[bench]['threshold']:.4f}",
                **{f"TAR@FAR={k}": tar_cell(v, percent=True) for k, v in r[bench]["tar_at_far"].items()},
                "EER": f"{100 * r[bench]['eer']:.2f}",
                "dropped pairs": str(r[bench]["dropped_pairs"]),
            }
            for m, r in results.items()
        }
        cols = list(next(iter(detail.values())).keys())
        sections.append(
            (f"Verification: {bench}", report.markdown_table(detail, cols) + f"\n\n![ROC](roc_{bench}.png)")
        )
    for bench in cfg.identification:
        report.plot_cmc({m: r[bench]["cmc"] for m, r in results.items()}, out / f"cmc_{bench}.png", bench)
        detail = {
            m: {f"rank-{k}": f"{100 * r[bench][f'rank{k}']:.2f}" for k in (1, 3, 5, 10)}
            for m, r in results.items()
        }
        sections.append(
            (
                f"Identification: {bench}",
                report.markdown_table(detail, ["rank-1", "rank-3", "rank-5", "rank-10"])
                + f"\n\n![CMC](cmc_{bench}.png)",
            )
        )
    for bench in cfg.megaface:
        curves = {m: (r[bench]["sizes"], r[bench]["rank1"]) for m, r in results.items()}
        report.plot_distractors(curves, out / f"megaface_{bench}.png", title=f"MegaFace-style {bench}")
        sizes = next(iter(results.values()))[bench]["sizes"]
        detail = {m: {f"{s:g}": f"{100 * v:.2f}" for s, v in zip(*c, strict=True)} for m, c in curves.items()}
        sections.append(
            (
                f"MegaFace-style: {bench} (rank-1 % vs distractors)",
                report.markdown_table(detail, [f"{s:g}" for s in sizes])
                + f"\n\n![rank-1](megaface_{bench}.png)",
            )
        )
    for bench in cfg.masked:
        from faceforge.eval.masked import rank_table

        body = "\n\n".join(
            f"**{m}** ({r[bench]['masking']})\n\n{rank_table(r[bench])}" for m, r in results.items()
        )
        sections.append((f"Masked: {bench}", body))
    report.write_markdown(out / "report.md", "faceforge evaluation report", sections)
    from faceforge.atomic import atomic_write_text

    atomic_write_text(
        out / "results.json",
        json.dumps({m: to_jsonable(r) for m, r in results.items()}, indent=2, default=_json_default) + "\n",
    )
    return report.text_table(rows, columns)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
