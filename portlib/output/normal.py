"""The human report, laid out like nmap's normal output (``-oN``), whole or host by host.

Like nmap, ports in a non-open state that
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
from collections.abc import Iterable
from itertools import compress
from operator import not_
from typing import IO, Any

from portlib.folding import fold_ports
from portlib.model import (
    FoldedPorts,
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanReport,
)
from portlib.output.portsummary import host_has_state, summary_of
from portlib.output.sharedtext import plural
from portlib.output.stream import ReportWriter, ScanHeader, render_whole
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


def _not_shown(state: PortState, protocol: Protocol, reasons: list[tuple[Reason, int]]) -> str:
    count = sum(n for _, n in reasons)
    if len(reasons) == 1:
        why = reasons[0][0].value
    else:  # commonest first, ties by name (a folded host no longer knows their order)
        ordered = sorted(reasons, key=lambda rn: (-rn[1], rn[0].value))
        why = ", ".join(f"{n} {reason.value}" for reason, n in ordered)
    noun = "port" if count == 1 else "ports"
    return f"{count} {state.value} {protocol.value} {noun} ({why})"


def _not_shown_parts(folded: Iterable[FoldedPorts]) -> list[str]:
    """One ``Not shown`` part per (state, protocol), most ports first."""
    groups: dict[tuple[PortState, Protocol], dict[Reason, int]] = {}
    for state in folded:
        for group in state.reasons:
            reasons = groups.setdefault((state.state, group.protocol), {})
            reasons[group.reason] = reasons.get(group.reason, 0) + group.count
    parts = sorted(
        groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0][1].value, kv[0][0].value)
    )
    return [_not_shown(state, protocol, list(why.items())) for (state, protocol), why in parts]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [" ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _host_lines(
    host: HostResult, *, open_only: bool, reason: bool, ping_only: bool, all_ports: bool
) -> list[str]:
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
    if not host.ports and not host.extra_ports:
        lines.append(f"No ports of {host_title(host)} were decided.")
        return lines
    # States folded into "Not shown": nmap decides per state, across protocols, by the
    # same rule as the XML and grepable outputs (portsummary), so all three agree.
    summary = summary_of(host, all_ports=all_ports)
    shown = summary.shown
    folded = summary.folded
    if open_only:
        is_hidden = [p.state not in _SHOWN_WITH_OPEN_ONLY for p in shown]
        if any(is_hidden):
            hidden = list(compress(shown, is_hidden))
            shown = tuple(compress(shown, map(not_, is_hidden)))
            folded += fold_ports(hidden, ignore_above=-1)[1]  # every state but open
    if not shown:
        total = len(host.ports) + sum(f.count for f in host.extra_ports)
        lines.append(f"All {total} scanned ports on {host_title(host)} are in ignored states.")
    if folded:
        lines.append("Not shown: " + ", ".join(_not_shown_parts(folded)))
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
    all_ports: bool = False,
) -> str:
    """The report as nmap-style text; ``open_only`` is ``--open``, ``reason`` adds a REASON column.

    ``banner=False`` leaves out the first line (:func:`banner_line`), which the CLI
    prints when the scan starts, as nmap does.
    """
    options = {"open_only": open_only, "reason": reason, "all_ports": all_ports}
    return render_whole(report, lambda out, _end: NormalWriter(out, banner=banner, **options))


def banner_line(started: _dt.datetime) -> str:
    """``Starting portlib 0.1.0 at 2026-11-28 00:10 UTC``: the first line of the report."""
    from portlib.version import __version__

    return f"Starting portlib {__version__} at {started.strftime('%Y-%m-%d %H:%M %Z').strip()}"


class NormalWriter(ReportWriter):
    """The human report host by host: each up host's block as it finishes, the
    interrupt warning and the totals at the end."""

    filters_open = False  # the table hides closed ports itself, in its "Not shown" line

    def __init__(self, out: IO[str], *, banner: bool = True, **options: Any) -> None:
        super().__init__(out, **options)
        self.banner = banner
        self.ping_only = False

    def begin_text(self, header: ScanHeader) -> str:
        self.ping_only = not header.scans_ports
        return banner_line(header.started) + "\n" if self.banner else ""

    def host_text(self, host: HostResult) -> str:
        if host.state is not HostState.UP:
            return ""  # as nmap, down hosts are only counted
        ping_only = self.ping_only
        if self.open_only and not ping_only and not host_has_state(host, _SHOWN_WITH_OPEN_ONLY):
            return ""
        lines = _host_lines(
            host,
            open_only=self.open_only,
            reason=self.reason,
            ping_only=ping_only,
            all_ports=self.all_ports,
        )
        if not ping_only:  # nmap's -sn lists hosts without blank lines between them
            lines.append("")
        return "\n".join(lines) + "\n"

    def end_text(self, report: ScanReport) -> str:
        lines = []
        if report.interrupted:
            lines.append("WARNING: the scan was interrupted; the results above are partial.")
        elif not self.hosts_up and self.hosts_total:
            lines.append(
                "Note: Host seems down. If it is really up, but blocking our ping probes, try -Pn"
            )
        lines.append(
            f"portlib done: {plural(self.hosts_total, 'IP address', 'IP addresses')} "
            f"({plural(self.hosts_up, 'host', 'hosts')} up) scanned in {report.elapsed:.2f}"
            " seconds"
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
