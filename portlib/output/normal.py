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

import math
from collections import Counter

from portlib.model import (
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    ScanMethod,
    ScanReport,
)
from portlib.output.portsummary import summarise

_SHOWN_WITH_OPEN_ONLY = frozenset({PortState.OPEN, PortState.OPEN_FILTERED})


def format_seconds(value: float) -> str:
    """Two significant digits in plain notation: 0.000087, 0.0012, 0.12, 1.5."""
    if value <= 0:
        return "0.00"
    digits = max(1, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _host_title(host: HostResult) -> str:
    if host.hostname and host.hostname != str(host.address):
        return f"{host.hostname} ({host.address})"
    return str(host.address)


def _ignored_states(ports: tuple[PortResult, ...]) -> set[PortState]:
    """States folded into "Not shown": nmap decides per state, across protocols.

    The same rule as the XML and grepable outputs (``portsummary.summarise``),
    so all three show the same ports.
    """
    return {group.state for group in summarise(ports).ignored}


def _not_shown(ports: list[PortResult], state: PortState, protocol: Protocol) -> str:
    reasons = Counter(p.reason.value for p in ports)
    if len(reasons) == 1:
        why = next(iter(reasons))
    else:
        why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    noun = "port" if len(ports) == 1 else "ports"
    return f"{len(ports)} {state.value} {protocol.value} {noun} ({why})"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [" ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _host_lines(host: HostResult, *, open_only: bool, reason: bool, ping_only: bool) -> list[str]:
    lines = [f"portlib scan report for {_host_title(host)}"]
    received = f", received {host.reason.value}" if reason else ""
    if host.latency is not None:
        lines.append(f"Host is up{received} ({format_seconds(host.latency)}s latency).")
    else:
        lines.append(f"Host is up{received}.")
    if ping_only:
        return lines
    if not host.ports:
        lines.append(f"No ports of {_host_title(host)} were decided.")
        return lines
    ignored = _ignored_states(host.ports)
    hidden: dict[tuple[PortState, Protocol], list[PortResult]] = {}
    shown: list[PortResult] = []
    for port in host.ports:
        key = (port.state, port.protocol)
        if port.state in ignored or (open_only and port.state not in _SHOWN_WITH_OPEN_ONLY):
            hidden.setdefault(key, []).append(port)
        else:
            shown.append(port)
    if not shown:
        lines.append(
            f"All {len(host.ports)} scanned ports on {_host_title(host)} are in ignored states."
        )
    if hidden:
        parts = sorted(hidden.items(), key=lambda kv: (-len(kv[1]), kv[0][1].value, kv[0][0].value))
        lines.append(
            "Not shown: " + ", ".join(_not_shown(ps, st, proto) for (st, proto), ps in parts)
        )
    if shown:
        header = ["PORT", "STATE", "SERVICE"] + (["REASON"] if reason else [])
        rows = [header]
        for port in shown:
            row = [
                f"{port.port}/{port.protocol.value}",
                port.state.value,
                port.service or "unknown",
            ]
            if reason:
                row.append(port.reason.value)
            rows.append(row)
        lines.extend(_table(rows))
    return lines


def render_normal(
    report: ScanReport,
    *,
    open_only: bool = False,
    reason: bool = False,
    header: str | None = None,
) -> str:
    """The report as nmap-style text; ``open_only`` is ``--open``, ``reason`` adds a REASON column.

    ``header`` replaces the first line ("Starting portlib ... at ...").
    """
    from portlib import __version__

    started = report.started.strftime("%Y-%m-%d %H:%M %Z").strip()
    lines = [header or f"Starting portlib {__version__} at {started}"]
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
            and not any(p.state in _SHOWN_WITH_OPEN_ONLY for p in host.ports)
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
        f"portlib done: {_plural(len(report.hosts), 'IP address', 'IP addresses')} "
        f"({_plural(len(up), 'host')} up) scanned in {report.elapsed:.2f} seconds"
    )
    return "\n".join(lines) + "\n"
