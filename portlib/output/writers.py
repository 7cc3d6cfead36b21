"""The scan command's report files, with nmap's flags: ``-oX``, ``-oG``, ``-oN``,
``-oA BASE`` and ``--jsonl`` (one verdict per line on stdout, as it is decided).

``FILE`` may be ``-`` for stdout, as in nmap; then the human table is not printed
there too. Paths are checked before the scan starts, so a typo costs no scan.

    parser = argparse.ArgumentParser()
    add_output_arguments(parser)
    args = parser.parse_args(["-oA", "scans/monday"])
    check_outputs(args)                      # before scanning: PortlibError if unwritable
    write_outputs(report, args)              # scans/monday.xml, .gnmap, .nmap
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from portlib.errors import PortlibError

if TYPE_CHECKING:
    from portlib.model import PortResult, ScanReport

STDOUT = "-"

# format -> the file suffix -oA gives it (nmap's own suffixes)
SUFFIXES: dict[str, str] = {"xml": ".xml", "grepable": ".gnmap", "normal": ".nmap"}
_FLAGS: dict[str, str] = {"xml": "-oX", "grepable": "-oG", "normal": "-oN"}


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add -oX/-oG/-oN/-oA and --jsonl to a subcommand's parser."""
    group = parser.add_argument_group("output (nmap's flags; FILE '-' is stdout)")
    group.add_argument("-oX", dest="output_xml", metavar="FILE", help="nmap's XML format")
    group.add_argument("-oG", dest="output_grepable", metavar="FILE", help="nmap's grepable format")
    group.add_argument("-oN", dest="output_normal", metavar="FILE", help="the human table")
    group.add_argument(
        "-oA", dest="output_all", metavar="BASE", help="all three: BASE.xml, BASE.gnmap, BASE.nmap"
    )
    group.add_argument(
        "--jsonl",
        action="store_true",
        help="one JSON object per port verdict on stdout, as each is decided (for pipes)",
    )


def output_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (format, path) pairs the flags ask for: -oA's three first, then -oX, -oG, -oN."""
    return [(fmt, path) for fmt, path, _ in _requested(args)]


def _requested(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(format, path, the flag that asked for it)."""
    files: list[tuple[str, str, str]] = []
    base = getattr(args, "output_all", None)
    if base is not None:
        if base == STDOUT:
            raise PortlibError("-oA needs a base file name, not '-'")
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
    requested = _requested(args)
    to_stdout = [flag for _, path, flag in requested if path == STDOUT]
    if getattr(args, "jsonl", False):
        to_stdout.append("--jsonl")
    if getattr(args, "json", False) and to_stdout:
        to_stdout.append("--json")
    if len(to_stdout) > 1:
        raise PortlibError(
            f"{' and '.join(to_stdout)} would all write to stdout; send all but one to files"
        )
    seen: dict[str, str] = {}
    for _, path, flag in requested:
        if path == STDOUT:
            continue
        key = os.path.abspath(path)
        if key in seen:
            raise PortlibError(f"{path} is given for both {seen[key]} and {flag}")
        seen[key] = flag
        _check_writable(Path(path))


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise PortlibError(f"cannot write {path}: it is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise PortlibError(f"cannot write {path}: directory {parent} does not exist")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise PortlibError(f"cannot write {path}: permission denied")


def render(fmt: str, report: ScanReport, args: argparse.Namespace) -> str:
    """One report in one format; ``--open`` and ``--reason`` are honoured as nmap does."""
    open_only = bool(getattr(args, "open", False))
    if fmt == "normal":
        from portlib.output.normal import render_normal

        return render_normal(
            report, open_only=open_only, reason=bool(getattr(args, "reason", False))
        )
    shown = only_open(report) if open_only else report
    if fmt == "xml":
        from portlib.output.nmapxml import to_nmap_xml

        return to_nmap_xml(shown)
    if fmt == "grepable":
        from portlib.output.grepable import to_grepable

        return to_grepable(shown)
    raise PortlibError(f"unknown output format {fmt!r} (xml, grepable, normal)")


def write_outputs(
    report: ScanReport, args: argparse.Namespace, stdout: TextIO | None = None
) -> list[str]:
    """Write every report file the flags ask for; returns the paths written.

    >>> write_outputs(report, parser.parse_args(["-oA", "monday"]))  # doctest: +SKIP
    ['monday.xml', 'monday.gnmap', 'monday.nmap']
    """
    written = []
    for fmt, path in output_files(args):
        text = render(fmt, report, args)
        if path == STDOUT:
            out = stdout if stdout is not None else sys.stdout
            out.write(text)
            out.flush()
            continue
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise PortlibError(f"cannot write {path}: {exc.strerror}") from None
        written.append(path)
    return written


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


def only_open(report: ScanReport) -> ScanReport:
    """``--open``: open and open|filtered ports only, and only hosts that have some."""
    from portlib.model import PortState

    keep = {PortState.OPEN, PortState.OPEN_FILTERED}
    hosts = []
    for host in report.hosts:
        ports = tuple(p for p in host.ports if p.state in keep)
        if ports:
            hosts.append(dataclasses.replace(host, ports=ports))
    return dataclasses.replace(report, hosts=tuple(hosts))
