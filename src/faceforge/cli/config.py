"""``faceforge config [CONFIG]``: every key of a training config with its value, type, range and help."""

from __future__ import annotations

import json

from faceforge.cli._common import add_config_options


def add_commands(sub) -> None:
    p = sub.add_parser(
        "config",
        help="list every training config key (value, type, range, help) and the built-in recipes",
        description="Every key of a training config, per section, with its value (from CONFIG and "
        "--set, else the default), type, allowed range and one line of help; the options of the "
        "chosen backbone, head and training mode are listed in their sections. CONFIG is a YAML file "
        "or the name of a built-in recipe (--recipes lists them).",
    )
    add_config_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per key")
    p.add_argument("--recipes", action="store_true", help="list the recipes shipped with faceforge")
    p.add_argument("--landmarks", action="store_true",
                   help="a landmark config ('faceforge landmarks train'); found by itself for a landmark "
                   "recipe")
    p.set_defaults(func=run)


def rows_of(cfg) -> list[dict]:
    """The config's own keys, then each component's options, each in its section."""
    from faceforge.config import describe
    from faceforge.train.components import component_options, component_sections

    rows = describe(cfg)
    for section, registry, _name, _ in component_sections(cfg):
        if registry.kind != "backbone":  # too many backbones for one line: faceforge models
            row = next(r for r in rows if r["key"] in (f"{section}.name", f"{section}.mode"))
            row["help"] += "; one of: " + ", ".join(registry.names())
    for section, registry, name, options in component_sections(cfg):
        extra = component_options(registry, name, section)
        for r in extra:
            key = r["key"].partition(".")[2]
            if key in options:
                r["value"] = options[key]
        last = max(i for i, r in enumerate(rows) if r["key"].startswith(section + "."))
        rows[last + 1:last + 1] = extra
    return rows


def _value(v) -> str:
    return "null" if v is None else json.dumps(v) if not isinstance(v, str) else v


def format_rows(rows: list[dict]) -> str:
    widths = [max(len(r["key"].rpartition(".")[2]) for r in rows),
              max(len(_value(r["value"])) for r in rows), max(len(r["type"]) for r in rows),
              max(len(r["range"]) for r in rows)]
    out, section = [], None
    for r in rows:
        sec, _, key = r["key"].rpartition(".")
        if sec != section:
            section = sec
            out.append(f"{sec or 'top level'}:")
        cells = (key, _value(r["value"]), r["type"], r["range"])
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + r["help"])
    return "\n".join(line.rstrip() for line in out)


def run(args) -> int:
    from faceforge.config import describe, load_config, recipes
    from faceforge.errors import UserError
    from faceforge.train.components import check_components

    if args.recipes:
        for name, path in recipes().items():
            first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                          if line.startswith("#")), "")
            print(f"{name:38s} {first}")
        return 0
    from faceforge.landmarks.train import LandmarkConfig

    landmarks = args.landmarks
    if not landmarks:
        try:
            cfg = load_config(args.config, args.overrides)
        except UserError:  # a landmark recipe? (its keys parse there)
            if not args.config:
                raise
            try:
                load_config(args.config, [], cls=LandmarkConfig)  # the file itself is a landmark config
            except UserError:
                load_config(args.config, args.overrides)  # the first error, about the training config
            landmarks = True
    if landmarks:
        rows = describe(load_config(args.config, args.overrides, cls=LandmarkConfig))
    else:
        check_components(cfg)
        rows = rows_of(cfg)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(format_rows(rows))
    command = "faceforge landmarks train" if landmarks else "faceforge train"
    print("\nset any key with --set KEY=VALUE (e.g. --set train.max_steps=200); "
          f"built-in recipes: faceforge config --recipes; train one: {command} NAME")
    return 0
