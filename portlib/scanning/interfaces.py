"""The network interface a scan is told to use (nmap's ``-e``): checked, and bound to.

A socket bound to an interface (``SO_BINDTODEVICE``) sends only through it and
takes its routes from it, so probes leave by that interface or fail as
unroutable, whatever the main routing table says.
"""

from __future__ import annotations

import socket

from portlib.errors import ScanError

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def check_interface(name: object) -> str | None:
    """``name`` if this machine has such an interface; None for none given."""
    if name is None:
        return None
    if not isinstance(name, str) or not name or "/" in name or len(name) >= 16:
        raise ScanError(f"interface must be an interface name like eth0, not {name!r}")
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise ScanError(f"no network interface named {name!r} here (see 'ip link')") from None
    return name


def interface_index(name: str) -> int:
    """The kernel's index of interface ``name`` (it must exist: see ``check_interface``)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise ScanError(f"network interface {name!r} is gone") from None


def bind_to_interface(sock: socket.socket, name: str | None) -> None:
    """Send (and route) ``sock``'s traffic through interface ``name`` only; None: as routed."""
    if name is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, name.encode())
