"""The scan command's report files, with nmap's flags: ``-oX``, ``-oG``, ``-oN``,
``-oA BASE``, ``--append-output`` and ``--jsonl`` (one verdict per line on stdout,
as it is decided).

``FILE`` may be ``-`` for stdout, as in nmap; then the human table is not printed
there too. Paths are checked before the scan starts, so a typo costs no scan. After
it, every output is written even when another fails, each failure is one line, and
a file that could not be written keeps what it held (:mod:`portlib.output.safewrite`).

    parser = argparse.ArgumentParser()
    add_output_arguments(parser)
    args = parser.parse_args(["-oA", "scans/monday"])
    check_outputs(args)                      # before scanning: OutputError if unwritable
    failures = write_outputs(report, args)   # scans/monday.xml, .gnmap, .nmap
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from portlib.errors import OutputError

if TYPE_CHECKING:
    from portlib.model import PortResult, ScanReport
    from portlib.output.formats import Format

STDOUT = "-"

# format -> the file suffix -oA gives it (nmap's own suffixes), and the flag for one file
SUFFIXES: dict[Format, str] = {"xml": ".xml", "grepable": ".gnmap", "normal": ".nmap"}
_FLAGS: dict[Format, str] = {"xml": "-oX", "grepable": "-oG", "normal": "-oN"}


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add -oX/-oG/-oN/-oA, --append-output and --jsonl to a subcommand's parser."""
    group = parser.add_argument_group("output (nmap's flags; FILE '-' is stdout)")
    group.add_argument("-oX", dest="output_xml", metavar="FILE", help="nmap's XML format")
    group.add_argument("-oG", dest="output_grepable", metavar="FILE", help="nmap's grepable format")
    group.add_argument("-oN", dest="output_normal", metavar="FILE", help="the human table")
    group.add_argument(
        "-oA", dest="output_all", metavar="BASE", help="all three: BASE.xml, BASE.gnmap, BASE.nmap"
    )
    group.add_argument(
        "--append-output",
        action="store_true",
        help="add to the -oN and -oG files instead of replacing them (XML files are replaced:"
        " two reports in one file would not be XML)",
    )
    group.add_argument(
        "--jsonl",
        action="store_true",
        help="one JSON object per port verdict on stdout, as each is decided (for pipes)",
    )


@dataclass
class Written:
    """What :func:`write_outputs` did: the files written and one error per file that failed."""

    paths: list[str] = field(default_factory=list)
    failures: list[OutputError] = field(default_factory=list)
    broken_pipe: bool = False  # stdout's reader left before its output was written


def output_files(args: argparse.Namespace) -> list[tuple[Format, str]]:
    """The (format, path) pairs the flags ask for: -oA's three first, then -oX, -oG, -oN."""
    return [(fmt, path) for fmt, path, _ in _requested(args)]


def _requested(args: argparse.Namespace) -> list[tuple[Format, str, str]]:
    """(format, path, the flag that asked for it)."""
    files: list[tuple[Format, str, str]] = []
    base = getattr(args, "output_all", None)
    if base is not None:
        if base == STDOUT:
            raise OutputError("-oA needs a base file name, not '-'")
        files.extend((fmt, base + suffix, "-oA") for fmt, suffix in SUFFIXES.items())
    for fmt in SUFFIXES:
        path = getattr(args, f"output_{fmt}", None)
        if path is not None:
            files.append((fmt, path, _FLAGS[fmt]))
    return files


def writes_stdout(args: argparse.Namespace) -> bool:
    """Whether some output (``-oX -``, ``--jsonl``) takes stdout from the human table."""
    return bool(getattr(args, "jsonl", False)) or any(
        path == STDOUT for _, path in output_files(args)
    )


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any packet, outputs that cannot be written or that collide."""
    from portlib.output.safewrite import check_writable

    requested = _requested(args)
    to_stdout = [flag for _, path, flag in requested if path == STDOUT]
    if getattr(args, "jsonl", False):
        to_stdout.append("--jsonl")
    if getattr(args, "json", False) and to_stdout:
        to_stdout.append("--json")
    if len(to_stdout) > 1:
        raise OutputError(
            f"{' and '.join(to_stdout)} would all write to stdout; send all but one to files"
        )
    seen: dict[str, str] = {}
    for _, path, flag in requested:
        if path == STDOUT:
            continue
        key = os.path.abspath(path)
        if key in seen:
            raise OutputError(f"{path} is given for both {seen[key]} and {flag}")
        seen[key] = flag
        check_writable(path)


def write_outputs(
    report: ScanReport,
    args: argparse.Namespace,
    stdout: TextIO | None = None,
    texts: Mapping[Format, str] | None = None,
) -> Written:
    """Write every report file the flags ask for, each whatever became of the others.
    ``texts`` gives a format's text instead of rendering it (``-sL``'s target list).

    >>> write_outputs(report, parser.parse_args(["-oA", "monday"])).paths  # doctest: +SKIP
    ['monday.xml', 'monday.gnmap', 'monday.nmap']
    """
    from portlib.output.columns import sharing
    from portlib.output.formats import dump

    written = Written()
    options = {
        "open_only": bool(getattr(args, "open", False)),
        "reason": bool(getattr(args, "reason", False)),
    }
    append = bool(getattr(args, "append_output", False))
    with sharing():  # the formats share what they derive from each host
        for fmt, path in output_files(args):
            try:
                out: str | TextIO = path if path != STDOUT else stdout or sys.stdout
                keep = append and fmt != "xml"
                if texts and fmt in texts:
                    _write_text(out, texts[fmt], append=keep)
                else:
                    dump(report, out, fmt, append=keep, **options)
            except OutputError as exc:
                written.failures.append(exc)
                continue
            except BrokenPipeError:
                written.broken_pipe = True
                continue
            if path != STDOUT:
                written.paths.append(path)
    return written


def _write_text(out: str | TextIO, text: str, *, append: bool) -> None:
    if isinstance(out, str):
        from portlib.output.safewrite import write_text

        write_text(out, text, append=append)
        return
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write to {getattr(out, 'name', 'stdout')}: {exc}") from None


def jsonl_hook(
    args: argparse.Namespace, stdout: TextIO | None = None
) -> Callable[[PortResult], None] | None:
    """With ``--jsonl``, a callback printing each verdict as one JSON line (flushed, so a
    pipe sees it at once); None otherwise. With ``--open`` only open verdicts."""
    if not getattr(args, "jsonl", False):
        return None
    from portlib.model import PortState
    from portlib.output.jsonout import dumps

    open_only = bool(getattr(args, "open", False))
    keep = {PortState.OPEN, PortState.OPEN_FILTERED}

    def emit(result: PortResult) -> None:
        if open_only and result.state not in keep:
            return
        out = stdout if stdout is not None else sys.stdout
        out.write(dumps(result, indent=None) + "\n")
        out.flush()

    return emit
