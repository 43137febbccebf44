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
import typing

from faceforge.errors import UserError, clean_message


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line like every other faceforge error (exit status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        where = self.prog.removeprefix("faceforge").strip()
        hint = f" (see 'faceforge {where} --help')" if where else " (see 'faceforge --help')"
        self.exit(2, f"faceforge: error: {where + ': ' if where else ''}{message}{hint}\n")


def os_error_message(e: OSError) -> str:
    """``<path>: <reason>`` for an OS error a user can cause (a path under a regular file,
    permission denied, a full disk, an unresolvable host)."""
    reason = e.strerror or str(e) or type(e).__name__
    if isinstance(e, (FileExistsError, NotADirectoryError)) and e.filename is not None:
        import os.path

        if os.path.isfile(e.filename) or isinstance(e, NotADirectoryError):
            reason = "a folder is needed here, but the path (or a parent of it) is a regular file"
    if getattr(e, "filename", None) is not None:
        target = f"{e.filename} -> {e.filename2}" if getattr(e, "filename2", None) else str(e.filename)
        return f"{target}: {reason}"
    return reason


def build_parser() -> argparse.ArgumentParser:
    from faceforge import __version__

    parser = OneLineParser(
        prog="faceforge",
        description="Face recognition toolkit: prepare data, train, evaluate, locate landmarks, ship.",
    )
    parser.add_argument("--version", action="version", version=f"faceforge {__version__}")
    parser.add_argument("--engine", default=None, metavar="ENGINE[:PRECISION]",
                        help="what runs ONNX graphs (detectors, ONNX models, landmarks): auto (default, the "
                             "fastest correct one on this CPU), onnxruntime, openvino, openvino:bf16, "
                             "auto:fp32; also $FACEFORGE_ENGINE. 'faceforge info' shows the choice")
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version exit 0 as argparse does; an error is returned as 2
        if e.code in (0, None):
            raise
        return int(e.code) if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        # a command group given without its sub-command prints that group's help
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    try:
        if args.engine:  # before any command opens a session; worker processes inherit it
            from faceforge.runtime.engines import set_default_engine

            set_default_engine(args.engine)
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except UserError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        print("faceforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `faceforge gallery list G | head -1`: the reader has all it wanted
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away
    except MemoryError:
        return _error("out of memory (try a smaller --batch-size or fewer --workers)")
    except OSError as e:
        return _error(os_error_message(e))
    return int(result or 0)


def _error(message: str) -> int:
    lines = message.strip().splitlines() or ["unknown error"]
    print(f"faceforge: error: {clean_message(lines[0], 4000)}", file=sys.stderr)  # no terminal codes
    return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not raise a second time."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
