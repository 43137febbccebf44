"""Own-data sets from an identity folder, without copying or moving a photo.

* :func:`split` (``faceforge data split``): identity-disjoint train/val/test splits, by fraction or
  count, seeded, with a minimum number of images per identity; written as folders of symbolic
  links (``DST/train/<identity>/<image>`` -> the source image) or as image lists.
* :func:`gallery_probe` (``faceforge data gallery-probe``): gallery and probe folders for 1:N
  identification, closed set (every probe identity is enrolled) or open set (a share of the
  identities appears only among the probes, as "unknown" people).

Both write ``split.json`` / ``gallery_probe.json`` last (atomically): a folder holding it is complete.
Verification pairs live in :mod:`faceforge.data.tools.pairs`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_text
from faceforge.data.readers.lists import write_facex_list
from faceforge.data.tools import check_new_output
from faceforge.errors import UserError
from faceforge.io.folders import list_identity_folder

SPLITS = ("train", "val", "test")
MODES = ("link", "list")


def share(value: float, total: int, what: str) -> int:
    """How many of ``total`` a ``--val``/``--test``-style value means: a fraction when ``0 <= value
    < 1`` (rounded), otherwise a count (a whole number)."""
    if value < 0 or not np.isfinite(value):
        raise UserError(f"{what}: expected a fraction in [0, 1) or a count, got {value}")
    if value < 1:
        return int(round(value * total))
    if float(value) != int(value):
        raise UserError(f"{what}: a count must be a whole number, got {value}")
    return int(value)


def _identities(src: Path, min_images: int, what: str) -> tuple[dict[str, list[Path]], list[str]]:
    """{name: files} of identities with at least ``min_images`` images, and the names left out."""
    files, labels, names = list_identity_folder(src, what)
    groups: dict[str, list[Path]] = {n: [] for n in names}
    for f, lab in zip(files, labels):
        groups[names[lab]].append(f)
    kept = {n: fs for n, fs in groups.items() if len(fs) >= min_images}
    return kept, sorted(set(groups) - set(kept))


def split_identities(src: str | Path, val: float = 0.1, test: float = 0.2, seed: int = 0,
                     min_images: int = 2) -> dict[str, list[str]]:
    """Identity names per split: ``{"train", "val", "test", "too_few"}`` (sorted lists).

    Identities with fewer than ``min_images`` images go to ``too_few``; the rest are shuffled with
    ``seed`` and cut into ``val`` and ``test`` (each a fraction ``< 1`` of the kept identities, or a
    count ``>= 1``), train gets what remains (at least one identity). The same arguments on the same
    folder give the same split."""
    if min_images < 1:
        raise UserError(f"--min-images: must be at least 1, got {min_images}")
    groups, too_few = _identities(Path(src), min_images, "split")
    names = sorted(groups)
    n_val, n_test = share(val, len(names), "--val"), share(test, len(names), "--test")
    if n_val + n_test >= len(names):
        raise UserError(f"split: {len(names)} identities with >= {min_images} images cannot give {n_val} "
                        f"val + {n_test} test identities and keep one for training; lower --val/--test "
                        "or --min-images")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    return {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
            "test": sorted(order[n_val:n_val + n_test]), "too_few": too_few}


def _link_tree(dst: Path, groups: dict[str, list[Path]]) -> int:
    """``dst/<identity>/<image>`` symbolic links to the (absolute) source images."""
    count = 0
    for name, files in groups.items():
        (dst / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            link = dst / name / f.name
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(f.resolve(), link)
            count += 1
    return count


def _write_set(dst: Path, part: str, groups: dict[str, list[Path]], labels: dict[str, int],
               mode: str) -> str:
    """One set as a link folder or a FaceX-Zoo list (absolute paths, the source's label numbers);
    returns its source string."""
    if mode == "link":
        _link_tree(dst / part, groups)
        return f"folder:{dst / part}"
    files = [str(f.resolve()) for name in groups for f in groups[name]]
    bad = next((f for f in files if any(c.isspace() for c in f)), None)
    if bad:
        raise UserError(f"{bad}: a path with white space cannot go into a list; use --mode link or "
                        "rename it (faceforge data clean)")
    write_facex_list(dst / f"{part}.txt", files,
                     [labels[name] for name in groups for _ in groups[name]])
    return f"list:{dst / f'{part}.txt'}"


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"--mode: expected one of {', '.join(MODES)}, got '{mode}'")


def split(src: str | Path, dst: str | Path, val: float = 0.1, test: float = 0.2, seed: int = 0,
          min_images: int = 2, mode: str = "link") -> dict:
    """Write the identity-disjoint split of :func:`split_identities` into ``dst``; returns the report.

    ``mode="link"``: ``dst/{train,val,test}/<identity>/<image>`` symbolic links to the source images
    (each a ``folder:`` source); ``mode="list"``: ``dst/{train,val,test}.txt`` FaceX-Zoo lists
    (``/abs/path label``, a ``list:`` source). The photos are never copied or moved. ``dst/split.json``
    (names per split, counts, arguments, source strings) is written last."""
    _check_mode(mode)
    src, dst = Path(src), Path(dst)
    check_new_output(src, dst)
    parts = split_identities(src, val, test, seed, min_images)
    groups, _ = _identities(src, min_images, "split")
    labels = {name: i for i, name in enumerate(sorted(groups))}
    dst.mkdir(parents=True, exist_ok=True)
    report: dict = {"source": str(src), "output": str(dst), "mode": mode, "seed": seed,
                    "arguments": {"val": val, "test": test}, "min_images": min_images,
                    "too_few": parts["too_few"],
                    "sources": {}, "counts": {}}
    for part in SPLITS:
        chosen = {name: groups[name] for name in parts[part]}
        report["counts"][part] = {"identities": len(chosen), "images": sum(len(f) for f in chosen.values())}
        if chosen:
            report["sources"][part] = _write_set(dst, part, chosen, labels, mode)
        report[part] = parts[part]
    atomic_write_text(dst / "split.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    report["report"] = str(dst / "split.json")
    return report


def split_summary(report: dict) -> str:
    c = report["counts"]
    sets = ", ".join(f"{p} {c[p]['identities']} identities / {c[p]['images']} images" for p in SPLITS)
    return (f"split: {sets}; {len(report['too_few'])} identities with < {report['min_images']} images "
            f"left out; {report['mode']}s in {report['output']} (report {report['report']})")


def gallery_probe(src: str | Path, dst: str | Path, gallery_images: int = 1, unknown: float = 0.0,
                  seed: int = 0, min_images: int = 2, mode: str = "link") -> dict:
    """Gallery and probe sets for 1:N identification from an identity folder; returns the report.

    Every known identity (``min_images`` or more images, at least ``gallery_images + 1``) enrols
    ``gallery_images`` seeded-random images in the gallery and probes with the rest. ``unknown`` (a
    fraction ``< 1`` or a count of the kept identities) makes the set open: those identities are left
    out of the gallery and all their images are probes ("unknown" people to reject). Written like
    :func:`split` (``dst/gallery``, ``dst/probe`` link folders or lists), ``gallery_probe.json`` last.
    ``faceforge eval identify --gallery DST/gallery --probe DST/probe`` reads the link folders."""
    _check_mode(mode)
    if gallery_images < 1:
        raise UserError(f"--gallery-images: must be at least 1, got {gallery_images}")
    src, dst = Path(src), Path(dst)
    check_new_output(src, dst)
    need = max(min_images, gallery_images + 1)
    groups, too_few = _identities(src, need, "gallery-probe")
    names = sorted(groups)
    n_unknown = share(unknown, len(names), "--unknown")
    if n_unknown >= len(names):
        raise UserError(f"gallery-probe: {len(names)} identities with >= {need} images cannot leave "
                        f"{n_unknown} out of the gallery and enrol at least one")
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    unknown_names = sorted(order[:n_unknown])
    gallery: dict[str, list[Path]] = {}
    probe: dict[str, list[Path]] = {}
    for name in names:
        files = groups[name]
        if name in unknown_names:
            probe[name] = files
            continue
        pick = set(rng.choice(len(files), gallery_images, replace=False).tolist())
        gallery[name] = [f for i, f in enumerate(files) if i in pick]
        probe[name] = [f for i, f in enumerate(files) if i not in pick]
    labels = {name: i for i, name in enumerate(names)}
    dst.mkdir(parents=True, exist_ok=True)
    report = {"source": str(src), "output": str(dst), "mode": mode, "seed": seed,
              "gallery_images": gallery_images, "min_images": need, "open_set": n_unknown > 0,
              "too_few": too_few, "unknown": unknown_names,
              "gallery": _write_set(dst, "gallery", gallery, labels, mode),
              "probe": _write_set(dst, "probe", probe, labels, mode),
              "counts": {"gallery_identities": len(gallery),
                         "gallery_images": sum(map(len, gallery.values())),
                         "probe_identities": len(probe), "probe_images": sum(map(len, probe.values())),
                         "unknown_identities": n_unknown,
                         "unknown_images": sum(len(probe[n]) for n in unknown_names)}}
    atomic_write_text(dst / "gallery_probe.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    report["report"] = str(dst / "gallery_probe.json")
    return report


def gallery_probe_summary(report: dict) -> str:
    c = report["counts"]
    kind = (f"open set: {c['unknown_identities']} identities ({c['unknown_images']} probes) not enrolled"
            if report["open_set"] else "closed set")
    return (f"gallery-probe: gallery {c['gallery_identities']} identities / {c['gallery_images']} images, "
            f"probe {c['probe_identities']} identities / {c['probe_images']} images ({kind}); "
            f"{len(report['too_few'])} identities with < {report['min_images']} images left out; "
            f"in {report['output']}")
