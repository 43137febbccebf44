"""``faceforge data stats SRC``: identities, images and the per-identity count histogram."""

from __future__ import annotations

import numpy as np

from faceforge.data.dataset import FaceDataset
from faceforge.data.tools import open_any

BINS = (1, 2, 3, 5, 10, 20, 30, 50, 90, 200, 350, 1000)


def stats(dataset: FaceDataset | str, verify: bool = False) -> dict:
    """Counts per identity; ``verify`` also checks a packed source's per-record CRCs."""
    ds = open_any(dataset) if isinstance(dataset, str) else dataset
    checked = None
    if verify:
        from faceforge.data.packed import PackedDataset
        from faceforge.data.packed import verify as verify_packed
        from faceforge.errors import UserError

        if not isinstance(ds, PackedDataset):
            raise UserError(f"--verify: {ds.description} is not a packed source (only .ffpk carries CRCs)")
        checked = verify_packed(ds)
    counts = np.bincount(ds.labels, minlength=ds.num_classes)
    present = counts[counts > 0]
    edges = [b for b in BINS if b <= max(int(present.max()), 1)] + [int(present.max()) + 1]
    hist = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        n = int(((present >= lo) & (present < hi)).sum())
        hist.append({"from": lo, "to": hi - 1, "identities": n})
    return {
        "source": ds.description,
        "identities": int(len(present)),
        "classes": int(ds.num_classes),
        "images": int(len(ds)),
        "per_identity": {"min": int(present.min()), "median": float(np.median(present)),
                         "mean": round(float(present.mean()), 3), "max": int(present.max())},
        "histogram": hist,
        **({"verified": checked} if checked is not None else {}),
    }


def format_stats(s: dict, width: int = 40) -> str:
    p = s["per_identity"]
    space = f" (label space {s['classes']})" if s["classes"] != s["identities"] else ""
    lines = [
        f"source      {s['source']}",
        f"identities  {s['identities']}{space}",
        f"images      {s['images']}",
        f"per identity: min {p['min']}  median {p['median']:g}  mean {p['mean']:g}  max {p['max']}",
        "images per identity   identities",
    ]
    if "verified" in s:
        v = s["verified"]
        lines.insert(3, f"verified    {v['records']} records, {v['bytes']} bytes: every CRC matches")
    top = max(h["identities"] for h in s["histogram"]) or 1
    for h in s["histogram"]:
        rng = f"{h['from']}" if h["from"] == h["to"] else f"{h['from']}-{h['to']}"
        bar = "#" * round(width * h["identities"] / top)
        lines.append(f"  {rng:>12}  {h['identities']:>10}  {bar}")
    return "\n".join(lines)
