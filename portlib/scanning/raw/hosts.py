"""The raw engine's targets: each host's address forms, sender, bound probes and link.

scapy builds the probe templates once per source address (usually once per
family); each host binds them to its destination, so a probe is then only
the template with the port and cookie patched in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Address

from portlib.model import IPAddress
from portlib.scanning.raw import templates
from portlib.scanning.raw.icmplimit import IcmpLimit
from portlib.scanning.raw.io import rawsock
from portlib.scanning.raw.links import Link, Links
from portlib.scanning.raw.wire import BoundProbe, Probe, ProbeTemplate

# Per source address: the default template, and the UDP payload templates by port.
_Templates = tuple[ProbeTemplate, dict[int, tuple[ProbeTemplate, ...]]]


@dataclass(slots=True)
class RawHost:
    """One target of a raw scan."""

    address: IPAddress
    key: bytes  # packed address, as replies carry it
    sockaddr: tuple[str, int]
    sock: socket.socket
    default: tuple[BoundProbe, ...]
    by_port: dict[int, tuple[BoundProbe, ...]]
    link: Link
    limit: IcmpLimit | None = None  # UDP, not loopback: its ICMP errors may be rate-limited

    def probes_for(self, port: int) -> tuple[BoundProbe, ...]:
        """The datagrams one probe of ``port`` sends (a UDP port may have several payloads)."""
        return self.by_port.get(port, self.default)


class HostBuilder:
    """Makes the ``RawHost`` of each target, sharing sockets and templates between them."""

    def __init__(
        self,
        kind: Probe,
        sport: int,
        links: Links,
        sockets: list[socket.socket],
        *,
        use_tx_ring: bool,
        now: float,
        interface: str | None = None,
    ) -> None:
        self._kind = kind
        self._sport = sport
        self._links = links
        self._sockets = sockets  # every socket opened here is appended: the scan closes them
        self._interface = interface  # nmap's -e: send through this one only, no TX ring
        self._use_tx_ring = use_tx_ring and interface is None
        self._now = now
        self._senders: dict[int, socket.socket] = {}
        self._templates: dict[IPAddress, _Templates] = {}

    def host(self, address: IPAddress) -> RawHost:
        family = socket.AF_INET if isinstance(address, IPv4Address) else socket.AF_INET6
        key = address.packed
        source = rawsock.source_address(address, self._interface)
        default, by_port = self._templates_for(source)
        local = address.is_loopback or source == address
        host = RawHost(
            address,
            key,
            (str(address), 0),
            self._sender(family),
            (default.bind(key),),
            {port: tuple(t.bind(key) for t in ts) for port, ts in by_port.items()},
            self._links.link_for(address, local=local) if self._use_tx_ring else Link(),
        )
        if self._kind is Probe.UDP and not address.is_loopback:  # Linux exempts loopback
            host.limit = IcmpLimit(since=self._now)
        return host

    def _sender(self, family: int) -> socket.socket:
        sock = self._senders.get(family)
        if sock is None:
            sock = rawsock.raw_sender(socket.AddressFamily(family), self._interface)
            self._sockets.append(sock)
            self._senders[family] = sock
        return sock

    def _templates_for(self, source: IPAddress) -> _Templates:
        cached = self._templates.get(source)
        if cached is None:
            build = templates.build_template
            kind, sport = self._kind, self._sport
            default = ProbeTemplate(build(kind, source, sport), kind)
            by_port: dict[int, tuple[ProbeTemplate, ...]] = {}
            if kind is Probe.UDP:
                for port, payloads in templates.udp_payloads().items():
                    by_port[port] = tuple(
                        ProbeTemplate(build(kind, source, sport, p), kind) for p in payloads
                    )
            cached = (default, by_port)
            self._templates[source] = cached
        return cached
