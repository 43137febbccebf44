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


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")


def resolve_device(name: str = "auto") -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
