"""Report writers that write a scan as it runs: ``begin(header)`` when it starts,
``host(host)`` as each host finishes, ``end(report)`` when it stops (finished or
not). Every format has one (:mod:`portlib.output.writers` names them); rendering a
whole report is ``begin`` + every host + ``end`` through the same writer, so a file
written host by host reads the same as one written at the end.

Each host is written and flushed at once, so a long scan's files fill as it runs,
and ``end`` after an interrupt still closes every format properly (valid XML, a
closed JSON document). A writer counts the hosts it was given, so ``end`` needs
only the report's timing and whether it was interrupted, not its hosts.

    >>> with open("scan.xml", "w") as out:                           # doctest: +SKIP
    ...     writer = writer_for("xml", out)
    ...     writer.begin(ScanHeader.from_report(report))
    ...     for host in report.hosts:
    ...         writer.host(host)
    ...     writer.end(report)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import is_
from typing import IO

from portlib.errors import OutputError
from portlib.model import (
    HostResult,
    HostState,
    PortState,
    Protocol,
    ScanMethod,
    ScanReport,
)
from portlib.output.columns import columns_of, sharing
from portlib.portspec import merge_ranges, ranges_of


class RunningScan(typing.Protocol):
    """What a header reads of a running scan (a ``portlib.Scanner``)."""

    @property
    def methods(self) -> tuple[ScanMethod, ...]: ...

    @property
    def started_at(self) -> _dt.datetime | None: ...

    @property
    def ports(self) -> Mapping[Protocol, Sequence[int]]: ...


Ranges = tuple[tuple[int, int], ...]
OPEN_STATES = frozenset({PortState.OPEN, PortState.OPEN_FILTERED})
"""What ``--open`` keeps."""


@dataclass(frozen=True, slots=True)
class ScanHeader:
    """What the start of a report file says: how the scan runs, which ports it
    probes (inclusive ranges per protocol), when it started and its command line."""

    method: ScanMethod
    started: _dt.datetime
    protocols: tuple[Protocol, ...] = (Protocol.TCP,)
    ports: Mapping[Protocol, Ranges] = field(default_factory=dict)
    ports_per_host: int = 0
    args: tuple[str, ...] = ()
    has_ports: bool = False  # some port is scanned (or, of a report, has a verdict)

    @classmethod
    def from_scan(
        cls,
        method: ScanMethod,
        started: _dt.datetime,
        ports: Mapping[Protocol, Sequence[int]],
        args: Sequence[str] = (),
    ) -> ScanHeader:
        """The header of a scan about to run, from its port lists (``Scanner.ports``)."""
        return cls(
            method=method,
            started=started,
            protocols=tuple(ports),
            ports={protocol: ranges_of(numbers) for protocol, numbers in ports.items()},
            ports_per_host=sum(len(set(numbers)) for numbers in ports.values()),
            args=tuple(args),
            has_ports=any(ports.values()),
        )

    @classmethod
    def from_scanner(cls, scanner: RunningScan, args: Sequence[str] = ()) -> ScanHeader:
        """The header of a running Scanner (``async with`` entered): its first method,
        its start and its port lists; OutputError before it has started."""
        started = scanner.started_at
        if started is None:
            raise OutputError("the scan has not started: enter 'async with Scanner(...)' first")
        method = next(iter(scanner.methods), ScanMethod.PING)
        return cls.from_scan(method, started, scanner.ports, args)

    @classmethod
    def from_report(cls, report: ScanReport) -> ScanHeader:
        """The header of a finished report: the report keeps verdicts, not the port
        list, so every port some host has a verdict on (listed or folded) was scanned."""
        return cls(
            method=report.method,
            started=report.started,
            protocols=report.protocols,
            ports={p: _scanned_ranges(report.hosts, p) for p in report.protocols},
            ports_per_host=report.ports_per_host,
            args=report.args,
            has_ports=any(h.ports or h.extra_ports for h in report.hosts),
        )

    @property
    def scans_ports(self) -> bool:
        """False for a ping scan (-sn), which probes no ports."""
        if self.method is ScanMethod.PING:
            return False
        return self.ports_per_host > 0 or self.has_ports


def _scanned_ranges(hosts: Iterable[HostResult], protocol: Protocol) -> Ranges:
    listed: set[int] = set()
    folded: list[tuple[int, int]] = []
    for host in hosts:
        columns = columns_of(host)
        if columns.one_protocol():
            if columns.protocols[:1] == (protocol,):
                listed.update(columns.numbers)
        else:
            listed.update(compress(columns.numbers, map(is_, columns.protocols, repeat(protocol))))
        for state in host.extra_ports:
            for group in state.reasons:
                if group.protocol is protocol:
                    folded.extend(group.ranges)
    return merge_ranges(chain(ranges_of(listed), folded))


def only_open_host(host: HostResult) -> HostResult | None:
    """``--open`` for one host: its open and open|filtered ports (listed or folded),
    or None when it has none."""
    ports = tuple(p for p in host.ports if p.state in OPEN_STATES)
    extra = tuple(f for f in host.extra_ports if f.state in OPEN_STATES)
    if not ports and not extra:
        return None
    return dataclasses.replace(host, ports=ports, extra_ports=extra)


def every_port(host: HostResult) -> HostResult:
    """``--all-ports`` for one host: the folded ports listed again, one by one."""
    if not host.extra_ports:
        return host
    return dataclasses.replace(host, ports=tuple(host.all_ports()), extra_ports=())


class ReportWriter:
    """One output being written: ``begin``, ``host`` per host, ``end``; each call's text
    is written to ``out`` and flushed. Subclasses give the text (``begin_text``,
    ``host_text``, ``end_text``).

    ``open_only`` is ``--open``; ``reason`` adds the human table's REASON column;
    ``all_ports`` lists every port instead of folding (``--all-ports``). Raises
    OutputError (naming ``name``, by default ``out``'s) when ``out`` cannot be
    written; BrokenPipeError as itself, for the caller to decide.
    """

    # Whether the format shows --open's filtered host (the table does it itself).
    filters_open = True

    def __init__(
        self,
        out: IO[str],
        *,
        open_only: bool = False,
        reason: bool = False,
        all_ports: bool = False,
        name: str | None = None,
    ) -> None:
        self.out = out
        self.name = name or str(getattr(out, "name", "the stream"))
        self.open_only = open_only
        self.reason = reason
        self.all_ports = all_ports
        self.header: ScanHeader | None = None
        self.hosts_total = 0
        self.hosts_up = 0
        self.ended = False

    def begin(self, header: ScanHeader) -> None:
        self.header = header
        self._write(self.begin_text(header))

    def host(self, host: HostResult) -> None:
        if self.header is None:
            raise OutputError("a report writer needs begin() before host()")
        self.hosts_total += 1
        self.hosts_up += host.state is HostState.UP
        shown: HostResult | None = host
        if self.open_only and self.filters_open:
            shown = only_open_host(host)
        if shown is not None:
            self._write(self.host_text(shown))

    def end(self, report: ScanReport) -> None:
        """Close the output; ``report`` gives the elapsed time, the probes and whether
        the scan was interrupted (its hosts are not read: they came through host())."""
        if self.header is None or self.ended:
            return
        self.ended = True
        self._write(self.end_text(report))

    def begin_text(self, header: ScanHeader) -> str:
        raise NotImplementedError

    def host_text(self, host: HostResult) -> str:
        raise NotImplementedError

    def end_text(self, report: ScanReport) -> str:
        raise NotImplementedError

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from None


def write_whole(report: ScanReport, writer: ReportWriter) -> None:
    """``report`` through ``writer``: begin, every host, end."""
    writer.begin(ScanHeader.from_report(report))
    for host in report.hosts:
        writer.host(host)
    writer.end(report)


def render_whole(report: ScanReport, make: Callable[[IO[str], float], ReportWriter]) -> str:
    """The text ``make(out, end)``'s writer leaves for ``report`` (``end``: the Unix time
    the report ended, which XML gives each host), the formats sharing what they derive
    from each host (:func:`~portlib.output.columns.sharing`)."""
    out = io.StringIO()
    end = report.started.timestamp() + report.elapsed
    with sharing():
        write_whole(report, make(out, end))
    return out.getvalue()
