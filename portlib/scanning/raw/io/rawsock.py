"""The raw engine's sockets: senders, the filtered receiver, the held port.

Sending goes through ``IPPROTO_RAW`` sockets (we write the IP header; the kernel
routes and resolves the next hop's link address). Receiving goes through one
``AF_PACKET``/``SOCK_DGRAM`` socket with a kernel BPF filter, a big buffer
(``SO_RCVBUFFORCE``) and drop counters (``PACKET_STATISTICS``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import random
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, ip_address

from portlib.errors import ScanError
from portlib.model import IPAddress
from portlib.scanning.interfaces import bind_to_interface, interface_index
from portlib.scanning.privilege import privilege_error
from portlib.scanning.raw import bpf
from portlib.scanning.raw.links import read_routes
from portlib.scanning.raw.routes import egress_interface

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 64 << 20  # replies come in bursts: hold ~250,000 snapped replies


def raw_sender(family: socket.AddressFamily, interface: str | None = None) -> socket.socket:
    """A socket that sends whole IP packets (header included), through ``interface`` if given."""
    try:
        sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        raise privilege_error("raw scans (syn, ack, udp) and raw discovery") from None
    try:
        bind_to_interface(sock, interface)
    except OSError as exc:
        sock.close()
        raise ScanError(f"cannot send through interface {interface!r}: {exc.strerror}") from None
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return sock


def packet_receiver(program: bytes, *, protocol: int = ETH_P_ALL) -> socket.socket:
    """An AF_PACKET socket that only ever hands us what ``program`` accepts.

    Packets queued before the filter was attached are read and discarded (no
    probe has gone out yet, so none of them can be a reply).
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(protocol))
    except PermissionError:
        raise privilege_error("raw scans (syn, ack, udp) and raw discovery") from None
    try:
        # Our own probes are not replies: not even cloning them for the filter to
        # reject saves the kernel work per probe (on loopback, each packet passes twice).
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        attach_filter(sock, program)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.setblocking(False)
        while True:
            try:
                sock.recv(1)
            except BlockingIOError:
                break
        packet_drops(sock)  # reset the counters
    except BaseException:
        sock.close()
        raise
    return sock


def receive_interfaces(
    targets: Iterable[IPAddress], limit: int = 8, interface: str | None = None
) -> tuple[int, ...]:
    """Interface indexes replies from ``targets`` arrive on; () when unsure (accept all).

    Local and loopback targets answer on ``lo``; others on their route's interface,
    or on ``interface`` when the scan sends through that one only.
    """
    if interface is not None:
        return (interface_index(interface),)
    names: set[str] = set()
    routes = {4: read_routes(4), 6: read_routes(6)}
    for target in targets:
        if target.is_loopback or source_address(target) == target:
            names.add("lo")
            continue
        name = egress_interface(target, routes[target.version])
        if name is None:
            return ()
        names.add(name)
        if len(names) > limit:
            return ()
    try:
        return tuple(sorted(socket.if_nametoindex(n) for n in names))
    except OSError:
        return ()


def packet_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped on ``sock`` since the last call (reading resets it)."""
    stats = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    _packets, drops = struct.unpack("=II", stats)
    return int(drops)


def source_address(target: IPAddress, interface: str | None = None) -> IPAddress:
    """The address the kernel would send from to reach ``target`` (no packet is sent),
    through ``interface`` when one is given."""
    family = socket.AF_INET if isinstance(target, IPv4Address) else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            bind_to_interface(probe, interface)
            probe.connect((str(target), 9))
        except OSError as exc:
            through = f" through {interface}" if interface else ""
            raise ScanError(f"no route to {target}{through}: {exc.strerror}") from None
        return ip_address(probe.getsockname()[0])


def hold_port(sock_type: socket.SocketKind, rng: random.Random) -> tuple[int, list[socket.socket]]:
    """Bind an IPv4 and an IPv6 socket to one free port and keep them for the scan's life.

    The kernel then never hands that port to another connection, so replies to
    it are ours. Returns (port, sockets); the caller closes the sockets.
    """
    for _ in range(64):
        port = rng.randrange(40000, 60000)
        held: list[socket.socket] = []
        try:
            v4 = socket.socket(socket.AF_INET, sock_type)
            held.append(v4)
            v4.bind(("0.0.0.0", port))
            if socket.has_ipv6:
                v6 = socket.socket(socket.AF_INET6, sock_type)
                held.append(v6)
                v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                v6.bind(("::", port))
            if sock_type == socket.SOCK_DGRAM:
                _refuse_strangers(held)
            return port, held
        except OSError as exc:
            for s in held:
                s.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise ScanError(f"cannot hold a source port: {exc.strerror}") from None
    raise ScanError("cannot hold a source port: ports 40000-59999 look all taken")


def _refuse_strangers(held: list[socket.socket]) -> None:
    """Connect the held UDP sockets to a peer that never sends.

    A bound UDP socket would swallow datagrams to our port; connected, it only
    takes its peer's, so when a scan probes its own port on this host the
    kernel answers port-unreachable (closed), as it would without the scan.
    The port stays held: binds to it still fail.
    """
    for sock in held:
        peer = ("127.255.255.254", 9) if sock.family == socket.AF_INET else ("::1", 9)
        with contextlib.suppress(OSError):
            sock.connect(peer)


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER: ``struct sock_fprog { u16 len; struct sock_filter *filter; }``."""
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, bpf.SO_ATTACH_FILTER, fprog)
