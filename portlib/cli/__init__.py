"""The ``portlib`` command: one subcommand module per job, errors as one line and exit 2.

Each module in ``_COMMANDS`` has ``register(subparsers)``, which adds its
subcommand(s) and sets ``handler`` (a function ``(args) -> int``) as a default.
Modules import their heavy parts inside the handler, so ``portlib --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from portlib.errors import PortlibError

_COMMANDS: tuple[str, ...] = ("scan_cmd", "free_cmd", "diff_cmd", "sockets_cmd", "who_cmd")

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and the answer is "no" (e.g. a port is not free)
EXIT_USAGE = 2  # bad input: flags, targets, port specs, files, privileges
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="portlib",
        description="Scan ports, list sockets and their processes, find free ports.",
        epilog=(
            "examples:\n"
            "  portlib scan localhost              open ports among the top 1000 TCP ports\n"
            "  portlib sockets -tlnp               listening TCP sockets and their processes\n"
            "  portlib who 8000 --kill             stop whatever holds local port 8000\n"
            "  portlib free                        a free TCP port\n"
            "  portlib service ssh                 the ports registered for ssh\n"
            "  portlib diff old.xml new.xml        what changed between two scans\n"
            "\n"
            "Run 'portlib COMMAND --help' for a command's options and examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=OneLineParser
    )
    for module_name in _COMMANDS:
        importlib.import_module(f"portlib.cli.{module_name}").register(subparsers)
    return parser


def _version() -> str:
    from portlib import __version__

    return f"portlib {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except PortlibError as exc:
        print(f"portlib: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("portlib: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `portlib sockets | head`: the reader left; not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
