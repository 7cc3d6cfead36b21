"""Service detection on ports known open: many services at once, each on its own clock.

    >>> import portlib
    >>> found = portlib.detect_services([("192.0.2.10", 22), ("192.0.2.10", 443)])  # doctest: +SKIP
    >>> [(r.port, r.detected.name, r.detected.product) for r in found]  # doctest: +SKIP
    [(22, 'ssh', 'OpenSSH'), (443, 'http', 'nginx')]

Each service is one task holding at most one socket; a semaphore sized from the
process's descriptor budget (the connect engine's) bounds them, so a slow service only
ever holds its own slot. ``host_timeout`` bounds the time spent on one host's services;
a service cut short gets the best verdict reached so far.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import overload

from portlib.errors import ScanError, TargetSpecError
from portlib.model import (
    IPAddress,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanReport,
)
from portlib.scanning.versions.probes import probe_order, tcp_probes
from portlib.scanning.versions.session import Progress, TcpSession, Waits
from portlib.scanning.versions.udp import detect_udp, udp_payloads

DEFAULT_INTENSITY = 7
MAX_CONCURRENCY = 4096

PortLike = PortResult | tuple[str | IPAddress, int] | tuple[str | IPAddress, int, Protocol | str]


@dataclass(frozen=True, slots=True)
class DetectionOptions:
    """How hard and how long to try. ``rtt`` (seconds) sets every wait; None measures
    it from each service's own TCP connect (UDP then uses ``udp_rtt``)."""

    intensity: int = DEFAULT_INTENSITY
    rtt: float | None = None
    host_timeout: float | None = None
    concurrency: int | None = None
    udp_rtt: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int):
            raise ScanError(f"version intensity must be an integer 0-9, not {self.intensity!r}")
        if not 0 <= self.intensity <= 9:
            raise ScanError(f"version intensity must be 0-9, not {self.intensity}")
        for name in ("rtt", "host_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ScanError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.concurrency is not None and (
            not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise ScanError(f"concurrency must be a positive integer, not {self.concurrency!r}")


def _concurrency(options: DetectionOptions) -> int:
    from portlib.scanning.connect.engine import descriptor_budget

    budget = min(descriptor_budget(), MAX_CONCURRENCY)
    return max(1, min(options.concurrency or budget, budget))


def _as_port(item: PortLike) -> PortResult:
    if isinstance(item, PortResult):
        return item
    if not isinstance(item, tuple) or len(item) not in (2, 3):
        raise TargetSpecError(f"expected a PortResult or (host, port[, protocol]), not {item!r}")
    from portlib.services import as_protocol, check_port, service_name

    host = item[0]
    try:
        address = host if not isinstance(host, str) else ip_address(host)
    except ValueError:
        raise TargetSpecError(f"bad address {host!r}: detection takes IP addresses") from None
    port = check_port(item[1], lowest=1)
    protocol = as_protocol(item[2]) if len(item) == 3 else Protocol.TCP
    return PortResult(
        address, port, protocol, PortState.OPEN, Reason.USER_SET,
        service=service_name(port, protocol),
    )  # fmt: skip


async def _detect_tcp(
    result: PortResult, options: DetectionOptions, progress: Progress
) -> PortResult:
    started = asyncio.get_running_loop().time()
    first_waits = Waits.for_rtt(options.rtt if options.rtt is not None else 0.2)
    session = TcpSession(result.host, result.port, [], first_waits, progress)
    try:
        stream = await session.open(None)
    except ConnectionRefusedError:
        return dataclasses.replace(result, state=PortState.CLOSED, reason=Reason.CONN_REFUSED)
    except (OSError, TimeoutError, ssl.SSLError):
        return dataclasses.replace(result, state=PortState.FILTERED, reason=Reason.NO_RESPONSE)
    rtt = options.rtt
    if rtt is None:  # the connect took about one round trip
        rtt = asyncio.get_running_loop().time() - started
    session.waits = Waits.for_rtt(rtt)
    session.probes = probe_order(tcp_probes(), result.port, options.intensity)
    if result.reason is Reason.USER_SET:  # a pair we were given: now we know why it is open
        result = dataclasses.replace(result, reason=Reason.SYN_ACK)
    found = await session.run(stream)
    return dataclasses.replace(result, detected=found or progress.verdict())


async def _detect_one(
    result: PortResult, options: DetectionOptions, slots: asyncio.Semaphore, deadline: float | None
) -> PortResult:
    progress = Progress(result.service)
    async with slots:
        try:
            async with asyncio.timeout_at(deadline):
                if result.protocol is Protocol.UDP:
                    rtt = options.rtt if options.rtt is not None else options.udp_rtt
                    found = await detect_udp(
                        result, Waits.for_rtt(rtt), options.intensity, progress
                    )
                    return dataclasses.replace(result, detected=found)
                return await _detect_tcp(result, options, progress)
        except TimeoutError:
            return dataclasses.replace(result, detected=progress.verdict())


async def _detect_all(ports: Sequence[PortResult], options: DetectionOptions) -> list[PortResult]:
    # The tables are built before the first connection: building them may take seconds
    # (scapy), and a blocked loop would cut every wait short.
    tcp_probes()
    if any(p.protocol is Protocol.UDP for p in ports):
        udp_payloads(0, options.intensity)
    slots = asyncio.Semaphore(_concurrency(options))
    loop = asyncio.get_running_loop()
    by_host: dict[IPAddress, list[int]] = defaultdict(list)
    for index, result in enumerate(ports):
        by_host[result.host].append(index)
    out: list[PortResult] = list(ports)

    async def one_host(indices: list[int]) -> None:
        deadline = None if options.host_timeout is None else loop.time() + options.host_timeout
        done = await asyncio.gather(
            *(_detect_one(ports[i], options, slots, deadline) for i in indices)
        )
        for i, result in zip(indices, done, strict=True):
            out[i] = result

    await asyncio.gather(*(one_host(indices) for indices in by_host.values()))
    return out


def median_rtt(results: Sequence[PortResult]) -> float | None:
    """The port scan's RTT measurement, for the detection waits (None: none measured)."""
    measured = sorted(r.rtt for r in results if r.rtt)
    return measured[len(measured) // 2] if measured else None


async def detect_ports(ports: Sequence[PortResult], options: DetectionOptions) -> list[PortResult]:
    """``ports`` with ``detected`` filled in, in the same order (the Scanner's last stage)."""
    return await _detect_all(ports, options)


def wants_detection(result: PortResult) -> bool:
    """Open ports, and UDP ports that may be open (silence proves nothing there)."""
    return result.state is PortState.OPEN or (
        result.protocol is Protocol.UDP and result.state is PortState.OPEN_FILTERED
    )


@overload
async def detect_services_async(
    targets: ScanReport, *, intensity: int = ..., rtt: float | None = ...,
    host_timeout: float | None = ..., concurrency: int | None = ...,
) -> ScanReport: ...  # fmt: skip
@overload
async def detect_services_async(
    targets: Iterable[PortLike], *, intensity: int = ..., rtt: float | None = ...,
    host_timeout: float | None = ..., concurrency: int | None = ...,
) -> tuple[PortResult, ...]: ...  # fmt: skip
async def detect_services_async(
    targets: ScanReport | Iterable[PortLike],
    *,
    intensity: int = DEFAULT_INTENSITY,
    rtt: float | None = None,
    host_timeout: float | None = None,
    concurrency: int | None = None,
) -> ScanReport | tuple[PortResult, ...]:
    """Detect the services on ports known open; as ``detect_services``, awaitable.

    Example:

    >>> import portlib
    >>> found = await portlib.detect_services_async([("192.0.2.10", 25)])  # doctest: +SKIP
    >>> found[0].detected.version_text()  # doctest: +SKIP
    'Exim smtpd 4.96 (STARTTLS)'
    """
    return await _detect(targets, DetectionOptions(intensity, rtt, host_timeout, concurrency))


async def _detect(
    targets: ScanReport | Iterable[PortLike], options: DetectionOptions
) -> ScanReport | tuple[PortResult, ...]:
    if isinstance(targets, ScanReport):
        return await _detect_report(targets, options)
    ports = [_as_port(item) for item in targets]
    return tuple(await _detect_all(ports, options))


async def _detect_report(report: ScanReport, options: DetectionOptions) -> ScanReport:
    wanted = [p for h in report.hosts for p in h.ports if wants_detection(p)]
    if options.rtt is None:  # the port scan's own RTT measurement sets the waits
        options = dataclasses.replace(options, rtt=median_rtt(wanted))
    found = {(p.host, p.port, p.protocol): p for p in await _detect_all(wanted, options)}
    hosts = tuple(
        dataclasses.replace(
            host, ports=tuple(found.get((p.host, p.port, p.protocol), p) for p in host.ports)
        )
        for host in report.hosts
    )
    return dataclasses.replace(report, hosts=hosts)


@overload
def detect_services(
    targets: ScanReport, *, intensity: int = ..., rtt: float | None = ...,
    host_timeout: float | None = ..., concurrency: int | None = ...,
) -> ScanReport: ...  # fmt: skip
@overload
def detect_services(
    targets: Iterable[PortLike], *, intensity: int = ..., rtt: float | None = ...,
    host_timeout: float | None = ..., concurrency: int | None = ...,
) -> tuple[PortResult, ...]: ...  # fmt: skip
def detect_services(
    targets: ScanReport | Iterable[PortLike],
    *,
    intensity: int = DEFAULT_INTENSITY,
    rtt: float | None = None,
    host_timeout: float | None = None,
    concurrency: int | None = None,
) -> ScanReport | tuple[PortResult, ...]:
    """What runs on ports already known open (nmap's ``-sV``), blocking.

    ``targets`` is a ScanReport (its open ports get ``detected`` filled in; a new report
    comes back) or (host, port[, protocol]) pairs or PortResults (their PortResults come
    back, ``detected`` filled in; a port that refuses is returned closed).
    ``intensity`` 0-9 as nmap's ``--version-intensity``; ``rtt`` the round-trip time
    the waits follow (default: the report's RTTs, else each connect's own time);
    ``host_timeout`` seconds per host. Refuses inside a running event loop.

    Example:

    >>> import portlib
    >>> report = portlib.detect_services(portlib.scan("192.0.2.10", "22,80"))  # doctest: +SKIP
    >>> [(p.port, p.detected.product) for p in report.open_ports()]  # doctest: +SKIP
    [(22, 'OpenSSH'), (80, 'nginx')]
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ScanError(
            "detect_services() cannot run inside a running event loop; "
            "use 'await portlib.detect_services_async(...)'"
        )
    options = DetectionOptions(intensity, rtt, host_timeout, concurrency)
    return asyncio.run(_detect(targets, options))
