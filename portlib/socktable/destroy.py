"""``ss -K``: close the sockets a filter selects, from outside their process, with SOCK_DESTROY.

For each TCP/UDP table the kernel dumps the sockets passing the filter; each
is then named back to it in a ``SOCK_DESTROY`` request (same family, protocol
and socket id, cookie included, so a socket that came and went meanwhile is
not hit). The kernel aborts it: a TCP peer gets a reset, the owner sees
ECONNABORTED. It needs CAP_NET_ADMIN and a kernel built with
``CONFIG_INET_DIAG_DESTROY``; without it the kernel answers EOPNOTSUPP and
:class:`DestroyUnsupported` says what to do instead.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import Iterable

from portlib.errors import PortlibError, PrivilegeError
from portlib.model import Family, Protocol, Socket
from portlib.socktable import netns, sockdiag
from portlib.socktable.query import CompiledFilter, Table

DESTROYABLE = frozenset(sockdiag.IPPROTO_BY_PROTOCOL)  # TCP and UDP have a destroy handler


class DestroyUnsupported(PortlibError, OSError):
    """This kernel cannot close sockets from outside (no CONFIG_INET_DIAG_DESTROY)."""


INET_DIAG_REQ_PROTOCOL = 3
_PROTOCOL_ATTRIBUTE = struct.Struct("=HHI")


def destroy_request(af: int, ip_protocol: int, sockid: bytes, *, seq: int) -> bytes:
    """A ``SOCK_DESTROY`` request for one socket id (as a dump reply gave it), asking for an ack.

    Protocol numbers above 255 (MPTCP's 262) do not fit the request's byte; they
    travel in an ``INET_DIAG_REQ_PROTOCOL`` attribute instead.
    """
    small = ip_protocol if ip_protocol <= 0xFF else 0
    body = sockdiag.REQUEST.pack(af, small, 0, 0, sockdiag.ALL_STATES) + sockid
    if small != ip_protocol:
        body += _PROTOCOL_ATTRIBUTE.pack(
            _PROTOCOL_ATTRIBUTE.size, INET_DIAG_REQ_PROTOCOL, ip_protocol
        )
    flags = sockdiag.NLM_F_REQUEST | sockdiag.NLM_F_ACK
    header = sockdiag.NLMSGHDR.pack(
        sockdiag.HEADER_LEN + len(body), sockdiag.SOCK_DESTROY, flags, seq, 0
    )
    return header + body


def _dump_ids(
    sock: socket.socket, protocol: Protocol, family: Family, compiled: CompiledFilter
) -> list[tuple[Socket, bytes]]:
    """The sockets passing ``compiled``, each with its raw socket id from the kernel."""
    request = sockdiag.encode_request(
        protocol, family, seq=1, states=compiled.states, bytecode=compiled.bytecode
    )
    sock.sendto(request, (0, 0))
    found: list[tuple[Socket, bytes]] = []
    while True:
        data = sock.recv(1 << 17)
        if not data:
            raise sockdiag.SockDiagError(0, "netlink socket closed before the dump ended")
        for offset, length, kind in sockdiag.messages(data, 1):
            if kind in (sockdiag.NLMSG_DONE, sockdiag.NLMSG_ERROR):
                return found
            one = sockdiag.decode_one(data, offset, length, protocol)
            if one is not None:
                start = offset + sockdiag.SOCKID_OFFSET
                found.append((one, data[start : start + sockdiag.SOCKID_SIZE]))


def destroy_one(sock: socket.socket, af: int, ip_protocol: int, sockid: bytes, seq: int) -> bool:
    """Ask the kernel to destroy one socket; False if it was already gone.

    Raises DestroyUnsupported (EOPNOTSUPP), PrivilegeError (EPERM), or
    SockDiagError for any other refusal.
    """
    sock.sendto(destroy_request(af, ip_protocol, sockid, seq=seq), (0, 0))
    while True:
        data = sock.recv(1 << 16)
        try:
            for _offset, _length, kind in sockdiag.messages(data, seq):
                if kind == sockdiag.NLMSG_ERROR:
                    return True
        except sockdiag.SockDiagError as exc:
            if exc.errno == errno.ENOENT:
                return False
            if exc.errno == errno.EOPNOTSUPP:
                raise DestroyUnsupported(
                    errno.EOPNOTSUPP,
                    "this kernel cannot close sockets from outside (it lacks "
                    "CONFIG_INET_DIAG_DESTROY); stop the process instead: portlib who PORT --kill",
                ) from None
            if exc.errno == errno.EPERM:
                raise PrivilegeError(
                    "closing other processes' sockets (-K) needs root (CAP_NET_ADMIN)"
                ) from None
            raise


def destroy_plan(
    plan: Iterable[tuple[Table, CompiledFilter]], *, namespace: str | None = None
) -> list[Socket]:
    """Destroy every TCP/UDP socket the (table, filter) ``plan`` selects; return the destroyed.

    Sockets that close by themselves meanwhile are left out. Raw and unix
    tables are skipped: the kernel has no way to destroy those.
    """
    destroyed: list[Socket] = []
    with netns.entered(namespace) if namespace else contextlib.nullcontext():
        sock = sockdiag.open_socket()
    with sock:
        seq = 1
        for (protocol, family), compiled in plan:
            if protocol not in DESTROYABLE or not compiled.states:
                continue
            af, ip_protocol = sockdiag.AF_BY_FAMILY[family], sockdiag.IPPROTO_BY_PROTOCOL[protocol]
            for found, sockid in _dump_ids(sock, protocol, family, compiled):
                seq += 1
                if destroy_one(sock, af, ip_protocol, sockid, seq):
                    destroyed.append(found)
    return destroyed


__all__ = ["DestroyUnsupported", "destroy_one", "destroy_plan", "destroy_request"]
