"""Option groups shared by several commands."""

from __future__ import annotations

import argparse


def add_group(sub, name: str, help: str) -> argparse._SubParsersAction:
    """A command group (``faceforge data ...``); without a sub-command it prints its help.

    Several CLI modules may add commands to the same group: the group is created once per parser.
    """
    groups = sub.__dict__.setdefault("_faceforge_groups", {})  # per parser, not per process
    if name not in groups:
        parser = sub.add_parser(name, help=help, description=help)
        parser.set_defaults(_group_parser=parser, func=None)
        groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    return groups[name]


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set head.m=0.45 (repeatable)",
    )


def device_name(text: str) -> str:
    """argparse type for ``--device``: cpu, auto, cuda or cuda:N that exists on this machine."""
    from faceforge.distributed import check_device
    from faceforge.errors import UserError

    try:
        return check_device(text, "device")
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("device: ")) from None


def bounded(kind: type, low: float | None = None, high: float | None = None, open_low: bool = False):
    """argparse type: an int/float within [low, high] (``low`` excluded with ``open_low``; NaN and
    infinity refused)."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got '{text}'") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
        if (low is not None and (value <= low if open_low else value < low)) or (
            high is not None and value > high
        ):
            span = (f"{'>' if open_low else '>='} {low}" if high is None
                    else f"in {'(' if open_low else '['}{low}, {high}]")
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, default="auto",
                        help="cpu, cuda, cuda:1 or auto (default)")


def resolve_device(name: str = "auto") -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 image``, ``0 images``, ``3 identities`` (``plural`` when it is not NOUN + s)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
