"""Pure: which interface reaches a target, and its neighbor's MAC, from the kernel's tables.

The text of ``/proc/net/route``, ``/proc/net/ipv6_route`` and ``/proc/net/arp``
is read by ``links``; the functions here only parse it and pick the longest
matching prefix.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_network

from portlib.model import IPAddress


@dataclass(frozen=True, slots=True)
class Route:
    network: object  # IPv4Network | IPv6Network
    gateway: IPAddress | None
    interface: str


def parse_route_v4(text: str) -> list[Route]:
    """Routes of ``/proc/net/route`` (hex, little-endian words) that are up."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, gateway, flags, mask = fields[0], fields[1], fields[2], fields[3], fields[7]
        if not int(flags, 16) & 0x1:
            continue
        net = ip_network(f"{_le_v4(dest)}/{_le_v4(mask)}", strict=False)
        gw = _le_v4(gateway)
        routes.append(Route(net, None if int(gw) == 0 else gw, iface))
    return routes


def _le_v4(word: str) -> IPv4Address:
    return IPv4Address(struct.pack("<I", int(word, 16)))


def parse_route_v6(text: str) -> list[Route]:
    """Routes of ``/proc/net/ipv6_route`` that are up and not reject routes."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        flags = int(fields[8], 16)
        if not flags & 0x1 or flags & 0x200:
            continue
        net = ip_network(f"{IPv6Address(bytes.fromhex(fields[0]))}/{int(fields[1], 16)}")
        hop = IPv6Address(bytes.fromhex(fields[4]))
        routes.append(Route(net, None if int(hop) == 0 else hop, fields[9]))
    return routes


def _longest_match(target: IPAddress, routes: Sequence[Route]) -> Route | None:
    best: Route | None = None
    for route in routes:
        net = route.network
        if target in net and (  # type: ignore[operator]
            best is None or net.prefixlen > best.network.prefixlen  # type: ignore[attr-defined]
        ):
            best = route
    return best


def on_link_interface(target: IPAddress, routes: Sequence[Route]) -> str | None:
    """The interface ``target`` is directly attached to (longest match, no gateway), or None."""
    best = _longest_match(target, routes)
    if best is None or best.gateway is not None or best.interface == "lo":
        return None
    return best.interface


def egress_interface(target: IPAddress, routes: Sequence[Route]) -> str | None:
    """The interface of the longest matching route to ``target`` (None: no route)."""
    best = _longest_match(target, routes)
    return None if best is None else best.interface


def neighbor_mac_v4(address: str, interface: str, arp_table: str) -> bytes | None:
    """The resolved MAC of ``address`` on ``interface`` from ``/proc/net/arp`` text."""
    for line in arp_table.splitlines()[1:]:
        fields = line.split()
        found = len(fields) >= 6 and fields[0] == address and fields[5] == interface
        if found and int(fields[2], 16) & 0x2:  # ATF_COM: resolution complete
            mac = bytes.fromhex(fields[3].replace(":", ""))
            return mac if any(mac) else None
    return None
