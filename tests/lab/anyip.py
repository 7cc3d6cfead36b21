"""One target namespace that answers for a whole prefix of 198.18.0.0/15 (an AnyIP route).

Scale tests and benchmarks need thousands to a hundred thousand hosts; one namespace
per host would take minutes to build. Instead the target holds ``ip route add local
PREFIX dev lo``: every address of the prefix is its own, so listeners bound to 0.0.0.0
answer on each of them, and iptables ``-m iprange`` rules make parts of the prefix
down (DROP everything) or filtered (REJECT TCP with an ICMP error). The scanner
namespace routes only that prefix, via the target's bridge address.

    with Lab() as lab:
        net = add_anyip_host(lab, "198.18.0.0/20", ports=[22, 80, 443],
                             drop=["198.18.12.0-198.18.15.255"])
        net.truth(ports, discovery=True)   # {(address, port): "open" | "closed" | ...}

See tests/lab/README.md ("The AnyIP prefix").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tests.lab import netns
from tests.lab.core import Lab, LabHost

BENCH_NET = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544's benchmarking range
# The REJECT answers must not be rate limited away: a silence would read as "filtered"
# too, but only after retries, and the test would time the retries, not the scan.
_ICMP_UNLIMITED = {"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_msgs_per_sec": "1000000"}

AddressRange = tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]


def parse_range(spec: str, prefix: ipaddress.IPv4Network) -> AddressRange:
    """``"A-B"`` or a CIDR inside ``prefix`` -> (first, last); ValueError otherwise."""
    if "-" in spec:
        first_text, _, last_text = spec.partition("-")
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address(last_text.strip())
    else:
        net = ipaddress.IPv4Network(spec, strict=True)
        first, last = net.network_address, net.broadcast_address
    if first > last:
        raise ValueError(f"address range {spec!r} runs backwards")
    if first not in prefix or last not in prefix:
        raise ValueError(f"address range {spec!r} is not inside {prefix}")
    return first, last


@dataclass(frozen=True)
class AnyIPHost:
    """The target namespace of the prefix and what each address of it should answer."""

    host: LabHost
    prefix: ipaddress.IPv4Network
    ports: tuple[int, ...]  # listening on every live address
    dropped: tuple[AddressRange, ...]  # everything DROPped: down / filtered
    rejected: tuple[AddressRange, ...]  # TCP REJECTed with admin-prohibited: filtered

    @property
    def ns(self) -> str:
        return self.host.ns

    def _in(self, address: ipaddress.IPv4Address, ranges: Iterable[AddressRange]) -> bool:
        return any(lo <= address <= hi for lo, hi in ranges)

    def addresses(self) -> list[ipaddress.IPv4Address]:
        """Every address a scan of ``prefix`` covers (network and broadcast included)."""
        first = int(self.prefix.network_address)
        return [ipaddress.IPv4Address(first + i) for i in range(self.prefix.num_addresses)]

    def _filtered(self, address: ipaddress.IPv4Address) -> bool:
        return self._in(address, self.dropped) or self._in(address, self.rejected)

    def is_down(self, address: ipaddress.IPv4Address) -> bool:
        return self._in(address, self.dropped)

    def state(self, address: ipaddress.IPv4Address, port: int) -> str:
        """The TCP state a SYN or connect scan must find at (address, port)."""
        if self._filtered(address):
            return "filtered"
        return "open" if port in self.ports else "closed"

    def truth(
        self, ports: Sequence[int], *, discovery: bool
    ) -> dict[tuple[ipaddress.IPv4Address, int], str]:
        """(address, port) -> state for a scan of the whole prefix over ``ports``.

        With ``discovery`` the DROPped addresses answer no ping, so they are down and
        have no ports at all; without it (``-Pn``) their ports are filtered."""
        return {
            (address, port): self.state(address, port)
            for address in self.addresses()
            if not (discovery and self.is_down(address))
            for port in ports
        }

    def open_ports(self, ports: Iterable[int]) -> set[tuple[str, int]]:
        """(address text, port) of every open port among ``ports``: the other states
        of a /15 x 100 ports would take gigabytes as a ``truth()`` dictionary."""
        listening = [p for p in ports if p in self.ports]
        return {
            (str(address), port)
            for address in self.addresses()
            if not self._filtered(address)
            for port in listening
        }

    def live_count(self) -> int:
        return sum(1 for a in self.addresses() if not self.is_down(a))


def add_anyip_host(
    lab: Lab,
    prefix: str = "198.18.0.0/20",
    *,
    ports: Sequence[int] = (22, 80, 443),
    drop: Sequence[str] = (),
    reject: Sequence[str] = (),
    name: str = "anyip",
) -> AnyIPHost:
    """A target namespace answering for all of ``prefix`` (inside 198.18.0.0/15).

    ``ports`` listen on 0.0.0.0 (so on every address); ``drop`` ranges ("A-B" or CIDR)
    lose every packet (down hosts, filtered ports); ``reject`` ranges refuse TCP with
    ICMP admin-prohibited (filtered ports of live hosts). The scanner routes ``prefix``
    only, through the target's bridge address; the target's ICMP rate limit is off so
    every REJECT is answered."""
    net = ipaddress.IPv4Network(prefix, strict=True)
    if not net.subnet_of(BENCH_NET):
        raise ValueError(f"{prefix} is not inside the benchmarking range {BENCH_NET}")
    dropped = tuple(parse_range(r, net) for r in drop)
    rejected = tuple(parse_range(r, net) for r in reject)
    host = lab.add_host(name)
    netns.ip_batch(host.ns, [f"route add local {net} dev lo"])
    netns.ip_batch(lab.scanner_ns, [f"route add {net} via {host.v4} dev br0"])
    netns.sysctl(host.ns, _ICMP_UNLIMITED)
    rules = [f"-A INPUT -m iprange --dst-range {lo}-{hi} -j DROP" for lo, hi in dropped]
    rules += [
        f"-A INPUT -p tcp -m iprange --dst-range {lo}-{hi} "
        "-j REJECT --reject-with icmp-admin-prohibited"
        for lo, hi in rejected
    ]
    netns.iptables_restore(host.ns, 4, rules)
    host.serve_tcp(ports)
    return AnyIPHost(host, net, tuple(sorted(set(ports))), dropped, rejected)


class SynCounter:
    """The packet counter of a rule matching every SYN that reaches the AnyIP target:
    how many TCP probes (port scan and discovery) a scan really sent."""

    def __init__(self, target: AnyIPHost) -> None:
        self.host = target.host
        self.prefix = str(target.prefix)

    def install(self) -> None:
        """The rule itself: first in INPUT, before the DROPs and REJECTs; it only counts."""
        self.host.iptables("-I", "INPUT", "1", "-p", "tcp", "--syn", "-d", self.prefix)

    def reset(self) -> None:
        self.host.iptables("-Z", "INPUT", "1")

    def count(self) -> int:
        out = self.host.iptables("-L", "INPUT", "1", "-v", "-n", "-x").stdout
        return int(out.strip().splitlines()[-1].split()[0])
