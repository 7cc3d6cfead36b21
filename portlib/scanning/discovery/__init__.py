"""Host discovery: which targets are up, and why (nmap's "ping" phase).

- This machine's own addresses (loopback included) are up with
  ``localhost-response`` without a probe, as nmap reports them.
- ``mode="none"`` (``-Pn``): every host is up, ``user-set``.
- ``mode="connect"``: a TCP connect to ports 80 and 443; any answer, open or
  refused, means up (``syn-ack`` / ``conn-refused``), as nmap does without
  privileges.
- ``mode="raw"``: ICMP echo/timestamp, SYN 443, ACK 80, ARP/ND through the raw
  engine (``portlib.scanning.discovery.raw``); needs ``CAP_NET_RAW``.
- ``mode="auto"``: raw when this process has ``CAP_NET_RAW`` and the raw
  prober loads, connect otherwise (nmap, too, pings with raw packets whenever
  it is privileged).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Sequence

from portlib.errors import PrivilegeError, ScanError
from portlib.model import HostState, IPAddress, PortResult, PortState, Protocol, Reason, ScanMethod
from portlib.scanning import privilege
from portlib.scanning.contract import ScanWork
from portlib.scanning.options import DISCOVERY_MODES, DiscoveryMode
from portlib.scanning.report import HostStatus
from portlib.scanning.timing import RttEstimator, TimingProfile

DISCOVERY_PORTS = (80, 443)
DISCOVERY_MAX_RETRIES = 2  # a ping is cheap to repeat; a port scan's retries would be overkill

USER_SET = HostStatus(HostState.UP, Reason.USER_SET)
LOCAL = HostStatus(HostState.UP, Reason.LOCALHOST_RESPONSE)

# A port answer that proves the host is up, and the reason nmap gives for it.
_UP_REASON: dict[PortState, Reason] = {
    PortState.OPEN: Reason.SYN_ACK,
    PortState.CLOSED: Reason.CONN_REFUSED,
}
# When no probe was answered, the most telling silence wins (lower ranks first).
_DOWN_RANK: dict[Reason, int] = {
    Reason.HOST_UNREACH: 0,
    Reason.NET_UNREACH: 1,
    Reason.HOST_PROHIBITED: 2,
    Reason.NET_PROHIBITED: 3,
    Reason.ADMIN_PROHIBITED: 4,
}


def host_status_from_probes(results: Iterable[PortResult]) -> HostStatus:
    """Pure: the host's status from its discovery probes' verdicts."""
    answered: list[tuple[float, Reason]] = []
    silences: list[Reason] = []
    for result in results:
        up_reason = _UP_REASON.get(result.state)
        if up_reason is None:
            silences.append(result.reason)
        else:
            rtt = result.rtt if result.rtt is not None else float("inf")
            answered.append((rtt, up_reason))
    if answered:
        rtt, reason = min(answered, key=lambda a: a[0])
        return HostStatus(HostState.UP, reason, None if rtt == float("inf") else rtt)
    if not silences:
        return HostStatus(HostState.DOWN, Reason.NO_RESPONSE)
    worst = min(silences, key=lambda r: _DOWN_RANK.get(r, len(_DOWN_RANK)))
    if worst not in _DOWN_RANK:
        worst = Reason.NO_RESPONSE
    return HostStatus(HostState.DOWN, worst)


def is_local_address(address: IPAddress) -> bool:
    """Whether ``address`` belongs to this machine (a bind to it succeeds)."""
    if address.is_loopback:
        return True
    if address.is_multicast or address.is_unspecified:
        return False
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL, errno.EAFNOSUPPORT):
            return False
        raise ScanError(f"cannot tell whether {address} is a local address: {exc}") from exc
    return True


def discovery_timing(timing: TimingProfile) -> TimingProfile:
    """The scan's timing with fewer retries: two ports answer for a host."""
    return timing.with_overrides(retries=min(timing.max_retries, DISCOVERY_MAX_RETRIES))


async def _connect_discovery(
    addresses: Sequence[IPAddress],
    timing: TimingProfile,
    seed: int,
    interface: str | None = None,
) -> dict[IPAddress, HostStatus]:
    from portlib.scanning.connect.engine import ConnectEngine

    probes: dict[IPAddress, list[PortResult]] = {a: [] for a in addresses}

    async def collect(result: PortResult) -> None:
        probes.setdefault(result.host, []).append(result)

    work = ScanWork(
        hosts=tuple(addresses),
        ports=DISCOVERY_PORTS,
        protocol=Protocol.TCP,
        timing=discovery_timing(timing),
        seed=seed,
        interface=interface,
    )
    await ConnectEngine(ScanMethod.CONNECT).run(work, collect)
    return {a: host_status_from_probes(probes[a]) for a in addresses}


async def _raw_discovery(
    addresses: Sequence[IPAddress],
    timing: TimingProfile,
    interface: str | None,
    rtt: RttEstimator | None,
) -> dict[IPAddress, HostStatus]:
    from portlib.scanning.discovery.raw import discover_raw

    found = await discover_raw(addresses, discovery_timing(timing), interface=interface, rtt=rtt)
    statuses = {}
    for address in addresses:
        state, reason = found.get(address, (HostState.DOWN, Reason.NO_RESPONSE))
        statuses[address] = HostStatus(state, reason)
    return statuses


async def discover(
    addresses: Sequence[IPAddress],
    timing: TimingProfile,
    *,
    mode: DiscoveryMode = "auto",
    seed: int = 0,
    interface: str | None = None,
    rtt: RttEstimator | None = None,
) -> dict[IPAddress, HostStatus]:
    """Each address's status, by ``mode`` (see the module doc); probes leave by
    ``interface`` only, when one is given. ``rtt``, shared by the calls of one scan,
    lets raw discovery time silent hosts by what earlier calls measured."""
    if mode not in DISCOVERY_MODES:
        raise ScanError(f"discovery must be one of {', '.join(DISCOVERY_MODES)}, not {mode!r}")
    if mode == "none":
        return dict.fromkeys(addresses, USER_SET)
    statuses: dict[IPAddress, HostStatus] = {}
    remote: list[IPAddress] = []
    for address in addresses:
        if is_local_address(address):
            statuses[address] = LOCAL
        else:
            remote.append(address)
    if not remote:
        return statuses
    if mode == "raw":
        privilege.require_raw_privilege("discovery='raw'")
    if mode == "raw" or (mode == "auto" and privilege.has_raw_privilege()):
        try:
            statuses.update(await _raw_discovery(remote, timing, interface, rtt))
            return statuses
        except ImportError as exc:
            if mode == "raw":
                raise ScanError(f"raw host discovery is not available: {exc}") from exc
        except (PrivilegeError, OSError):
            # e.g. raw sockets refused inside a container despite uid 0
            if mode == "raw":
                raise
    statuses.update(await _connect_discovery(remote, timing, seed, interface))
    return statuses
