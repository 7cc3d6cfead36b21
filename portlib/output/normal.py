"""The human report, laid out like nmap's normal output (``-oN``).

A pure function of a ScanReport. Like nmap, ports in a non-open state that
more than ``IGNORE_ABOVE`` (25) ports of a host share are folded into one "Not shown"
line, down hosts are left out when some host is up, and open ports are never
folded.

    portlib scan report for localhost (127.0.0.1)
    Host is up (0.000090s latency).
    Not shown: 998 closed tcp ports (conn-refused)
    PORT    STATE SERVICE
    22/tcp  open  ssh
    631/tcp open  ipp
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter
from collections.abc import Iterable
from itertools import compress, repeat
from operator import and_, is_, not_

from portlib.folding import count_members, folded_states, is_one_of
from portlib.model import (
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)
from portlib.output.columns import PortColumns, columns_of, sharing
from portlib.output.sharedtext import plural
from portlib.textsafe import printable

_SHOWN_WITH_OPEN_ONLY = frozenset({PortState.OPEN, PortState.OPEN_FILTERED})


def format_seconds(value: float) -> str:
    """Two significant digits in plain notation: 0.000087, 0.0012, 0.12, 1.5."""
    if value <= 0:
        return "0.00"
    digits = max(1, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


def host_title(host: HostResult) -> str:
    """``name (address)``, or the address alone; the name printable on a terminal."""
    if host.hostname and host.hostname != str(host.address):
        return f"{printable(host.hostname)} ({host.address})"
    return str(host.address)


def service_cell(port: PortResult) -> str:
    """The SERVICE column: the name (printable on a terminal), or ``unknown``; after
    service detection nmap's ``ssl/http`` form."""
    if port.detected is not None:
        return printable(port.detected.service_text())
    return printable(port.service) if port.service else "unknown"


def version_cell(port: PortResult) -> str:
    """The VERSION column (``-sV``): product, version, (extra info), printable."""
    return printable(port.detected.version_text()) if port.detected is not None else ""


def _not_shown(reasons: tuple[Reason, ...], state: PortState, protocol: Protocol) -> str:
    if reasons.count(reasons[0]) == len(reasons):
        why = reasons[0].value
    else:  # commonest first; ties in the order the reasons first appear
        why = ", ".join(f"{n} {reason.value}" for reason, n in Counter(reasons).most_common())
    noun = "port" if len(reasons) == 1 else "ports"
    return f"{len(reasons)} {state.value} {protocol.value} {noun} ({why})"


def _hidden_groups(
    columns: PortColumns, states: list[PortState], is_hidden: list[bool]
) -> dict[tuple[PortState, Protocol], tuple[Reason, ...]]:
    """The reasons of the hidden ports by (state, protocol), in the host's order;
    ``is_hidden`` is the mask of rows in any of ``states``."""
    protocols = list(count_members(columns.protocols))
    groups = {}
    for state in states:
        is_state = is_hidden if len(states) == 1 else list(map(is_, columns.states, repeat(state)))
        for protocol in protocols:
            mask: Iterable[bool] = is_state
            if len(protocols) > 1:
                mask = map(and_, is_state, map(is_, columns.protocols, repeat(protocol)))
            reasons = tuple(compress(columns.reasons, mask))
            if reasons:
                groups[(state, protocol)] = reasons
    return groups


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [" ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _host_lines(host: HostResult, *, open_only: bool, reason: bool, ping_only: bool) -> list[str]:
    lines = [f"portlib scan report for {host_title(host)}"]
    received = f", received {host.reason.value}" if reason else ""
    if host.latency is not None:
        lines.append(f"Host is up{received} ({format_seconds(host.latency)}s latency).")
    else:
        lines.append(f"Host is up{received}.")
    if ping_only:
        return lines
    if host.timed_out:
        lines.append(f"Skipping host {host_title(host)} due to host timeout")
        return lines
    if not host.ports:
        lines.append(f"No ports of {host_title(host)} were decided.")
        return lines
    # States folded into "Not shown": nmap decides per state, across protocols, by the
    # same rule as the XML and grepable outputs (portsummary), so all three agree.
    columns = columns_of(host)
    counts = columns.state_counts()
    hidden_states = folded_states(counts)
    if open_only:
        hidden_states += [
            s for s in counts if s not in _SHOWN_WITH_OPEN_ONLY and s not in hidden_states
        ]
    shown = list(columns.ports)
    hidden: dict[tuple[PortState, Protocol], tuple[Reason, ...]] = {}
    if hidden_states:
        is_hidden = is_one_of(columns.states, hidden_states)
        shown = list(compress(columns.ports, map(not_, is_hidden)))
        hidden = _hidden_groups(columns, hidden_states, is_hidden)
    if not shown:
        lines.append(
            f"All {len(host.ports)} scanned ports on {host_title(host)} are in ignored states."
        )
    if hidden:
        parts = sorted(hidden.items(), key=lambda kv: (-len(kv[1]), kv[0][1].value, kv[0][0].value))
        lines.append(
            "Not shown: " + ", ".join(_not_shown(why, st, proto) for (st, proto), why in parts)
        )
    if shown:
        versions = any(port.detected is not None for port in shown)  # -sV ran
        header = ["PORT", "STATE", "SERVICE"] + (["REASON"] if reason else [])
        rows = [header + (["VERSION"] if versions else [])]
        for port in shown:
            row = [
                f"{port.port}/{port.protocol.value}",
                port.state.value,
                service_cell(port),
            ]
            if reason:
                row.append(port.reason.value)
            if versions:
                row.append(version_cell(port))
            rows.append(row)
        lines.extend(_table(rows))
    return lines


def render_normal(
    report: ScanReport,
    *,
    open_only: bool = False,
    reason: bool = False,
    banner: bool = True,
) -> str:
    """The report as nmap-style text; ``open_only`` is ``--open``, ``reason`` adds a REASON column.

    ``banner=False`` leaves out the first line (:func:`banner_line`), which the CLI
    prints when the scan starts, as nmap does.
    """
    with sharing():
        return _render_normal(report, open_only=open_only, reason=reason, banner=banner)


def banner_line(started: _dt.datetime) -> str:
    """``Starting portlib 0.1.0 at 2026-11-28 00:10 UTC``: the first line of the report."""
    from portlib.version import __version__

    return f"Starting portlib {__version__} at {started.strftime('%Y-%m-%d %H:%M %Z').strip()}"


def _render_normal(report: ScanReport, *, open_only: bool, reason: bool, banner: bool) -> str:
    lines = [banner_line(report.started)] if banner else []
    if report.interrupted:
        lines.append("WARNING: the scan was interrupted; the results below are partial.")
    ping_only = report.method is ScanMethod.PING or (
        report.ports_per_host == 0 and not any(h.ports for h in report.hosts)
    )
    up = [h for h in report.hosts if h.state is HostState.UP]
    for host in up:
        if (
            open_only
            and not ping_only
            and _SHOWN_WITH_OPEN_ONLY.isdisjoint(columns_of(host).states)
        ):
            continue
        lines.extend(_host_lines(host, open_only=open_only, reason=reason, ping_only=ping_only))
        if not ping_only:  # nmap's -sn lists hosts without blank lines between them
            lines.append("")
    if not up and report.hosts and not report.interrupted:
        lines.append(
            "Note: Host seems down. If it is really up, but blocking our ping probes, try -Pn"
        )
    lines.append(
        f"portlib done: {plural(len(report.hosts), 'IP address', 'IP addresses')} "
        f"({plural(len(up), 'host', 'hosts')} up) scanned in {report.elapsed:.2f} seconds"
    )
    return "\n".join(lines) + "\n"


def render_list(report: ScanReport, *, banner: bool = True) -> str:
    """``-sL``: one line per target and no verdicts, as nmap's list scan prints them.

    >>> from ipaddress import ip_address
    >>> from portlib.model import Reason
    >>> host = HostResult(ip_address("192.0.2.1"), None, HostState.UNKNOWN, Reason.USER_SET)
    >>> report = ScanReport((host,), ScanMethod.PING, _dt.datetime(2026, 1, 1), 0.0, ())
    >>> print(render_list(report, banner=False), end="")
    portlib scan report for 192.0.2.1
    portlib done: 1 IP address (0 hosts up) scanned in 0.00 seconds
    """
    lines = [banner_line(report.started)] if banner else []
    lines.extend(f"portlib scan report for {host_title(host)}" for host in report.hosts)
    lines.append(
        f"portlib done: {plural(len(report.hosts), 'IP address', 'IP addresses')}"
        f" (0 hosts up) scanned in {report.elapsed:.2f} seconds"
    )
    return "\n".join(lines) + "\n"
