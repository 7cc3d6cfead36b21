"""Pure: turn what a scan learned (host verdicts, port verdicts) into a ScanReport.

Hosts come out in target order, each host's ports ascending (by port, then
protocol, as nmap lists them). Hosts discovery never decided (the scan was
interrupted first) are reported ``unknown``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from portlib.model import (
    HostResult,
    HostState,
    IPAddress,
    PortResult,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)


@dataclass(frozen=True, slots=True)
class HostStatus:
    """Discovery's verdict on one host; ``latency`` is the answer's RTT when measured."""

    state: HostState
    reason: Reason
    latency: float | None = None


UNDECIDED = HostStatus(HostState.UNKNOWN, Reason.NO_RESPONSE)
_BY_PORT = attrgetter("port")  # one protocol: the port alone orders them


def _port_key(result: PortResult) -> tuple[int, bool]:
    return (result.port, result.protocol is not Protocol.TCP)  # 53/tcp before 53/udp


def build_report(
    targets: Sequence[tuple[IPAddress, str | None]],
    statuses: Mapping[IPAddress, HostStatus],
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
    """The report of a scan of ``targets`` (address, hostname), in that order.

    Port results of hosts that are not up are left out: a down host has no ports.
    """
    by_host: dict[IPAddress, list[PortResult]] = {}
    for result in results:
        by_host.setdefault(result.host, []).append(result)
    hosts = []
    for address, hostname in targets:
        status = statuses.get(address, UNDECIDED)
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
