"""Imports flow one way: a faceforge package imports only the layers below it (CONTRIBUTING.md,
"Layers"). The imports are read from the source (ast), lazy imports inside functions included."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "faceforge"

# lowest first; CONTRIBUTING.md gives the reason for each layer
LAYERS: list[set[str]] = [
    {"errors"},  # the bottom layer is errors < atomic, distributed < io
    {"atomic", "distributed"},
    {"io"},
    {"registry", "config"},
    {"models", "align"},
    {"data"},
    {"embed"},
    {"eval"},
    {"train"},
    {"landmarks"},
    {"deploy", "demo"},
    {"fit"},  # faceforge fit: a pipeline over the stages below (align ... train ... export)
    {"cli"},
    {"__main__", "__init__"},  # python -m faceforge, and the package's lazy public API
]
BOTTOM = LAYERS[0] | LAYERS[1] | LAYERS[2]
LEVEL = {name: k for k, layer in enumerate(LAYERS) for name in layer}


def _unit(path: Path) -> str:
    """The top-level name a file belongs to: ``models/heads/arcface.py`` -> ``models``."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        unit = _unit(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
                if node.module == "faceforge":  # from faceforge import distributed
                    targets = [f"faceforge.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                if parts[0] == "faceforge" and len(parts) > 1 and parts[1] != unit:
                    edges[(unit, parts[1])].append(f"{path.relative_to(SRC)}:{node.lineno}")
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in SRC.rglob("*.py")}
    assert units <= set(LEVEL), (
        f"not in LAYERS (add it, and its reason to CONTRIBUTING.md): {units - set(LEVEL)}"
    )


def test_imports_only_go_down():
    wrong = [
        f"{a} (layer {LEVEL[a]}) imports {b} (layer {LEVEL[b]}): {', '.join(where)}"
        for (a, b), where in sorted(_imports().items())
        if b in LEVEL and LEVEL[b] >= LEVEL[a]
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in _imports():
        graph[a].add(b)
    seen: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in seen:
                visit(nxt, path + [nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])


def test_models_use_only_the_bottom_layer_and_the_registry():
    allowed = BOTTOM | {"registry"}
    used = {b for (a, b) in _imports() if a == "models"}
    assert used <= allowed, f"models imports {sorted(used - allowed)}"


def test_no_file_over_600_lines():
    long = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, f"split these by concern: {long}"
