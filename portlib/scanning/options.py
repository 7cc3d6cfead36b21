"""Pure: the Scanner's options, checked and resolved before anything is sent.

Each ``resolve_*`` takes what a user passed (a string, a number, a list) and
returns the one typed value the Scanner uses, or raises a ``PortlibError``
saying what is wrong. ``ScanOptions`` types the keyword options of ``scan``
and ``scan_async`` so that a misspelt option fails the user's type check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Literal, TypedDict

from portlib.errors import PortSpecError, ScanError, TargetSpecError
from portlib.model import HostResult, IPAddress, Protocol, ScanMethod
from portlib.portspec import DEFAULT_TOP_PORTS, PortList, parse_ports
from portlib.scanning.contract import ScanWork
from portlib.scanning.order import ProbeOrder, parse_shard
from portlib.scanning.timing import TimingProfile, preset

if TYPE_CHECKING:
    from portlib.scanning.versions.detect import DetectionOptions

DiscoveryMode = Literal["auto", "connect", "raw", "none"]
DISCOVERY_MODES: tuple[DiscoveryMode, ...] = ("auto", "connect", "raw", "none")

ProgressCallback = Callable[[int, int], object]
"""``on_progress(done, total)``: verdicts so far and verdicts expected."""
HostCallback = Callable[[HostResult], object]
"""``on_host(host)``: a host the scan has finished with, in target order."""


class ScanOptions(TypedDict, total=False):
    """The keyword options of ``Scanner``, ``scan`` and ``scan_async`` (see ``Scanner``)."""

    method: ScanMethod | str | Sequence[ScanMethod | str]
    timing: int | TimingProfile
    timeout: float | None
    retries: int | None
    rate: float | None
    min_rate: float | None
    concurrency: int | None
    discovery: bool | str
    seed: int | None
    shard: tuple[int, int] | str | None
    sequential: bool
    host_timeout: float | None
    interface: str | None
    exclude: str | None
    on_progress: ProgressCallback | None
    on_host: HostCallback | None
    keep_hosts: bool
    fold: bool
    args: Sequence[str]
    versions: bool
    version_intensity: int


METHOD_PROTOCOL: dict[ScanMethod, Protocol] = {
    ScanMethod.CONNECT: Protocol.TCP,
    ScanMethod.SYN: Protocol.TCP,
    ScanMethod.ACK: Protocol.TCP,
    ScanMethod.UDP: Protocol.UDP,
}
RAW_METHODS = frozenset({ScanMethod.SYN, ScanMethod.ACK, ScanMethod.UDP})


def parse_methods(method: ScanMethod | str | Sequence[ScanMethod | str]) -> tuple[ScanMethod, ...]:
    """Validate ``method``: one TCP method (connect/syn/ack), optionally plus udp; or ping alone.

    The TCP method comes first, as nmap's ``-sS -sU`` scans TCP then UDP.
    """
    items = [method] if isinstance(method, str) else list(method)
    if not items:
        raise ScanError("no scan method given: use connect, syn, ack, udp or ping")
    methods: list[ScanMethod] = []
    for item in items:
        try:
            value = ScanMethod(str(item).lower())
        except ValueError:
            names = ", ".join(m.value for m in ScanMethod)
            raise ScanError(f"unknown scan method {item!r}: use one of {names}") from None
        if value not in methods:
            methods.append(value)
    if ScanMethod.PING in methods and len(methods) > 1:
        raise ScanError("method 'ping' (-sn) scans no ports and cannot be combined with others")
    tcp = [m for m in methods if METHOD_PROTOCOL.get(m) is Protocol.TCP]
    if len(tcp) > 1:
        raise ScanError(
            f"only one TCP method per scan, not {' and '.join(m.value for m in tcp)} "
            "(add 'udp' to scan UDP as well)"
        )
    return tuple(
        sorted(methods, key=lambda m: METHOD_PROTOCOL.get(m, Protocol.TCP) != Protocol.TCP)
    )


def resolve_timing(
    timing: int | TimingProfile,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    min_rate: float | None = None,
) -> TimingProfile:
    """The -T preset (or a given profile) with the user's overrides applied."""
    if isinstance(timing, TimingProfile):
        profile = timing
    elif isinstance(timing, int) and not isinstance(timing, bool):
        profile = preset(timing)
    else:
        raise ScanError(f"timing must be a level 0 to 5 or a TimingProfile, not {timing!r}")
    for name, value in (("timeout", timeout), ("rate", rate), ("min_rate", min_rate)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ScanError(f"{name} must be a number, not {value!r}")
    for name, value in (("retries", retries), ("concurrency", concurrency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ScanError(f"{name} must be an integer, not {value!r}")
    return profile.with_overrides(
        timeout=timeout, retries=retries, rate=rate, concurrency=concurrency, min_rate=min_rate
    )


def resolve_ports(
    ports: str | Iterable[int] | PortList | None, protocols: Sequence[Protocol]
) -> dict[Protocol, tuple[int, ...]]:
    """The ports to probe per protocol; None means nmap's default, the top 1000 of each."""
    if ports is None:
        from portlib.services import top_ports

        return {p: tuple(top_ports(DEFAULT_TOP_PORTS, p.value)) for p in protocols}
    if isinstance(ports, int | bytes) or not isinstance(ports, str | PortList | Iterable):
        raise PortSpecError(
            f"ports must be a spec string, a list of integers or a PortList, not {ports!r}"
        )
    given = ports if isinstance(ports, PortList) else parse_ports(ports)
    wanted = {protocol: given.for_protocol(protocol) for protocol in protocols}
    for protocol, numbers in wanted.items():
        if not numbers:
            spec = ports if isinstance(ports, str) else given.to_spec()
            prefix = "U:" if protocol is Protocol.UDP else "T:"
            raise PortSpecError(
                f"no {protocol.value.upper()} ports to scan in {spec!r} "
                f"(give some, for example {prefix}53)"
            )
    return wanted


def resolve_shard(shard: tuple[int, int] | str | None) -> tuple[int, int] | None:

    if shard is None:
        return None
    if isinstance(shard, str):
        return parse_shard(shard)
    return ProbeOrder(0, seed=0, shard=shard).shard  # validates (i, n)


def resolve_discovery(discovery: bool | str) -> DiscoveryMode:
    if discovery is True:
        return "auto"
    if discovery is False:
        return "none"
    for mode in DISCOVERY_MODES:
        if discovery == mode:
            return mode
    raise ScanError(
        f"discovery must be True, False or one of {', '.join(DISCOVERY_MODES)}, not {discovery!r}"
    )


def check_targets(targets: object) -> None:
    """Refuse a ``targets`` argument of the wrong type (its specs are parsed later)."""
    from portlib.targets import TargetSet

    if isinstance(targets, str | TargetSet):
        return
    if isinstance(targets, Sequence) and all(
        isinstance(t, str | IPv4Address | IPv6Address) for t in targets
    ):
        return
    raise TargetSpecError(
        f"targets must be a spec string, a list of specs or addresses, or a TargetSet, "
        f"not {targets!r}"
    )


def resolve_host_timeout(host_timeout: float | None, shard: tuple[int, int] | None) -> float | None:
    """``host_timeout`` checked: seconds, positive; a shard cannot tell when a host is done."""
    if host_timeout is None:
        return None
    if isinstance(host_timeout, bool) or not isinstance(host_timeout, int | float):
        raise ScanError(f"host_timeout must be a number of seconds, not {host_timeout!r}")
    if not host_timeout > 0:
        raise ScanError(f"host_timeout must be positive, not {host_timeout!r}")
    if shard is not None:
        raise ScanError("host_timeout cannot be combined with shard (a shard holds part of a host)")
    return float(host_timeout)


def resolve_seed(seed: int | None, shard: tuple[int, int] | None, fresh: int) -> int:
    """The probe order's seed: ``seed`` checked; without one, 0 for a sharded scan
    (every shard must draw the same order) and ``fresh`` otherwise."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ScanError(f"seed must be an integer, not {seed!r}")
    if seed is not None and not 0 <= seed < 2**64:
        raise ScanError(f"seed must be in 0 .. 2**64-1, not {seed}")
    if seed is None:
        return 0 if shard else fresh
    return seed


def check_flag(name: str, value: object) -> bool:
    """``value`` when it is a bool; a ScanError naming the option otherwise."""
    if not isinstance(value, bool):
        raise ScanError(f"{name} must be True or False, not {value!r}")
    return value


def check_callback(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise ScanError(f"{name} must be callable, not {value!r}")


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """A scan's checked options: what to probe, how, and what to do afterwards."""

    port_methods: tuple[ScanMethod, ...]
    ports: dict[Protocol, tuple[int, ...]]
    timing: TimingProfile
    seed: int
    shard: tuple[int, int] | None
    sequential: bool
    discovery: DiscoveryMode
    host_timeout: float | None
    detection: DetectionOptions | None
    interface: str | None = None
    fold: bool = True

    @property
    def ports_per_host(self) -> int:
        return sum(len(p) for p in self.ports.values())

    def works(self, hosts: tuple[IPAddress, ...]) -> list[ScanWork]:
        """One engine run's work per method, over ``hosts``."""
        return [
            ScanWork(
                hosts=hosts,
                ports=self.ports[METHOD_PROTOCOL[method]],
                protocol=METHOD_PROTOCOL[method],
                timing=self.timing,
                seed=self.seed,
                shard=self.shard,
                sequential=self.sequential,
                interface=self.interface,
            )
            for method in self.port_methods
        ]

    @property
    def protocols(self) -> tuple[Protocol, ...]:
        return tuple(METHOD_PROTOCOL[m] for m in self.port_methods)
