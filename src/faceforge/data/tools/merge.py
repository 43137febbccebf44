"""``faceforge data merge SRC1 SRC2 ... DST``: several identity-folder datasets in one label space.

Identities that appear in more than one source are merged: by name (exact, after stripping case and
surrounding spaces) and, with a model, by mean-embedding cosine similarity >= threshold between
identities of different sources. A CSV maps every (source, original identity) to its merged identity.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from faceforge.atomic import atomic_write_bytes, atomic_write_text
from faceforge.data.tools import check_new_output
from faceforge.errors import UserError
from faceforge.io.folders import list_identity_folder
from faceforge.io.images import CorruptImage, check_image, read_bytes, read_image


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the earliest identity names the group


def identity_embeddings(groups: list[list[Path]], embedder, batch_size: int = 64) -> np.ndarray:
    """Mean of the L2-normalised embeddings of each identity's images, L2-normalised again.

    ``embedder``: a :class:`faceforge.embed.base.Embedder` (``embed(uint8 [B,H,W,3])``, images
    fitted to ``meta.input_size``), or a torch module mapping normalised ``[B,3,H,W]`` to
    embeddings (with an optional ``meta`` dict).
    """
    from faceforge.align.transform import fit_to_input

    if hasattr(embedder, "embed"):
        size, template = tuple(embedder.meta.input_size), embedder.meta.template
        run = embedder.embed
    else:
        meta = getattr(embedder, "meta", {})
        size, template = tuple(meta.get("input_size", (112, 112))), meta.get("template", "arcface")
        run = _module_runner(embedder, meta)
    rows = []
    for files in groups:
        imgs = []
        for f in files:
            try:
                img = read_image(f)
            except CorruptImage:
                continue
            imgs.append(fit_to_input(img, size, template) if img.shape[:2] != size else img)
        embs = [_normalise(np.asarray(run(np.stack(imgs[b : b + batch_size])), np.float32))
                for b in range(0, len(imgs), batch_size)]
        rows.append(np.concatenate(embs).mean(0) if embs else None)
    dim = next((r.shape[0] for r in rows if r is not None), 0)
    out = np.zeros((len(groups), dim), np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = r / max(float(np.linalg.norm(r)), 1e-12)
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _module_runner(model, meta: dict):
    import torch

    mean = torch.as_tensor(meta.get("mean", 0.5), dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.as_tensor(meta.get("std", 0.5), dtype=torch.float32).reshape(-1, 1, 1)

    def run(batch: np.ndarray) -> np.ndarray:
        x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        with torch.no_grad():
            return model(x).float().numpy()

    return run


def merge(sources: list[str | Path], dst: str | Path, threshold: float = 0.6, by_name: bool = True,
          mapping: str | Path | None = None, embedder=None) -> dict:
    """Merge identity folders ``sources`` into ``dst``; returns the report (also ``merge_report.json``).

    With an ``embedder`` (see :func:`identity_embeddings`; the CLI loads one with
    ``faceforge.embed.load_embedder``) identities are also merged by mean-embedding similarity.
    """
    if len(sources) < 2:
        raise UserError("merge: give at least two source folders and the output folder")
    if not -1.0 <= threshold <= 1.0:
        raise UserError(f"--threshold: cosine similarity must lie in [-1, 1], got {threshold}")
    srcs = [Path(s) for s in sources]
    dst = Path(dst)
    ids: list[tuple[int, str, list[Path]]] = []
    for k, src in enumerate(srcs):
        check_new_output(src, dst)
        files, labels, names = list_identity_folder(src, "merge")
        for lab, name in enumerate(names):
            ids.append((k, name, [files[i] for i in np.flatnonzero(labels == lab)]))
    uf = _UnionFind(len(ids))
    reason = [""] * len(ids)
    if by_name:
        first: dict[str, int] = {}
        for i, (_, name, _) in enumerate(ids):
            key = name.strip().lower()
            if key in first:
                uf.union(first[key], i)
                reason[i] = reason[first[key]] = "name"
            else:
                first[key] = i
    pairs = []
    if embedder is not None:
        emb = identity_embeddings([g for _, _, g in ids], embedder)
        sim = emb @ emb.T
        src_of = np.array([k for k, _, _ in ids])
        for i, j in zip(*np.nonzero(np.triu(sim >= threshold, 1))):
            if src_of[i] != src_of[j] and emb[i].any() and emb[j].any():
                uf.union(int(i), int(j))
                pairs.append({"a": f"{srcs[src_of[i]]}:{ids[i][1]}", "b": f"{srcs[src_of[j]]}:{ids[j][1]}",
                              "similarity": round(float(sim[i, j]), 4)})
                reason[i] = reason[i] or "embedding"
                reason[j] = reason[j] or "embedding"
    merged_name: dict[int, str] = {}
    taken: set[str] = set()
    for i, (_, name, _) in enumerate(ids):
        root = uf.find(i)
        if root not in merged_name:
            candidate, n = name, 2
            while candidate in taken:  # two different groups whose names collide after case folding
                candidate = f"{name}_{n}"
                n += 1
            taken.add(candidate)
            merged_name[root] = candidate
    dst.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source", "original_identity", "merged_identity", "merged_label", "matched_by"])
    label_of = {root: lab for lab, root in enumerate(sorted(merged_name, key=lambda r: merged_name[r]))}
    images, corrupt = 0, []
    for i, (k, name, files) in enumerate(ids):
        root = uf.find(i)
        target = dst / merged_name[root]
        target.mkdir(exist_ok=True)
        for f in files:
            try:  # decode-check what is copied: a text file or a 0-byte JPEG is not an image
                data = read_bytes(f)
                check_image(data, str(f))
            except CorruptImage as e:
                corrupt.append(str(e))
                continue
            atomic_write_bytes(target / f"s{k}_{f.name}", data)
            images += 1
        writer.writerow([str(srcs[k]), name, merged_name[root], label_of[root], reason[i] or "-"])
    mapping_path = Path(mapping) if mapping else dst / "merge_mapping.csv"
    atomic_write_text(mapping_path, buf.getvalue())
    result = {
        "sources": [str(s) for s in srcs], "output": str(dst), "identities_in": len(ids),
        "identities_out": len(merged_name), "images": images, "corrupt": len(corrupt),
        "corrupt_files": corrupt, "merged_by_name": reason.count("name"),
        "embedding_pairs": pairs, "mapping": str(mapping_path),
    }
    atomic_write_text(dst / "merge_report.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result
