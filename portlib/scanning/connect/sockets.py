"""The connect engine's probe sockets: one epoll, a pool per family, the ICMP error queue."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
from collections.abc import Iterable

from portlib.scanning.connect.probes import Address
from portlib.scanning.connect.verdicts import Verdict, classify_icmp, parse_extended_err
from portlib.scanning.interfaces import bind_to_interface

# Linux constants the socket module does not export (linux/in.h, linux/in6.h).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_RECVERR_LEVELS = frozenset({(socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)})

# Closing sends a RST: no TIME_WAIT, no ephemeral port held after the probe.
_LINGER_ZERO = struct.pack("ii", 1, 0)
# Registered once per socket, edge-triggered: each state change of the socket
# (answer, error) queues one event; no epoll_ctl per probe.
_EPOLL_MASK = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP | select.EPOLLET
_ERRQUEUE_DRAIN = 8  # entries read per look: stale ones must not reach the next probe


class SocketPool:
    """Non-blocking TCP sockets registered on one epoll, reused while unconnected.

    A refused connect leaves its socket unconnected, ready for the next probe;
    a connected or failed one is discarded (closed, with its epoll entry).
    """

    __slots__ = ("epoll", "free", "interface")

    def __init__(self, interface: str | None = None) -> None:
        self.interface = interface  # every probe socket is bound to it (nmap's -e)
        self.epoll = select.epoll()
        self.free: dict[socket.AddressFamily, list[socket.socket]] = {
            socket.AF_INET: [],
            socket.AF_INET6: [],
        }

    def new(self, family: socket.AddressFamily) -> socket.socket:
        """A fresh probe socket (raises OSError when a local resource ran out)."""
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            bind_to_interface(sock, self.interface)
            self.epoll.register(sock.fileno(), _EPOLL_MASK)
        except BaseException:
            sock.close()
            raise
        return sock

    def release(self, sock: socket.socket, family: socket.AddressFamily) -> None:
        """A socket back in the unconnected state: keep it for the next probe."""
        self.free[family].append(sock)

    def discard(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(sock.fileno())
        sock.close()

    def close(self, also: Iterable[socket.socket] = ()) -> None:
        """Close ``also`` (the sockets in flight), every pooled socket and the epoll."""
        for sock in also:
            self.discard(sock)
        for free in self.free.values():
            for sock in free:
                self.discard(sock)
            free.clear()
        self.epoll.close()


def icmp_verdict(sock: socket.socket, addr: Address) -> Verdict | None:
    """The verdict of the ICMP message behind a connect error, from the error queue."""
    found: Verdict | None = None
    for _ in range(_ERRQUEUE_DRAIN):
        try:
            _data, ancdata, _flags, source = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
        except OSError:  # empty (BlockingIOError) or gone
            break
        if source is not None and tuple(source[:2]) != tuple(addr[:2]):
            continue  # about an earlier probe on this socket
        for level, kind, data in ancdata:
            if (level, kind) in _RECVERR_LEVELS:
                err = parse_extended_err(data)
                if err is not None:
                    found = classify_icmp(err) or found
    return found
