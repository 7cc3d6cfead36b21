"""Pure: turn what a host group learned (host and port verdicts) into its HostResults.

Hosts come out in target order, each host's ports ascending (by port, then
protocol, as nmap lists them). Hosts discovery never decided (the scan was
interrupted first) are reported ``unknown``.

A full-range scan hands over 65535 verdicts per host in its random probe order,
so the grouping and sorting here avoid per-verdict Python work where they can:
addresses are hashed once per run of verdicts, not once per verdict, and a host's
distinct port numbers are placed by a counting sort instead of compared.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress, groupby, repeat
from operator import attrgetter, is_, is_not

from portlib.folding import Shared, fold_ports
from portlib.model import (
    FoldedPorts,
    HostResult,
    HostState,
    IPAddress,
    PortResult,
    Protocol,
    Reason,
)


@dataclass(frozen=True, slots=True)
class HostStatus:
    """Discovery's verdict on one host; ``latency`` is the answer's RTT when measured."""

    state: HostState
    reason: Reason
    latency: float | None = None


UNDECIDED = HostStatus(HostState.UNKNOWN, Reason.NO_RESPONSE)
_HOST = attrgetter("host")
_PORT = attrgetter("port")
_PROTOCOL = attrgetter("protocol")
_RTT = attrgetter("rtt")
_SLOTS = 65536  # one per port number
_SLOT_SORT_FROM = 1024  # below this many verdicts sorted() is as fast


def _by_host(results: Iterable[PortResult]) -> dict[IPAddress, list[PortResult]]:
    """The verdicts of each address, in arrival order.

    Hashing an ip_address runs Python code, so each address *object* is looked up
    once (by identity) and each run of verdicts for it is appended in one go.
    """
    by_host: dict[IPAddress, list[PortResult]] = {}
    by_object: dict[int, list[PortResult]] = {}  # id() stays valid: the lists keep them alive
    for address, run in groupby(results, key=_HOST):
        bucket = by_object.get(id(address))
        if bucket is None:
            bucket = by_object[id(address)] = by_host.setdefault(address, [])
        bucket.extend(run)
    return by_host


def _sorted_by_port(results: list[PortResult]) -> list[PortResult]:
    """``results`` stably sorted by port number.

    One host's verdicts over one protocol have distinct numbers in 0..65535, so each
    drops into its own slot (linear, no comparisons); anything else is sorted().
    """
    if len(results) < _SLOT_SORT_FROM:
        return sorted(results, key=_PORT)
    numbers = list(map(_PORT, results))
    if min(numbers) < 0 or max(numbers) >= _SLOTS:
        return sorted(results, key=_PORT)
    slots: list[PortResult | None] = [None] * _SLOTS
    for number, result in zip(numbers, results, strict=True):
        slots[number] = result
    ordered = [result for result in slots if result is not None]
    if len(ordered) != len(results):  # a number seen twice: its slot kept only one
        return sorted(results, key=_PORT)
    return ordered


def _sorted_tcp_first(results: list[PortResult]) -> list[PortResult]:
    """Stably by port, then TCP before the other protocols (53/tcp before 53/udp)."""
    protocols = list(map(_PROTOCOL, results))
    tcp = list(compress(results, map(is_, protocols, repeat(Protocol.TCP))))
    other = list(compress(results, map(is_not, protocols, repeat(Protocol.TCP))))
    # Two ascending runs: timsort merges them in linear time, and stability keeps
    # TCP first among equal port numbers.
    return sorted(_sorted_by_port(tcp) + _sorted_by_port(other), key=_PORT)


def _fastest(ports: tuple[PortResult, ...], arrived: list[PortResult]) -> float | None:
    """The smallest measured RTT of ``ports`` (None when none was measured).

    ``arrived`` holds the same verdicts in arrival order, which is also their order in
    memory, so reading it is several times faster. The minimum of floats does not
    depend on the order unless NaN or a zero (0.0 and -0.0 compare equal) is among
    them; then it is taken again in port order, exactly as the report lists them.
    """
    rtts = list(map(_RTT, arrived))
    measured = list(compress(rtts, map(is_not, rtts, repeat(None))))
    fastest = min(measured, default=None)
    if fastest is not None and (fastest == 0 or math.isnan(sum(measured))):
        rtts = list(map(_RTT, ports))
        fastest = min(compress(rtts, map(is_not, rtts, repeat(None))))
    return fastest


def build_hosts(
    targets: Iterable[tuple[IPAddress, str | None]],
    statuses: Mapping[IPAddress, HostStatus],
    results: Iterable[PortResult],
    *,
    protocols: tuple[Protocol, ...],
    timed_out: frozenset[IPAddress] = frozenset(),
    fold: bool = False,
    shared: Shared | None = None,
) -> list[HostResult]:
    """The hosts of ``targets`` (address, hostname), in that order.

    Port results of hosts that are not up are left out: a down host has no ports.
    Neither has a host in ``timed_out`` (its host timeout passed first, nmap's rule).
    With ``fold``, each host's ports are folded by nmap's rule (``portlib.folding``);
    ``shared`` lets hosts folded alike share their fold.
    """
    by_host = _by_host(results)
    order = _sorted_tcp_first if len(protocols) > 1 else _sorted_by_port
    hosts = []
    for address, hostname in targets:
        status = statuses.get(address, UNDECIDED)
        ports: tuple[PortResult, ...] = ()
        folded: tuple[FoldedPorts, ...] = ()
        late = address in timed_out
        arrived = by_host.get(address, []) if status.state is HostState.UP and not late else []
        if arrived:
            ports = tuple(order(arrived))
        latency = status.latency
        if latency is None and status.state is HostState.UP:
            latency = _fastest(ports, arrived)
        if fold and ports:
            ports, folded = fold_ports(ports, shared=shared)
        hosts.append(
            HostResult(
                address=address,
                hostname=hostname,
                state=status.state,
                reason=status.reason,
                ports=ports,
                latency=latency,
                timed_out=late,
                extra_ports=folded,
            )
        )
    return hosts
