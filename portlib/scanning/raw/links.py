"""How a probe reaches its target's link: routes, our interface's MAC, the neighbor's MAC.

Raw IP sockets work for every target; a directly attached IPv4 target can
take batches through a TX ring once its link header is known. ``Links`` keeps
one TX ring per interface and fills in a host's link header when the kernel
has resolved its neighbor (our first probes, through the raw IP socket, make
it resolve). The parsing is pure (``routes``); this module reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass

from portlib.model import IPAddress
from portlib.scanning.raw.io.txring import TxRing, ethernet_header
from portlib.scanning.raw.routes import (
    Route,
    neighbor_mac_v4,
    on_link_interface,
    parse_route_v4,
    parse_route_v6,
)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def read_routes(version: int) -> list[Route]:
    """This namespace's main routing table for IPv4 or IPv6 (empty if unreadable)."""
    text = _read("/proc/net/route" if version == 4 else "/proc/net/ipv6_route")
    if text is None:
        return []
    return parse_route_v4(text) if version == 4 else parse_route_v6(text)


def interface_mac(interface: str) -> bytes | None:
    """The MAC address of ``interface`` (None for interfaces without one)."""
    text = _read(f"/sys/class/net/{interface}/address")
    try:
        mac = bytes.fromhex((text or "").strip().replace(":", ""))
    except ValueError:
        return None
    return mac if len(mac) == 6 and any(mac) else None


def neighbor_mac(address: IPAddress, interface: str) -> bytes | None:
    """The kernel's resolved MAC of IPv4 ``address`` on ``interface``, if it has one."""
    table = _read("/proc/net/arp")
    return None if table is None else neighbor_mac_v4(str(address), interface, table)


@dataclass(slots=True)
class Link:
    """Where one host's probes go: a TX ring and its link header, once known."""

    ring: TxRing | None = None
    header: bytes = b""
    unresolved: tuple[str, bytes] | None = None  # (interface, our MAC) awaiting the neighbor


class Links:
    """The TX rings of a scan, one per interface, and each host's way onto them."""

    def __init__(self) -> None:
        self._rings: dict[str, TxRing | None] = {}

    def link_for(self, address: IPAddress, *, local: bool) -> Link:
        """The link of ``address``: no ring for local or IPv6 targets, else its interface's.

        Local targets stay on raw IP sockets: a frame injected on ``lo`` has no
        route attached, and the kernel drops 127.0.0.0/8 arriving that way as
        martian. The IPv6 neighbor table is not in /proc: those stay there too.
        """
        link = Link()
        if local or address.version != 4:
            return link
        interface = on_link_interface(address, read_routes(4))
        mac = interface_mac(interface) if interface else None
        if interface is not None and mac is not None:
            link.unresolved = (interface, mac)
            self.resolve(address, link)
        return link

    def resolve(self, address: IPAddress, link: Link) -> None:
        """Fill in ``link``'s header if the kernel has resolved ``address`` by now."""
        if link.unresolved is None:
            return
        interface, mac = link.unresolved
        neighbor = neighbor_mac(address, interface)
        if neighbor is None:
            return
        link.unresolved = None
        ring = self._ring(interface)
        if ring is not None:
            link.ring, link.header = ring, ethernet_header(neighbor, mac, 4)

    def _ring(self, interface: str) -> TxRing | None:
        if interface not in self._rings:
            try:
                self._rings[interface] = TxRing(interface)
            except OSError:
                self._rings[interface] = None  # no ring here: raw IP sockets still work
        return self._rings[interface]

    def flush(self) -> None:
        for ring in self._rings.values():
            if ring is not None:
                ring.flush()

    def close(self) -> None:
        for ring in self._rings.values():
            if ring is not None:
                ring.close()
        self._rings.clear()
