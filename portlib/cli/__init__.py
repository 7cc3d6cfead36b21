"""The ``portlib`` command: one subcommand module per job, errors as one line and exit 2.

Each module in ``_COMMANDS`` has ``register(subparsers)``, which adds its
subcommand(s) and sets ``handler`` (a function ``(args) -> int``) as a default.
Modules import their heavy parts inside the handler, so ``portlib --help``
stays fast.

A subcommand's own parser reads its arguments, so a usage error names the
subcommand and points at its help (``see portlib scan --help``). ``scan`` takes
targets anywhere on the line, as nmap does; like nmap's getopt, a flag that takes
a value takes the next word even when it starts with ``-`` (``--rate -5`` is then
refused for its value, ``-p -1024`` is ports 1 to 1024).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from portlib.errors import PortlibError

_COMMANDS: tuple[str, ...] = (
    "scan_cmd",
    "free_cmd",
    "diff_cmd",
    "merge_cmd",
    "sockets_cmd",
    "who_cmd",
)
_INTERMIXED = frozenset({"scan", "sockets", "who"})  # positionals may come among flags
_NUMBER = re.compile(r"-[0-9][0-9,.-]*")  # -5, -1024, -1.5: a value, not a flag

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
            "  portlib merge part1.xml part2.xml   one scan from its --shard parts\n"
            "\n"
            "Run 'portlib COMMAND --help' for a command's options and examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=OneLineParser
    )
    for module_name in _COMMANDS:
        importlib.import_module(f"portlib.cli.{module_name}").register(subparsers)
    return parser


def version_text() -> str:
    from portlib.version import __version__

    return f"portlib {__version__}"


def parse_command(argv: Sequence[str]) -> argparse.Namespace:
    """The namespace for a whole command line, parsed by the subcommand's own parser."""
    parser = build_parser()
    words = list(argv)
    sub = _subparser(parser, words[0]) if words else None
    if sub is None:
        return parser.parse_args(words)
    rest = _values_may_start_with_dash(sub, words[1:])
    parse = sub.parse_intermixed_args if words[0] in _INTERMIXED else sub.parse_args
    namespace = parse(rest)
    namespace.command_words = tuple(words)  # the command as typed, for a scan's checkpoint
    return namespace


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(name)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def _values_may_start_with_dash(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """``--rate -5`` as ``--rate=-5``: a flag taking one value takes the next word, unless
    that word is itself a flag of the parser (``-p -sS``: argparse then says the value
    is missing). Numbers are values (``-p -1024``), except a flag such as ``-4``."""
    takes_value = {
        flag
        for action in parser._actions
        if action.option_strings
        and action.nargs is None
        and action.const is None
        and not isinstance(action, argparse._StoreConstAction | argparse._CountAction)
        for flag in action.option_strings
    }
    known = set(parser._option_string_actions)

    def is_flag(word: str) -> bool:
        if _NUMBER.fullmatch(word) and word not in known:
            return False
        return word.startswith("--") or word.split("=", 1)[0] in known or word[:2] in known

    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else ""
        dashed = following.startswith("-") and following != "-"
        if word in takes_value and dashed and not is_flag(following):
            out.append(f"{word}={following}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_command(sys.argv[1:] if argv is None else argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        build_parser().print_help(sys.stderr)
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
