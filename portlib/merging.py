"""Pure: join the reports of one scan's shards (``--shard I/N``) into the report of the whole.

Shards of one scan share the target list and the ports and split the host x port
space between them, so each shard report lists every host with part of its ports.
Merging them gives what the unsharded scan would have reported:

    >>> import portlib
    >>> parts = [portlib.load_report(f"part{i}.xml") for i in (1, 2, 3)]  # doctest: +SKIP
    >>> whole = portlib.merge_reports(*parts)                                 # doctest: +SKIP
    >>> len(whole.hosts) == len(parts[0].hosts)                               # doctest: +SKIP
    True

The rules, one per field:

- hosts: in the first report's order, then those only later reports hold, in theirs;
- a host's state: up beats down beats unknown (:data:`HOST_STATE_PREFERENCE`); the
  reason and latency come from the first report with the winning state, the host name
  from the first report that has one; ``timed_out`` if any report gave up on it;
- port verdicts: the union by (port, protocol) of every verdict, listed or folded
  (``HostResult.all_ports()``). A verdict two reports both hold (they overlap, or were
  merged twice) is kept once: the more informative state wins
  (:data:`PORT_STATE_PREFERENCE`: an answer beats silence, one state beats a pair), and
  between equal states the first report's verdict, unless only a later one carries
  service detection (``detected``);
- the union is folded by nmap's rule (:func:`portlib.folding.fold_ports`), as a scan
  folds a finished host: a state other than open with more than 25 of the host's ports
  goes to ``extra_ports``, however the shards had it folded (``fold=False``: none is);
- a down host keeps no ports, as in a scanned report;
- ``probes_sent`` is the sum, ``started`` the earliest start, ``elapsed`` the span to the
  latest end, ``interrupted`` true if any report was; ``args`` are the first report's;
- ``ports_per_host`` is the largest: nmap's XML (``<scaninfo numservices>``) counts only
  the ports a report holds verdicts on, so a shard's XML file counts fewer.

Reports of different scans (another method, other protocols) are refused with a
:class:`~portlib.errors.ScanError`.
"""

from __future__ import annotations

from collections.abc import Iterable

from portlib.errors import ScanError
from portlib.folding import Shared, fold_ports
from portlib.model import (
    FoldedPorts,
    HostResult,
    HostState,
    IPAddress,
    PortResult,
    PortState,
    Protocol,
    ScanReport,
)

# Earlier wins. A host one shard saw up is up: its probes were answered there.
HOST_STATE_PREFERENCE: tuple[HostState, ...] = (HostState.UP, HostState.DOWN, HostState.UNKNOWN)

# Earlier wins: states that come from an answer (open, closed, unfiltered) before those
# from an ICMP error or silence (filtered), and single states before nmap's pairs.
PORT_STATE_PREFERENCE: tuple[PortState, ...] = (
    PortState.OPEN,
    PortState.CLOSED,
    PortState.UNFILTERED,
    PortState.FILTERED,
    PortState.OPEN_FILTERED,
    PortState.CLOSED_FILTERED,
)
_HOST_RANK = {state: rank for rank, state in enumerate(HOST_STATE_PREFERENCE)}
_PORT_RANK = {state: rank for rank, state in enumerate(PORT_STATE_PREFERENCE)}

PortKey = tuple[int, bool, Protocol]  # port, not TCP (53/tcp lists before 53/udp), protocol


def merge_reports(*reports: ScanReport, fold: bool = True) -> ScanReport:
    """The report of the whole scan whose parts (shards) are ``reports``; see the module doc.

    ``fold=False`` lists every verdict of each host instead (as a scan with ``fold=False``),
    the folded ones of the reports expanded.

    Example (two shards of one scan, each holding one of the host's two ports):

    >>> import datetime as dt
    >>> from ipaddress import ip_address
    >>> from portlib import HostResult, HostState, PortResult, PortState, Protocol
    >>> from portlib import Reason, ScanMethod, ScanReport, merge_reports
    >>> host = ip_address("192.0.2.10")
    >>> def shard(port, state, start):
    ...     verdict = PortResult(host, port, Protocol.TCP, state, Reason.SYN_ACK)
    ...     up = HostResult(host, None, HostState.UP, Reason.USER_SET, (verdict,))
    ...     return ScanReport((up,), ScanMethod.SYN, start, 2.0, ports_per_host=2,
    ...                       probes_sent=1)
    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> whole = merge_reports(shard(80, PortState.CLOSED, t0 + dt.timedelta(seconds=1)),
    ...                       shard(22, PortState.OPEN, t0))
    >>> [(p.port, str(p.state)) for p in whole.hosts[0].ports]
    [(22, 'open'), (80, 'closed')]
    >>> whole.probes_sent, whole.started == t0, whole.elapsed
    (2, True, 3.0)
    """
    if not reports:
        raise ScanError("nothing to merge: give at least one report")
    if not isinstance(fold, bool):
        raise ScanError(f"fold must be True or False, not {fold!r}")
    for report in reports:
        if not isinstance(report, ScanReport):
            raise ScanError(f"merge_reports takes ScanReports, not {type(report).__name__}")
    first = reports[0]
    for index, other in enumerate(reports[1:], start=2):
        _check_same_scan(first, other, index)
    shared: Shared = {}  # hosts folded alike share the fold's objects, as in a scan
    started = min(r.started for r in reports)
    # From the earliest start to the latest end; exact for a report that starts first.
    elapsed = max((r.started - started).total_seconds() + r.elapsed for r in reports)
    return ScanReport(
        hosts=tuple(
            _merge_host(views, shared if fold else None)
            for views in _views_by_host(reports).values()
        ),
        method=first.method,
        started=started,
        elapsed=elapsed,
        protocols=first.protocols,
        ports_per_host=max(r.ports_per_host for r in reports),
        args=first.args,
        interrupted=any(r.interrupted for r in reports),
        probes_sent=sum(r.probes_sent for r in reports),
    )


def _check_same_scan(first: ScanReport, other: ScanReport, index: int) -> None:
    """Refuse a report of another scan: its verdicts would not be shards of this one."""
    facts = (
        ("method", str(first.method), str(other.method)),
        ("protocols", _words(first.protocols), _words(other.protocols)),
    )
    for what, mine, theirs in facts:
        if mine != theirs:
            raise ScanError(
                f"report {index} is of a different scan: {what} {theirs}, "
                f"not {mine} as in report 1 (only shards of one scan merge)"
            )


def _words(protocols: Iterable[Protocol]) -> str:
    return ",".join(p.value for p in protocols) or "none"


def _views_by_host(reports: Iterable[ScanReport]) -> dict[IPAddress, list[HostResult]]:
    """Each address's HostResults across ``reports``, addresses in first-seen order."""
    views: dict[IPAddress, list[HostResult]] = {}
    for report in reports:
        for host in report.hosts:
            views.setdefault(host.address, []).append(host)
    return views


def _merge_host(views: list[HostResult], shared: Shared | None) -> HostResult:
    """One host as every report saw it, joined by the rules of the module doc; folded
    unless ``shared`` (the folds made so far) is None."""
    best = min(views, key=lambda h: _HOST_RANK[h.state])  # min keeps the first of equals
    hostname = next((h.hostname for h in views if h.hostname is not None), None)
    listed: tuple[PortResult, ...] = ()
    folded: tuple[FoldedPorts, ...] = ()
    if best.state is HostState.UP:
        verdicts = _merge_ports(p for h in views for p in h.all_ports())
        if shared is None:
            listed = tuple(verdicts)
        else:
            listed, folded = fold_ports(verdicts, shared=shared)
    return HostResult(
        address=best.address,
        hostname=hostname,
        state=best.state,
        reason=best.reason,
        ports=listed,
        latency=best.latency,
        timed_out=any(h.timed_out for h in views),
        extra_ports=folded,
    )


def _merge_ports(verdicts: Iterable[PortResult]) -> list[PortResult]:
    """One verdict per (port, protocol), ascending as a scan lists them (TCP first)."""
    kept: dict[PortKey, PortResult] = {}
    for verdict in verdicts:
        key = (verdict.port, verdict.protocol is not Protocol.TCP, verdict.protocol)
        held = kept.get(key)
        if held is None or _better(verdict, held):
            kept[key] = verdict
    return [kept[key] for key in sorted(kept)]


def _better(candidate: PortResult, held: PortResult) -> bool:
    """Whether a later report's ``candidate`` replaces the ``held`` verdict."""
    if candidate.state is not held.state:
        return _PORT_RANK[candidate.state] < _PORT_RANK[held.state]
    return held.detected is None and candidate.detected is not None


__all__ = ["HOST_STATE_PREFERENCE", "PORT_STATE_PREFERENCE", "merge_reports"]
