"""Read TCP and UDP socket tables through netlink ``sock_diag``, as ``ss`` does.

A kernel dump over ``NETLINK_SOCK_DIAG`` costs less than formatting and
re-parsing ``/proc/net/tcp`` text, which matters with tens of thousands of
sockets. The request encoder and reply decoder are pure (bytes in, values out);
only :func:`dump` touches a socket. Values match what the ``/proc/net`` parser
gives for the same sockets (see the notes on :func:`decode_messages`).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from portlib.model import Endpoint, Family, Protocol, Socket, SocketState
from portlib.socktable.procnet import STATES_BY_PROTOCOL

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_BOUND_INACTIVE = 13
# Every state but BOUND_INACTIVE: since Linux 6.9 asking for that bit also dumps
# TCP sockets that are bound but neither listening nor connecting (reported as
# CLOSE). /proc/net/tcp and `ss -a` leave those out, and so do we.
ALL_STATES = 0xFFFFFFFF & ~(1 << TCP_BOUND_INACTIVE)

AF_BY_FAMILY: Mapping[Family, int] = MappingProxyType({Family.INET: 2, Family.INET6: 10})
FAMILY_BY_AF: Mapping[int, Family] = MappingProxyType({2: Family.INET, 10: Family.INET6})
IPPROTO_BY_PROTOCOL: Mapping[Protocol, int] = MappingProxyType({Protocol.TCP: 6, Protocol.UDP: 17})

_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 bytes).
_REQUEST = struct.Struct("=BBBBI48x")
# nlmsghdr, then inet_diag_msg: family, state, timer, retrans; sockid (ports and
# addresses big-endian, kept as bytes); interface and cookie skipped; expires,
# rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=IHHII BBBB 2s2s16s16s 12x IIIII")
_HEADER_LEN = _NLMSGHDR.size
_ERRNO = struct.Struct("=i")


class SockDiagError(OSError):
    """The kernel refused or aborted the dump (no ``*_diag`` module, not permitted...)."""


def encode_request(
    protocol: Protocol,
    family: Family,
    *,
    seq: int = 1,
    states: int = ALL_STATES,
    local_port: int | None = None,
) -> bytes:
    """A ``SOCK_DIAG_BY_FAMILY`` dump request for one protocol and family.

    With ``local_port`` the kernel itself keeps only sockets on that local port
    (a filter program: ``sport >= P`` and ``sport <= P``), as ``ss sport = :P`` asks.
    """
    body = _REQUEST.pack(AF_BY_FAMILY[family], IPPROTO_BY_PROTOCOL[protocol], 0, 0, states)
    if local_port is not None:
        body += _port_filter(local_port)
    header = _NLMSGHDR.pack(
        _HEADER_LEN + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


# inet_diag filter ops: (code, yes, no) then, for port tests, (0, 0, port). A test
# jumps `yes` bytes forward when true, `no` when false; landing exactly on the end
# accepts the socket, landing 4 bytes past it rejects it.
_BC_OP = struct.Struct("=BBH")
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3


def _port_filter(port: int) -> bytes:
    program = (
        _BC_OP.pack(INET_DIAG_BC_S_GE, 8, 16 + 4)
        + _BC_OP.pack(0, 0, port)
        + _BC_OP.pack(INET_DIAG_BC_S_LE, 8, 8 + 4)
        + _BC_OP.pack(0, 0, port)
    )
    attribute = struct.pack("=HH", 4 + len(program), INET_DIAG_REQ_BYTECODE)
    return attribute + program


# Decoded values keyed by their raw bytes: a busy server repeats a few
# addresses and local endpoints thousands of times, so most lookups build nothing.
_CACHE_LIMIT = 1 << 16
# One cache per family: IPv4's 0.0.0.0 and IPv6's :: arrive as the same 16 zero bytes.
_endpoints: dict[Family, dict[bytes, Endpoint]] = {Family.INET: {}, Family.INET6: {}}
_addresses: dict[Family, dict[bytes, IPv4Address | IPv6Address]] = {
    Family.INET: {},
    Family.INET6: {},
}
_FAMILIES = dict(FAMILY_BY_AF)  # plain dicts: faster lookups in the per-socket loop
_STATES = {p: dict(states) for p, states in STATES_BY_PROTOCOL.items()}


def _new_endpoint(key: bytes, port: bytes, raw: bytes, family: Family) -> Endpoint:
    endpoints, addresses = _endpoints[family], _addresses[family]
    if len(endpoints) >= _CACHE_LIMIT:
        endpoints.clear()
        addresses.clear()
    address = addresses.get(raw)
    if address is None:
        address = IPv4Address(raw[:4]) if family is Family.INET else IPv6Address(raw)
        addresses[raw] = address
    endpoint = endpoints[key] = Endpoint(address, int.from_bytes(port, "big"))
    return endpoint


def decode_messages(
    data: bytes | bytearray | memoryview, protocol: Protocol, out: list[Socket], *, seq: int = 1
) -> bool:
    """Decode one netlink read, appending sockets to ``out``; True once the dump is done.

    Queues follow ``/proc/net/tcp``'s meaning so both sources agree: for a
    listening socket the kernel's diag reply puts the backlog limit in the write
    queue, which ``/proc`` (and this function) report as 0. Request sockets
    (half-open connections) come as ``SYN-RECV`` here; ``/proc`` calls them
    ``NEW-SYN-RECV``.
    """
    states = _STATES[protocol]
    families = _FAMILIES
    caches = _endpoints
    listen = SocketState.LISTEN
    unpack = _MESSAGE.unpack_from
    message_size = _MESSAGE.size
    size = len(data)
    offset = 0
    while offset + _HEADER_LEN <= size:
        if offset + message_size <= size:
            fields = unpack(data, offset)
            length, kind, msg_seq = fields[0], fields[1], fields[3]
        else:
            length, kind, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _HEADER_LEN or offset + length > size:
            raise SockDiagError(0, f"truncated netlink message at byte {offset}")
        if msg_seq == seq:
            if kind == SOCK_DIAG_BY_FAMILY and length >= message_size:
                (_, _, _, _, _, af, code, _, _, sport, dport, src, dst, _, rq, wq, uid, inode) = (
                    fields
                )
                family = families.get(af)
                state = states.get(code)
                if family is not None and state is not None:
                    endpoints = caches[family]
                    key = sport + src
                    local = endpoints.get(key) or _new_endpoint(key, sport, src, family)
                    key = dport + dst
                    remote = endpoints.get(key) or _new_endpoint(key, dport, dst, family)
                    if state is listen:
                        wq = 0
                    out.append(Socket(protocol, family, local, remote, state, inode, uid, rq, wq))
            elif kind == NLMSG_DONE:
                _raise_if_error(data, offset, length, "dump aborted")
                return True
            elif kind == NLMSG_ERROR:
                _raise_if_error(data, offset, length, "request refused")
                return True
        offset += (length + 3) & ~3
    return False


def _raise_if_error(
    data: bytes | bytearray | memoryview, offset: int, length: int, what: str
) -> None:
    if length >= _HEADER_LEN + _ERRNO.size:
        (error,) = _ERRNO.unpack_from(data, offset + _HEADER_LEN)
        if error < 0:
            raise SockDiagError(-error, f"sock_diag {what}: {os.strerror(-error)}")


def dump(protocol: Protocol, family: Family, *, local_port: int | None = None) -> list[Socket]:
    """Every socket of one protocol and family in this network namespace (or on one local port).

    Raises :class:`SockDiagError` (an ``OSError``) when netlink cannot answer;
    callers fall back to ``/proc/net``.
    """
    out: list[Socket] = []
    seq = 1
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        request = encode_request(protocol, family, seq=seq, local_port=local_port)
        sock.sendto(request, (0, 0))
        buffer = bytearray(1 << 17)
        view = memoryview(buffer)
        while True:
            count = sock.recv_into(buffer)
            if count == 0:
                raise SockDiagError(0, "netlink socket closed before the dump ended")
            if decode_messages(view[:count], protocol, out, seq=seq):
                return out
