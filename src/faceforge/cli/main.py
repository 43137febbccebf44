"""``faceforge`` command line: a thin layer over the library.

Every module in this package (except ``main`` and private ones) defines
``add_commands(subparsers)`` and registers its commands there; a command's handler is stored as
``set_defaults(func=...)`` and receives the parsed arguments.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from faceforge.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from faceforge import __version__

    parser = argparse.ArgumentParser(
        prog="faceforge",
        description="Face recognition toolkit: prepare data, train, evaluate, locate landmarks, ship.",
    )
    parser.add_argument("--version", action="version", version=f"faceforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import faceforge.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"faceforge.cli.{info.name}")
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # a command group given without its sub-command prints that group's help
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    try:
        result = args.func(args)
    except UserError as e:
        print(f"faceforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceforge: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
