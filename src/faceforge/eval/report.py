"""Reports of evaluation results: a markdown table (rows = models, columns = benchmarks) and plots.

Plots use matplotlib's Agg backend (imported inside the functions) and are rendered to memory,
then written atomically, so a crash never leaves a half-written PNG.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_bytes, atomic_write_text
from faceforge.errors import UserError


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a UserError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plots need matplotlib: pip install faceforge[eval]") from None
    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Render ``fig`` to PNG in memory, close it, write ``path`` atomically."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()  # one layout pass; bbox_inches="tight" would draw the figure twice
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "ROC"):
    """ROC curves (label -> (fpr, tpr)) with a log FAR axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, (fpr, tpr) in curves.items():
        fpr = np.asarray(fpr, dtype=np.float64)
        keep = fpr > 0  # log axis: the (0, tpr) points cannot be drawn
        ax.plot(fpr[keep], np.asarray(tpr)[keep], label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_cmc(curves: dict[str, np.ndarray], path: str | Path, title: str = "CMC"):
    """Cumulative match characteristic (label -> identification rate at rank 1..K)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, cmc in curves.items():
        cmc = np.asarray(cmc)
        ax.plot(np.arange(1, cmc.shape[0] + 1), cmc, marker=".", label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0.0, 1.01)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_distractors(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path, title="MegaFace"):
    """Rank-1 identification rate as the number of distractors grows (log axis)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, (sizes, rank1) in curves.items():
        ax.plot(sizes, rank1, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("distractors")
    ax.set_ylabel("rank-1 identification rate")
    ax.set_ylim(0.0, 1.01)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)


def markdown_table(rows: dict[str, dict[str, str]], columns: Sequence[str], corner: str = "model") -> str:
    """A markdown table: one row per key of ``rows``, cells looked up by column ("-" if missing)."""
    lines = ["| " + " | ".join([corner, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, cells in rows.items():
        lines.append("| " + " | ".join([name, *(cells.get(c, "-") for c in columns)]) + " |")
    return "\n".join(lines)


def text_table(rows: dict[str, dict[str, str]], columns: Sequence[str], corner: str = "model") -> str:
    """The same table aligned for a terminal."""
    header = [corner, *columns]
    body = [[name, *(cells.get(c, "-") for c in columns)] for name, cells in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r) for r in [header, *body])


def write_markdown(path: str | Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """``report.md``: a title and (heading, body) sections."""
    text = [f"# {title}", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body.rstrip(), ""]
    atomic_write_text(path, "\n".join(text))
    return Path(path)
