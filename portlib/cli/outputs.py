"""The scan command's report files, with nmap's flags: ``-oX``, ``-oG``, ``-oN``,
``-oA BASE``, ``--append-output`` and ``--jsonl`` (one verdict per line on stdout,
as it is decided).

``FILE`` may be ``-`` for stdout, as in nmap; then the human table is not printed
there too. Paths are checked before the scan starts, so a typo costs no scan.

A scan's outputs are written host by host as hosts finish (:class:`ScanOutputs`):
each file is opened once when the scan starts and written in place, so it fills
while the scan runs and is complete and closed however the scan ends (Ctrl-C,
SIGTERM). A whole report (``-sL``'s list, a library caller) is written by
:func:`write_outputs`, where a file that could not be written keeps what it held
(:mod:`portlib.output.safewrite`). Either way every output is written even when
another fails, and each failure is one line.

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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from portlib.errors import OutputError

if TYPE_CHECKING:
    from portlib.cli.reversedns import ReverseNames
    from portlib.model import HostResult, PortResult, ScanReport
    from portlib.output.formats import Format
    from portlib.output.stream import ReportWriter
    from portlib.scanning import Scanner

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


@dataclass
class HostTotals:
    """What ``-vv``'s closing line counts, added up host by host."""

    hosts: int = 0
    verdicts: int = 0
    open: int = 0

    def add(self, host: HostResult) -> None:
        self.hosts += 1
        self.verdicts += len(host.ports) + sum(f.count for f in host.extra_ports)
        self.open += len(host.open_ports())


class ScanOutputs:
    """Every output of one scan, written host by host as the scan hands hosts over:
    the table (or ``--json``) on stdout and each ``-o`` file, each file opened once
    when the scan starts. A write that fails drops that output only; ``finish`` (in
    a ``finally``) closes every output properly, however the scan ended.

        outputs = ScanOutputs(args, sys.stdout, table=True)
        try:
            ...Scanner(..., on_host=outputs.host), outputs.start(scanner) once it runs
        finally:
            outputs.finish(report)
    """

    def __init__(
        self,
        args: argparse.Namespace,
        stdout: TextIO,
        *,
        table: bool,
        before_write: Callable[[], object] | None = None,
    ) -> None:
        self.args = args
        self.before_write = before_write  # clears a terminal's progress line first
        self.stdout = stdout
        self.table = table  # the human table (or --json) goes to stdout
        self.written = Written()
        self.totals = HostTotals()
        self._writers: list[ReportWriter] = []
        self._files: list[tuple[str, TextIO]] = []
        self._names: ReverseNames | None = None
        if getattr(args, "reverse_dns", False):
            from portlib.cli.reversedns import ReverseNames

            self._names = ReverseNames()
        self._scanner: Scanner | None = None
        self._finished = False

    def start(self, scanner: Scanner) -> None:
        """Open every output and write its start; called once the scan has started."""
        from portlib.output.stream import ScanHeader

        self._scanner = scanner
        header = ScanHeader.from_scanner(scanner, sys.argv)
        self._open()
        for writer in list(self._writers):
            self._call(writer, writer.begin, header)

    def host(self, host: HostResult) -> None:
        """``on_host``: write one finished host to every output."""
        self.totals.add(host)
        ready = [host] if self._names is None else self._names.submit(host)
        self._write(ready)

    def finish(self, report: ScanReport | None, *, wait: bool = True) -> ScanReport | None:
        """Write what is left and close every output; ``report`` is the scan's (None
        when the scan failed: then the scanner's partial one). Returns the report."""
        if self._finished:
            return report
        self._finished = True
        if self._names is not None:
            self._write(self._names.finish(wait=wait))
        if report is None and self._scanner is not None and self._scanner.started:
            report = self._scanner.report()
        if report is not None:
            for writer in list(self._writers):
                self._call(writer, writer.end, report)
        live = {writer.name for writer in self._writers}
        for path, file in self._files:
            try:
                file.close()
            except OSError as exc:
                if path in live:  # a failed output has said why already
                    why = exc.strerror or str(exc)
                    self.written.failures.append(OutputError(f"cannot write {path}: {why}"))
        return report

    def _open(self) -> None:
        from portlib.output.formats import writer_for
        from portlib.output.normal import NormalWriter
        from portlib.output.safewrite import open_stream

        args = self.args
        options: dict[str, Any] = {
            "open_only": bool(getattr(args, "open", False)),
            "reason": bool(getattr(args, "reason", False)),
            "all_ports": bool(getattr(args, "all_ports", False)),
            "clock": time.time,
        }
        append = bool(getattr(args, "append_output", False))
        if self.table:
            fmt: Format = "json" if getattr(args, "json", False) else "normal"
            writer = writer_for(fmt, self.stdout, name="stdout", **options)
            if isinstance(writer, NormalWriter):
                writer.banner = False  # printed when the scan started, as nmap does
            self._writers.append(writer)
        for fmt, path in output_files(args):
            if path == STDOUT:
                self._writers.append(writer_for(fmt, self.stdout, name="stdout", **options))
                continue
            try:
                file = open_stream(path, append=append and fmt != "xml")
            except OutputError as exc:
                self.written.failures.append(exc)
                continue
            self._files.append((path, file))
            self._writers.append(writer_for(fmt, file, name=path, **options))
            self.written.paths.append(path)

    def _write(self, hosts: list[HostResult]) -> None:
        from portlib.output.columns import sharing

        if hosts and self.before_write is not None:
            self.before_write()
        with sharing():  # the formats share what they derive from each host
            for host in hosts:
                for writer in list(self._writers):
                    self._call(writer, writer.host, host)

    def _call(self, writer: ReportWriter, step: Callable[[Any], None], value: Any) -> None:
        try:
            step(value)
        except OutputError as exc:
            self.written.failures.append(exc)
        except BrokenPipeError:
            self.written.broken_pipe = True  # the reader left (| head): the files go on
        else:
            return
        self._writers.remove(writer)
        if writer.name in self.written.paths:
            self.written.paths.remove(writer.name)
