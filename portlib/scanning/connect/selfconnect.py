"""Telling a connection to ourselves from an open port.

A probe to a port of this machine can connect to itself (the kernel picked the
scanned port as the source port) or to another probe socket of the scan (a
simultaneous open). Neither is a listener: such a port is closed.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from portlib.errors import ParseError
from portlib.model import Family, Protocol, SocketState
from portlib.scanning.connect.probes import Probe
from portlib.socktable.procnet import INET_TABLE_FILES, parse_inet_table

_TCP_TABLES = tuple(
    (family, f"/proc/net/{INET_TABLE_FILES[(Protocol.TCP, family)]}")
    for family in (Family.INET, Family.INET6)
)


def listening_ports() -> frozenset[int] | None:
    """TCP ports with a listening socket in this network namespace; None without /proc."""
    ports: set[int] = set()
    read = False
    for family, path in _TCP_TABLES:
        try:
            with open(path) as table:
                text = table.read()
            sockets = parse_inet_table(text, Protocol.TCP, family, source=path)
        except (OSError, ParseError):
            continue
        ports.update(s.local.port for s in sockets if s.state is SocketState.LISTEN)
        read = True
    return frozenset(ports) if read else None


class SelfConnects:
    """The phantom check of one engine run, with what it learnt so far."""

    __slots__ = ("count", "listening", "phantoms")

    def __init__(self) -> None:
        self.count = 0  # phantoms caught
        # The far ends of simultaneous opens seen: closed too, when their turn comes.
        self.phantoms: set[tuple[str, int]] = set()
        self.listening: frozenset[int] | None = frozenset()  # None: cannot tell

    def is_phantom(self, sock: socket.socket, probes: Iterable[Probe]) -> bool:
        """``sock`` (connected) reached itself or the socket of one of ``probes``."""
        local = sock.getsockname()[:2]
        peer = sock.getpeername()[:2]
        if local[0] != peer[0]:
            return False  # a connection to ourselves needs our own address at both ends
        if local == peer or local in self.phantoms:
            return True
        for other in probes:
            if other.sock is sock or other.addr[0] != peer[0]:
                continue
            with contextlib.suppress(OSError):
                if other.sock.getsockname()[:2] == peer:
                    self.phantoms.add(peer)
                    return True
        # A probe socket of another worker process is invisible from here; what
        # tells a real open port is a listener on it in this network namespace.
        port = int(peer[1])
        if self.listening is not None and port not in self.listening:
            self.listening = listening_ports()
        return self.listening is not None and port not in self.listening
