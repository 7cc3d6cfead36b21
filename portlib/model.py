"""Values shared by every part of portlib: frozen, slotted dataclasses and StrEnums.

Nothing here does I/O. Enum values are the words the tools people know print
(nmap's states and reasons, ss's socket states), so ``str(x)`` and JSON output
read the same as those tools.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from portlib.socktable.details import SocketDetails

IPAddress = IPv4Address | IPv6Address


class Protocol(StrEnum):
    """Transport protocol of a socket or a probe."""

    TCP = "tcp"
    UDP = "udp"
    RAW = "raw"


class Family(StrEnum):
    """Address family, in the words ``ss`` uses for ``-f``."""

    INET = "inet"
    INET6 = "inet6"
    UNIX = "unix"


class SocketState(StrEnum):
    """Kernel socket state, spelled as ``ss`` prints it.

    TCP sockets take every kernel state (``include/net/tcp_states.h``). UDP and
    raw sockets are ``UNCONN`` unless connected (``ESTAB``), as ``ss`` shows them.
    """

    ESTABLISHED = "ESTAB"
    SYN_SENT = "SYN-SENT"
    SYN_RECV = "SYN-RECV"
    FIN_WAIT1 = "FIN-WAIT-1"
    FIN_WAIT2 = "FIN-WAIT-2"
    TIME_WAIT = "TIME-WAIT"
    CLOSE = "UNCONN"
    CLOSE_WAIT = "CLOSE-WAIT"
    LAST_ACK = "LAST-ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    NEW_SYN_RECV = "NEW-SYN-RECV"
    BOUND_INACTIVE = "BOUND-INACTIVE"
    # unix sockets (/proc/net/unix "St" column): SS_UNCONNECTED .. SS_DISCONNECTING
    CONNECTING = "CONNECTING"
    DISCONNECTING = "DISCONNECTING"


class PortState(StrEnum):
    """State of a scanned port, in nmap's words."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    UNFILTERED = "unfiltered"
    OPEN_FILTERED = "open|filtered"
    CLOSED_FILTERED = "closed|filtered"


class Reason(StrEnum):
    """Why a port or host got its state, in nmap's reason words (``--reason``)."""

    SYN_ACK = "syn-ack"
    RESET = "reset"
    CONN_REFUSED = "conn-refused"
    NO_RESPONSE = "no-response"
    PORT_UNREACH = "port-unreach"
    HOST_UNREACH = "host-unreach"
    NET_UNREACH = "net-unreach"
    PROTO_UNREACH = "proto-unreach"
    ADMIN_PROHIBITED = "admin-prohibited"
    HOST_PROHIBITED = "host-prohibited"
    NET_PROHIBITED = "net-prohibited"
    TIME_EXCEEDED = "time-exceeded"
    DEST_UNREACH = "dest-unreach"  # an unreachable code nmap gives no name of its own
    NO_ROUTE = "no-route"  # ICMPv6 unreachable code 0
    BEYOND_SCOPE = "beyond-scope"  # ICMPv6 unreachable code 2
    REJECT_ROUTE = "reject-route"  # ICMPv6 unreachable code 6
    PARAM_PROBLEM = "param-problem"  # ICMPv6 parameter problem
    UDP_RESPONSE = "udp-response"
    ECHO_REPLY = "echo-reply"
    TIMESTAMP_REPLY = "timestamp-reply"
    ARP_RESPONSE = "arp-response"
    ND_RESPONSE = "nd-response"
    LOCALHOST_RESPONSE = "localhost-response"
    USER_SET = "user-set"
    UNKNOWN_RESPONSE = "unknown-response"


class HostState(StrEnum):
    """Whether a scanned host answered, in nmap's words."""

    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


class ScanMethod(StrEnum):
    """How ports are probed; the CLI letters are nmap's (-sT, -sS, -sA, -sU, -sn)."""

    CONNECT = "connect"
    SYN = "syn"
    ACK = "ack"
    UDP = "udp"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and a port, printed as ``ss`` does: ``127.0.0.1:80``, ``[::1]:80``.

    Example:

    >>> from ipaddress import ip_address
    >>> import portlib
    >>> str(portlib.Endpoint(ip_address("::1"), 8000))
    '[::1]:8000'
    """

    address: IPAddress
    port: int

    def __str__(self) -> str:
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Process:
    """One holder of a socket: a process and the file descriptor it holds it under.

    Example:

    >>> import portlib
    >>> owner = portlib.who_uses(8000)[0].owners[0]  # doctest: +SKIP
    >>> owner.pid, owner.name, owner.user, owner.fd  # doctest: +SKIP
    (24092, 'python', 'root', 3)
    """

    pid: int
    name: str
    cmdline: tuple[str, ...]
    user: str | None
    fd: int


@dataclass(frozen=True, slots=True)
class Socket:
    """An internet socket from the kernel's tables (``/proc/net/tcp`` and friends).

    ``owners`` lists every (process, fd) holding it: forked servers share one socket.
    It is empty when processes were not asked for or could not be read.
    ``details`` holds what ``ss -e -o -i -m`` add, when a listing asks for them.

    Example:

    >>> import portlib
    >>> sock = portlib.who_uses(8000)[0]  # doctest: +SKIP
    >>> str(sock.local), sock.state.value, sock.owners[0].name  # doctest: +SKIP
    ('127.0.0.1:8000', 'LISTEN', 'python')
    """

    protocol: Protocol
    family: Family
    local: Endpoint
    remote: Endpoint
    state: SocketState
    inode: int
    uid: int
    rx_queue: int
    tx_queue: int
    owners: tuple[Process, ...] = ()
    details: SocketDetails | None = None


@dataclass(frozen=True, slots=True)
class UnixSocket:
    """A unix domain socket from ``/proc/net/unix``; ``path`` is None for unnamed ones.

    Abstract socket names start with ``@``, as ``ss`` prints them.

    Example:

    >>> import portlib
    >>> [(s.path, s.type, s.state.value) for s in portlib.listening("unix")]  # doctest: +SKIP
    [('/tmp/app.sock', 'stream', 'LISTEN')]
    """

    path: str | None
    type: str
    state: SocketState
    inode: int
    flags: int
    refcount: int
    owners: tuple[Process, ...] = ()

    @property
    def family(self) -> Family:
        return Family.UNIX


@dataclass(frozen=True, slots=True)
class PortRanges:
    """The kernel's port policy (``/proc/sys/net/ipv4/ip_local_*``).

    Example:

    >>> import portlib
    >>> ranges = portlib.PortRanges(range(32768, 61000), 1024, frozenset({8080}))
    >>> 40000 in ranges.ephemeral, 80 < ranges.unprivileged_start, 8080 in ranges.reserved
    (True, True, True)
    """

    ephemeral: range
    unprivileged_start: int
    reserved: frozenset[int]

    def is_privileged(self, port: int) -> bool:
        """Whether binding ``port`` needs ``CAP_NET_BIND_SERVICE``."""
        return port < self.unprivileged_start

    def is_ephemeral(self, port: int) -> bool:
        """Whether the kernel may hand ``port`` out for outgoing connections."""
        return port in self.ephemeral


@dataclass(frozen=True, slots=True)
class Service:
    """A registered service on one port (``/etc/services`` names, nmap's frequencies).

    ``frequency`` is the fraction of scanned hosts nmap found this port open on
    (0..1), None when nmap does not list the port.

    Example:

    >>> import portlib
    >>> portlib.service_for_port(22)
    Service(name='ssh', port=22, protocol=<Protocol.TCP: 'tcp'>, aliases=(), frequency=0.182286)
    """

    name: str
    port: int
    protocol: Protocol
    aliases: tuple[str, ...] = ()
    frequency: float | None = None


class DetectionMethod(StrEnum):
    """How a port's service name was found, in nmap's words (``<service method=>``)."""

    PROBED = "probed"  # the server's own bytes said so
    TABLE = "table"  # only the registry's name for the port number


@dataclass(frozen=True, slots=True)
class Certificate:
    """Facts from the certificate a TLS server presented (not verified: detection only).

    ``subject`` and ``issuer`` are RFC 4514-like strings (``CN=lab,O=portlib``);
    ``alt_names`` holds the subjectAltName DNS names and IP addresses; ``not_before``
    and ``not_after`` are aware UTC datetimes.

    Example:

    >>> import portlib
    >>> found = portlib.detect_services([("192.0.2.10", 443)])  # doctest: +SKIP
    >>> cert = found[0].detected.certificate  # doctest: +SKIP
    >>> cert.subject, cert.alt_names, cert.self_signed  # doctest: +SKIP
    ('CN=lab.example,O=portlib lab', ('lab.example', '192.0.2.10'), True)
    """

    subject: str
    issuer: str
    alt_names: tuple[str, ...]
    not_before: _dt.datetime | None
    not_after: _dt.datetime | None
    self_signed: bool


@dataclass(frozen=True, slots=True)
class DetectedService:
    """What service detection (``-sV``) found on one port.

    ``name`` is nmap's service word (``ssh``, ``http``); ``tunnel`` is ``"ssl"`` when it
    speaks inside TLS; ``confidence`` is nmap's ``conf`` (10 probed and certain, 3 from
    the registry). ``banner`` holds the first bytes the server sent, capped.

    Example:

    >>> import portlib
    >>> found = portlib.detect_services([("192.0.2.10", 22)])  # doctest: +SKIP
    >>> s = found[0].detected  # doctest: +SKIP
    >>> s.name, s.product, s.version, str(s.method)  # doctest: +SKIP
    ('ssh', 'OpenSSH', '9.2p1 Debian 2+deb12u3', 'probed')
    """

    name: str
    method: DetectionMethod
    confidence: int
    product: str | None = None
    version: str | None = None
    extra_info: str | None = None
    os_hint: str | None = None
    device_hint: str | None = None
    tunnel: str | None = None
    cpe: tuple[str, ...] = ()
    banner: bytes = b""
    certificate: Certificate | None = None

    def service_text(self) -> str:
        """nmap's SERVICE column under ``-sV``: ``ssl/http``; ``?`` when only guessed."""
        name = f"{self.tunnel}/{self.name}" if self.tunnel else self.name
        return name if self.method is DetectionMethod.PROBED else f"{name}?"

    def version_text(self) -> str:
        """nmap's VERSION column: product, version and (extra info), space-separated."""
        parts = [p for p in (self.product, self.version) if p]
        if self.extra_info:
            parts.append(f"({self.extra_info})")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class PortResult:
    """The verdict on one probed port.

    Example:

    >>> from ipaddress import ip_address
    >>> from portlib import PortResult, PortState, Protocol, Reason
    >>> r = PortResult(ip_address("192.0.2.1"), 22, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK)
    >>> f"{r.port}/{r.protocol} {r.state} ({r.reason})"
    '22/tcp open (syn-ack)'
    """

    host: IPAddress
    port: int
    protocol: Protocol
    state: PortState
    reason: Reason
    rtt: float | None = None
    service: str | None = None
    detected: DetectedService | None = None  # filled by service detection (-sV)


@dataclass(frozen=True, slots=True)
class FoldedReason:
    """Folded ports of one state that share a reason and a protocol (nmap's
    ``<extrareasons>``): ``ranges`` are inclusive ``(first, last)`` pairs, ascending.

    Example:

    >>> from portlib import FoldedReason, Protocol, Reason
    >>> group = FoldedReason(Reason.RESET, Protocol.TCP, ((1, 21), (23, 79)))
    >>> group.count, list(group.ports())[:3]
    (78, [1, 2, 3])
    """

    reason: Reason
    protocol: Protocol
    ranges: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def ports(self) -> Iterator[int]:
        """The port numbers, ascending."""
        for first, last in self.ranges:
            yield from range(first, last + 1)


@dataclass(frozen=True, slots=True)
class FoldedPorts:
    """A host's ports in one state, kept as counts and ranges instead of one
    PortResult each (nmap's ``<extraports>``, "Not shown: 997 closed tcp ports").

    A scan folds a state other than ``open`` once a host has more than 25 ports
    in it (``portlib.folding``); ``HostResult.all_ports()`` expands them again.

    Example:

    >>> import portlib
    >>> host = portlib.scan("127.0.0.1", "1-1000").hosts[0]  # doctest: +SKIP
    >>> [(f.state.value, f.count) for f in host.extra_ports]  # doctest: +SKIP
    [('closed', 999)]
    """

    state: PortState
    reasons: tuple[FoldedReason, ...]

    @property
    def count(self) -> int:
        return sum(group.count for group in self.reasons)


@dataclass(frozen=True, slots=True)
class HostResult:
    """One scanned host: whether it is up, why, and its port verdicts (ascending).

    ``latency`` is the round-trip time of the answer that showed the host up (or,
    for hosts not probed by discovery, the fastest port answer), in seconds.
    ``timed_out``: the scan's ``host_timeout`` passed before every port of the host
    was decided; as nmap does, such a host is reported with no ports.
    ``extra_ports``: the states folded away (nmap's ``extraports``): a scan lists
    each port in ``ports`` only when its state is worth listing (``open``, or a
    state with at most 25 of the host's ports) and counts the rest here;
    ``all_ports()`` gives every verdict, folded ones expanded.

    Example:

    >>> import portlib
    >>> host = portlib.scan("localhost", "22,8000").hosts[0]  # doctest: +SKIP
    >>> host.hostname, host.state, [(p.port, str(p.state)) for p in host.ports]  # doctest: +SKIP
    ('localhost', <HostState.UP: 'up'>, [(22, 'closed'), (8000, 'open')])
    """

    address: IPAddress
    hostname: str | None
    state: HostState
    reason: Reason
    ports: tuple[PortResult, ...] = ()
    latency: float | None = None
    timed_out: bool = False
    extra_ports: tuple[FoldedPorts, ...] = ()

    def open_ports(self) -> tuple[PortResult, ...]:
        return tuple(p for p in self.ports if p.state is PortState.OPEN)

    def all_ports(self) -> list[PortResult]:
        """Every port verdict, the folded ones expanded, by port (TCP first on a tie).

        Folded verdicts come back with no ``rtt`` and no ``service``: a fold keeps
        only state, reason and protocol.
        """
        ports = list(self.ports)
        address = self.address
        for folded in self.extra_ports:
            state = folded.state
            for group in folded.reasons:
                protocol, reason = group.protocol, group.reason
                ports.extend(
                    PortResult(address, number, protocol, state, reason) for number in group.ports()
                )
        ports.sort(key=_tcp_first)
        return ports

    def state_counts(self) -> dict[PortState, int]:
        """How many of the host's ports are in each state, folded ones included."""
        counts: dict[PortState, int] = {}
        for port in self.ports:
            counts[port.state] = counts.get(port.state, 0) + 1
        for folded in self.extra_ports:
            counts[folded.state] = counts.get(folded.state, 0) + folded.count
        return counts


def _tcp_first(port: PortResult) -> tuple[int, bool]:
    return (port.port, port.protocol is not Protocol.TCP)


@dataclass(frozen=True, slots=True)
class ScanReport:
    """A whole scan: hosts in target order, how it ran, and whether it finished.

    ``interrupted`` is True when the scan was cancelled or hit Ctrl-C; the
    report then holds every verdict decided before that.

    Example:

    >>> import portlib
    >>> report = portlib.scan("localhost", "22,8000")  # doctest: +SKIP
    >>> [(p.port, str(p.state)) for p in report.open_ports()]  # doctest: +SKIP
    [(8000, 'open')]
    >>> portlib.dump_report(report, "scan.xml")  # doctest: +SKIP
    >>> [p.port for p in portlib.load_report("scan.xml").open_ports()]  # doctest: +SKIP
    [8000]
    """

    hosts: tuple[HostResult, ...]
    method: ScanMethod
    started: _dt.datetime
    elapsed: float
    protocols: tuple[Protocol, ...] = (Protocol.TCP,)
    ports_per_host: int = 0
    args: tuple[str, ...] = ()
    interrupted: bool = False
    probes_sent: int = 0

    def __iter__(self) -> Iterator[HostResult]:
        return iter(self.hosts)

    def up_hosts(self) -> tuple[HostResult, ...]:
        return tuple(h for h in self.hosts if h.state is HostState.UP)

    def open_ports(self) -> tuple[PortResult, ...]:
        """Every open port of every host, in host then port order."""
        return tuple(p for h in self.hosts for p in h.ports if p.state is PortState.OPEN)
