"""Frozen copies of the report builder and renderers as they were before their speed work
(commit 3a35b0b), kept only as the oracle of ``test_output_speedpaths.py``: the fast code
must produce byte-identical text and equal values. Do not "fix" or speed these up.
Deliberate changes since (issue 13, outputs written host by host): the normal
output's interrupt warning comes at the end, its table lists ports as the other
formats do (TCP then UDP, ascending), and "Not shown" orders tied reasons by name
(a folded host no longer knows which came first).

Helpers that are not on a per-port path (titles, time stamps, quoting, escaping one
cell) are imported from the live modules; everything that walks ports is copied.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

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
from portlib.output.grepable import _clean, service_field
from portlib.output.nmapxml import _comment, _q
from portlib.output.normal import format_seconds, host_title, service_cell
from portlib.output.sharedtext import command_line, nmap_time, plural
from portlib.scanning.report import UNDECIDED, HostStatus

# ------------------------------------------------------------------ portsummary


@dataclass(frozen=True, slots=True)
class ReasonGroup:
    reason: Reason
    protocol: Protocol
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IgnoredState:
    state: PortState
    count: int
    reasons: tuple[ReasonGroup, ...]


@dataclass(frozen=True, slots=True)
class PortSummary:
    shown: tuple[PortResult, ...]
    ignored: tuple[IgnoredState, ...]


_PROTOCOL_ORDER: dict[Protocol, int] = {Protocol.TCP: 0, Protocol.UDP: 1, Protocol.RAW: 2}


def port_order(result: PortResult) -> tuple[int, int]:
    return (_PROTOCOL_ORDER.get(result.protocol, len(_PROTOCOL_ORDER)), result.port)


def summarise(ports: Sequence[PortResult], ignore_above: int = 25) -> PortSummary:
    counts: dict[PortState, int] = {}
    for p in ports:
        counts[p.state] = counts.get(p.state, 0) + 1
    ignored_states = {
        state
        for state, count in counts.items()
        if state is not PortState.OPEN and count > ignore_above
    }
    ordered = sorted(ports, key=port_order)
    shown = tuple(p for p in ordered if p.state not in ignored_states)
    groups: dict[PortState, dict[tuple[Reason, Protocol], list[int]]] = {}
    for p in ordered:
        if p.state in ignored_states:
            groups.setdefault(p.state, {}).setdefault((p.reason, p.protocol), []).append(p.port)
    ignored = []
    for state, by_reason in groups.items():
        reasons = [
            ReasonGroup(reason, protocol, tuple(nums))
            for (reason, protocol), nums in by_reason.items()
        ]
        reasons.sort(key=lambda g: (-len(g.ports), _PROTOCOL_ORDER.get(g.protocol, 9), g.reason))
        ignored.append(IgnoredState(state, counts[state], tuple(reasons)))
    ignored.sort(key=lambda s: (-s.count, s.state))
    return PortSummary(shown, tuple(ignored))


def compress_ports(ports: Iterable[int]) -> str:
    nums = sorted(set(ports))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


# ------------------------------------------------------------------ build_report

_BY_PORT = attrgetter("port")


def _port_key(result: PortResult) -> tuple[int, bool]:
    return (result.port, result.protocol is not Protocol.TCP)


def build_report(
    targets,
    statuses: Mapping,
    results: Iterable[PortResult],
    *,
    method: ScanMethod,
    protocols: tuple[Protocol, ...],
    started: _dt.datetime,
    elapsed: float,
    ports_per_host: int = 0,
    args: tuple[str, ...] = (),
    interrupted: bool = False,
    probes_sent: int = 0,
) -> ScanReport:
    by_host: dict = {}
    for result in results:
        by_host.setdefault(result.host, []).append(result)
    hosts = []
    for address, hostname in targets:
        status: HostStatus = statuses.get(address, UNDECIDED)
        ports: tuple[PortResult, ...] = ()
        if status.state is HostState.UP:
            key = _port_key if len(protocols) > 1 else _BY_PORT
            ports = tuple(sorted(by_host.get(address, ()), key=key))
        latency = status.latency
        if latency is None and status.state is HostState.UP:
            rtts = [p.rtt for p in ports if p.rtt is not None]
            latency = min(rtts) if rtts else None
        hosts.append(
            HostResult(
                address=address,
                hostname=hostname,
                state=status.state,
                reason=status.reason,
                ports=ports,
                latency=latency,
            )
        )
    return ScanReport(
        hosts=tuple(hosts),
        method=method,
        started=started,
        elapsed=elapsed,
        protocols=protocols,
        ports_per_host=ports_per_host,
        args=args,
        interrupted=interrupted,
        probes_sent=probes_sent,
    )


# ------------------------------------------------------------------ normal

_SHOWN_WITH_OPEN_ONLY = frozenset({PortState.OPEN, PortState.OPEN_FILTERED})


def _ignored_states(ports: tuple[PortResult, ...]) -> set[PortState]:
    return {group.state for group in summarise(ports).ignored}


def _not_shown(ports: list[PortResult], state: PortState, protocol: Protocol) -> str:
    reasons = Counter(p.reason.value for p in ports)
    if len(reasons) == 1:
        why = next(iter(reasons))
    else:
        ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        why = ", ".join(f"{n} {reason}" for reason, n in ordered)
    noun = "port" if len(ports) == 1 else "ports"
    return f"{len(ports)} {state.value} {protocol.value} {noun} ({why})"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [" ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _normal_host_lines(
    host: HostResult, *, open_only: bool, reason: bool, ping_only: bool
) -> list[str]:
    lines = [f"portlib scan report for {host_title(host)}"]
    received = f", received {host.reason.value}" if reason else ""
    if host.latency is not None:
        lines.append(f"Host is up{received} ({format_seconds(host.latency)}s latency).")
    else:
        lines.append(f"Host is up{received}.")
    if ping_only:
        return lines
    if not host.ports:
        lines.append(f"No ports of {host_title(host)} were decided.")
        return lines
    ignored = _ignored_states(host.ports)
    hidden: dict[tuple[PortState, Protocol], list[PortResult]] = {}
    shown: list[PortResult] = []
    for port in sorted(host.ports, key=port_order):
        key = (port.state, port.protocol)
        if port.state in ignored or (open_only and port.state not in _SHOWN_WITH_OPEN_ONLY):
            hidden.setdefault(key, []).append(port)
        else:
            shown.append(port)
    if not shown:
        lines.append(
            f"All {len(host.ports)} scanned ports on {host_title(host)} are in ignored states."
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
                service_cell(port),
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
    from portlib import __version__

    started = report.started.strftime("%Y-%m-%d %H:%M %Z").strip()
    lines = [header or f"Starting portlib {__version__} at {started}"]
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
        lines.extend(
            _normal_host_lines(host, open_only=open_only, reason=reason, ping_only=ping_only)
        )
        if not ping_only:
            lines.append("")
    if report.interrupted:
        lines.append("WARNING: the scan was interrupted; the results above are partial.")
    if not up and report.hosts and not report.interrupted:
        lines.append(
            "Note: Host seems down. If it is really up, but blocking our ping probes, try -Pn"
        )
    lines.append(
        f"portlib done: {plural(len(report.hosts), 'IP address', 'IP addresses')} "
        f"({plural(len(up), 'host', 'hosts')} up) scanned in {report.elapsed:.2f} seconds"
    )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ grepable


def to_grepable(report: ScanReport) -> str:
    from portlib import __version__

    started = nmap_time(report.started)
    ended = nmap_time(report.started + _dt.timedelta(seconds=report.elapsed))
    lines = [
        f"# portlib {__version__} scan initiated {started} as: {_clean(command_line(report.args))}"
    ]
    for host in report.hosts:
        lines.extend(_grepable_host_lines(host))
    up = sum(1 for h in report.hosts if h.state is HostState.UP)
    note = " (interrupted)" if report.interrupted else ""
    lines.append(
        f"# portlib done at {ended} -- {plural(len(report.hosts), 'IP address', 'IP addresses')}"
        f" ({plural(up, 'host up', 'hosts up')}) scanned in {report.elapsed:.2f} seconds{note}"
    )
    return "\n".join(lines) + "\n"


def _grepable_host_lines(host: HostResult) -> list[str]:
    def entry(port: PortResult) -> str:
        service = service_field(port.service)
        return f"{port.port}/{port.state.value}/{port.protocol.value}//{service}///"

    prefix = f"Host: {host.address} ({_clean(host.hostname or '')})"
    lines = [f"{prefix}\tStatus: {host.state.value.capitalize()}"]
    if host.state is not HostState.UP or not host.ports:
        return lines
    summary = summarise(host.ports)
    line = f"{prefix}\tPorts: " + ", ".join(entry(p) for p in summary.shown)
    if len(summary.ignored) == 1:
        (ignored,) = summary.ignored
        line += f"\tIgnored State: {ignored.state.value} ({ignored.count})"
    lines.append(line)
    return lines


# ------------------------------------------------------------------ nmap XML (writer)

_TCP_SCAN_TYPE: dict[ScanMethod, str] = {
    ScanMethod.CONNECT: "connect",
    ScanMethod.SYN: "syn",
    ScanMethod.ACK: "ack",
}


def to_nmap_xml(report: ScanReport) -> str:
    from portlib import __version__
    from portlib.output.nmapxml import XML_OUTPUT_VERSION

    start = int(report.started.timestamp())
    end = int(report.started.timestamp() + report.elapsed)
    startstr = nmap_time(report.started)
    endstr = nmap_time(report.started + _dt.timedelta(seconds=report.elapsed))
    args = command_line(report.args)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE nmaprun>",
        f"<!-- portlib {_comment(__version__)} scan initiated {startstr} as: {_comment(args)} -->",
        f"<nmaprun scanner={_q('nmap')} args={_q(args)} start={_q(start)}"
        f" startstr={_q(startstr)} version={_q(__version__)} profile_name={_q('portlib')}"
        f" xmloutputversion={_q(XML_OUTPUT_VERSION)}>",
    ]
    out.extend(_scaninfo(report))
    out.append('<verbose level="0"/>')
    out.append('<debugging level="0"/>')
    for host in report.hosts:
        out.append(_xml_host(host, start, end))
    up = sum(1 for h in report.hosts if h.state is HostState.UP)
    total = len(report.hosts)
    summary = (
        f"portlib done at {endstr}; {plural(total, 'IP address', 'IP addresses')}"
        f" ({plural(up, 'host up', 'hosts up')}) scanned in {report.elapsed:.2f} seconds"
    )
    exit_attrs = (
        f" exit={_q('error')} errormsg={_q('interrupted before every port was decided')}"
        if report.interrupted
        else f" exit={_q('success')}"
    )
    out.append(
        f"<runstats><finished time={_q(end)} timestr={_q(endstr)} summary={_q(summary)}"
        f" elapsed={_q(f'{report.elapsed:.2f}')}{exit_attrs}/>"
        f"<hosts up={_q(up)} down={_q(total - up)} total={_q(total)}/>"
    )
    out.append("</runstats>")
    out.append("</nmaprun>")
    return "\n".join(out) + "\n"


def _scaninfo(report: ScanReport):
    if report.method is ScanMethod.PING:
        return
    for protocol in report.protocols:
        if protocol is Protocol.UDP:
            scan_type = "udp"
        elif protocol is Protocol.TCP:
            scan_type = _TCP_SCAN_TYPE.get(report.method, "connect")
        else:
            continue
        ports = {p.port for h in report.hosts for p in h.ports if p.protocol is protocol}
        numservices = len(ports) or report.ports_per_host
        yield (
            f"<scaninfo type={_q(scan_type)} protocol={_q(protocol.value)}"
            f" numservices={_q(numservices)} services={_q(compress_ports(ports))}/>"
        )


def _xml_host(host: HostResult, start: int, end: int) -> str:
    addrtype = "ipv6" if host.address.version == 6 else "ipv4"
    lines = [
        f"<host starttime={_q(start)} endtime={_q(end)}><status state={_q(host.state.value)}"
        f" reason={_q(host.reason.value)} reason_ttl={_q(0)}/>",
        f"<address addr={_q(str(host.address))} addrtype={_q(addrtype)}/>",
        "<hostnames>",
    ]
    if host.hostname:
        lines.append(f"<hostname name={_q(host.hostname)} type={_q('user')}/>")
    lines.append("</hostnames>")
    if host.ports:
        summary = summarise(host.ports)
        ports_xml = ["<ports>"]
        for ignored in summary.ignored:
            ports_xml.append(
                f"<extraports state={_q(ignored.state.value)} count={_q(ignored.count)}>\n"
            )
            for group in ignored.reasons:
                ports_xml.append(
                    f"<extrareasons reason={_q(group.reason.value)} count={_q(len(group.ports))}"
                    f" proto={_q(group.protocol.value)} ports={_q(compress_ports(group.ports))}"
                    "/>\n"
                )
            ports_xml.append("</extraports>\n")
        for port in summary.shown:
            ports_xml.append(_xml_port(port))
        ports_xml.append("</ports>")
        lines.append("".join(ports_xml))
    lines.append("</host>")
    return "\n".join(lines)


def _xml_port(port: PortResult) -> str:
    service = ""
    if port.service:
        service = f"<service name={_q(port.service)} method={_q('table')} conf={_q(3)}/>"
    return (
        f"<port protocol={_q(port.protocol.value)} portid={_q(port.port)}>"
        f"<state state={_q(port.state.value)} reason={_q(port.reason.value)}"
        f" reason_ttl={_q(0)}/>{service}</port>\n"
    )
