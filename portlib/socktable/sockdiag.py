"""Read TCP and UDP socket tables through netlink ``sock_diag``, as ``ss`` does.

A kernel dump over ``NETLINK_SOCK_DIAG`` costs less than formatting and
re-parsing ``/proc/net/tcp`` text, which matters with tens of thousands of
sockets, and the kernel can filter it: the request carries a state mask and,
optionally, a filter program (bytecode.py). The request encoder and the reply
decoders are pure (bytes in, values out); only :func:`dump` touches a socket.
Values match what the ``/proc/net`` parser gives for the same sockets (see the
notes on :func:`decode_messages`).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from portlib.model import Endpoint, Family, Protocol, Socket, SocketState
from portlib.socktable import diagext
from portlib.socktable.construct import fast_constructor
from portlib.socktable.details import SocketDetails, SocketTimer
from portlib.socktable.procnet import STATES_BY_PROTOCOL

NETLINK_SOCK_DIAG = 4
TCPDIAG_GETSOCK = 18
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
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

NLMSGHDR = struct.Struct("=IHHII")
# The older inet_diag_req: family, src_len, dst_len, ext, sockid, states, dbs.
COMPAT_REQUEST = struct.Struct("=BBBB48sII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid (48 bytes).
REQUEST = struct.Struct("=BBBBI")
SOCKID_SIZE = 48
# nlmsghdr, then inet_diag_msg: family, state, timer, retrans; sockid (ports and
# addresses big-endian, kept as bytes); interface and cookie skipped; expires,
# rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=IHHII BBBB 2s2s16s16s 12x IIIII")
# The same with the timer fields and the cookie, for listings that asked for details.
_FULL_MESSAGE = struct.Struct("=IHHII BBBB 2s2s16s16s 4xQ IIIII")
HEADER_LEN = NLMSGHDR.size
MESSAGE_LEN = HEADER_LEN + 72  # nlmsghdr + inet_diag_msg
SOCKID_OFFSET = HEADER_LEN + 4
_ERRNO = struct.Struct("=i")

_SOCKET_MESSAGES = frozenset(
    {SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK}
)  # replies carry the request's type
_new_socket = fast_constructor(Socket)
_new_endpoint = fast_constructor(Endpoint)


class SockDiagError(OSError):
    """The kernel refused or aborted the dump (no ``*_diag`` module, not permitted...)."""


def encode_request(
    protocol: Protocol,
    family: Family,
    *,
    seq: int = 1,
    states: int = ALL_STATES,
    ext: int = 0,
    bytecode: bytes = b"",
) -> bytes:
    """A ``SOCK_DIAG_BY_FAMILY`` dump request for one protocol and family.

    ``states`` is the kernel's state bit mask, ``ext`` the attributes to add
    (diagext.py), ``bytecode`` a whole ``INET_DIAG_REQ_BYTECODE`` attribute.
    """
    af, proto = AF_BY_FAMILY[family], IPPROTO_BY_PROTOCOL[protocol]
    body = REQUEST.pack(af, proto, ext, 0, states) + bytes(SOCKID_SIZE) + bytecode
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(HEADER_LEN + len(body), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body


def encode_tcp_request(
    *, seq: int = 1, states: int = ALL_STATES, ext: int = 0, bytecode: bytes = b""
) -> bytes:
    """A ``TCPDIAG_GETSOCK`` dump request: TCP sockets of both families in one pass.

    The kernel keeps this older request for compatibility and answers it with
    one walk of its TCP hash tables (as ``ss`` asks when no family is given),
    where two ``SOCK_DIAG_BY_FAMILY`` dumps walk them once per family.
    """
    body = COMPAT_REQUEST.pack(AF_BY_FAMILY[Family.INET], 0, 0, ext, bytes(SOCKID_SIZE), states, 0)
    body += bytecode
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(HEADER_LEN + len(body), TCPDIAG_GETSOCK, flags, seq, 0) + body


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


def endpoint(port: bytes, raw: bytes, family: Family) -> Endpoint:
    """The Endpoint for a big-endian port and a 16-byte address field, from the caches."""
    key = port + raw
    found = _endpoints[family].get(key)
    return found if found is not None else _remember(key, port, raw, family)


def _remember(key: bytes, port: bytes, raw: bytes, family: Family) -> Endpoint:
    endpoints, addresses = _endpoints[family], _addresses[family]
    if len(endpoints) >= _CACHE_LIMIT:
        endpoints.clear()
        addresses.clear()
    address = addresses.get(raw)
    if address is None:
        address = IPv4Address(raw[:4]) if family is Family.INET else IPv6Address(raw)
        addresses[raw] = address
    found = endpoints[key] = _new_endpoint(address, int.from_bytes(port, "big"))
    return found


def decode_messages(
    data: bytes | bytearray | memoryview, protocol: Protocol, out: list[Socket], *, seq: int = 1
) -> bool:
    """Decode one netlink read, appending sockets to ``out``; True once the dump is done.

    Queues follow ``/proc/net/tcp``'s meaning so both sources agree: for a
    listening socket the kernel's diag reply puts the backlog limit in the write
    queue, which ``/proc`` (and this function) report as 0. Request sockets
    (half-open connections) come as ``SYN-RECV`` here; ``/proc`` calls them
    ``NEW-SYN-RECV``.

    This loop runs once per socket of a listing, so it is written for speed:
    one unpack per message, cached endpoints, locals for every lookup.
    """
    states = _STATES[protocol]
    families = _FAMILIES
    caches = _endpoints
    remember = _remember
    new_socket = _new_socket
    append = out.append
    listen = SocketState.LISTEN
    unpack = _MESSAGE.unpack_from
    message_size = _MESSAGE.size
    size = len(data)
    offset = 0
    while offset + HEADER_LEN <= size:
        if offset + message_size <= size:
            fields = unpack(data, offset)
            length, kind, msg_seq = fields[0], fields[1], fields[3]
        else:
            length, kind, _flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < HEADER_LEN or offset + length > size:
            raise SockDiagError(0, f"truncated netlink message at byte {offset}")
        if msg_seq == seq:
            if kind in _SOCKET_MESSAGES and length >= message_size:
                (_, _, _, _, _, af, code, _, _, sport, dport, src, dst, _, rq, wq, uid, inode) = (
                    fields
                )
                family = families.get(af)
                state = states.get(code)
                if family is not None and state is not None:
                    endpoints = caches[family]
                    key = sport + src
                    local = endpoints.get(key) or remember(key, sport, src, family)
                    key = dport + dst
                    remote = endpoints.get(key) or remember(key, dport, dst, family)
                    append(
                        new_socket(
                            protocol,
                            family,
                            local,
                            remote,
                            state,
                            inode,
                            uid,
                            rq,
                            0 if state is listen else wq,
                        )
                    )
            elif kind in (NLMSG_DONE, NLMSG_ERROR):
                raise_if_error(data, offset, length, "dump aborted" if kind == NLMSG_DONE else "")
                return True
        offset += (length + 3) & ~3
    return False


def decode_detailed(
    data: bytes | bytearray | memoryview,
    protocol: Protocol,
    out: list[Socket],
    *,
    seq: int = 1,
    ext: int = 0,
    timers: bool = False,
) -> bool:
    """:func:`decode_messages`, plus each socket's :class:`SocketDetails`.

    The cookie, shutdown bits and v6only flag come with every reply; the timer
    when ``timers``; TCP info and memory when ``ext`` asked the kernel for them.
    """
    for offset, length, kind in messages(data, seq):
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            return True
        found = decode_one(data, offset, length, protocol, ext=ext, timers=timers)
        if found is not None:
            out.append(found)
    return False


def decode_one(
    data: bytes | bytearray | memoryview,
    offset: int,
    length: int,
    protocol: Protocol,
    *,
    ext: int = 0,
    timers: bool = False,
) -> Socket | None:
    """The socket (with details) of the ``SOCK_DIAG_BY_FAMILY`` message at ``offset``, if one."""
    if length < MESSAGE_LEN or NLMSGHDR.unpack_from(data, offset)[1] not in _SOCKET_MESSAGES:
        return None
    fields = _FULL_MESSAGE.unpack_from(data, offset)
    af, code, timer_code, retrans, sport, dport, src, dst = fields[5:13]
    cookie, expires, rq, wq, uid, inode = fields[13:]
    family = _FAMILIES.get(af)
    state = _STATES[protocol].get(code)
    if family is None or state is None:
        return None
    found = diagext.attributes(data, offset + MESSAGE_LEN, offset + length)
    details = _details(found, cookie, diagext.timer(timer_code, expires, retrans), ext, timers)
    local, remote = endpoint(sport, src, family), endpoint(dport, dst, family)
    wq = 0 if state is SocketState.LISTEN else wq
    return _new_socket(protocol, family, local, remote, state, inode, uid, rq, wq, (), details)


def _details(
    found: dict[int, memoryview],
    cookie: int,
    timer: SocketTimer,
    ext: int,
    timers: bool,
) -> SocketDetails:
    tcp = memory = None
    if ext & diagext.EXT_TCP_INFO and diagext.INET_DIAG_INFO in found:
        cong = found.get(diagext.INET_DIAG_CONG)
        congestion = None if cong is None else diagext.c_string(cong)
        tcp = diagext.decode_tcp_info(found[diagext.INET_DIAG_INFO], congestion)
    if ext & diagext.EXT_MEMORY and diagext.INET_DIAG_SKMEMINFO in found:
        memory = diagext.decode_memory(found[diagext.INET_DIAG_SKMEMINFO])
    shutdown = found.get(diagext.INET_DIAG_SHUTDOWN)
    v6only = found.get(diagext.INET_DIAG_SKV6ONLY)
    return SocketDetails(
        cookie=cookie,
        timer=timer if timers else None,
        tcp=tcp,
        memory=memory,
        shutdown=shutdown[0] if shutdown is not None and len(shutdown) else None,
        v6only=bool(v6only[0]) if v6only is not None and len(v6only) else None,
    )


def messages(data: bytes | bytearray | memoryview, seq: int) -> Iterator[tuple[int, int, int]]:
    """(offset, length, type) of each message of ``seq`` in one read; raises on kernel errors."""
    size = len(data)
    offset = 0
    while offset + HEADER_LEN <= size:
        length, kind, _flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < HEADER_LEN or offset + length > size:
            raise SockDiagError(0, f"truncated netlink message at byte {offset}")
        if msg_seq == seq:
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                raise_if_error(data, offset, length, "dump aborted" if kind == NLMSG_DONE else "")
            yield offset, length, kind
        offset += (length + 3) & ~3


def raise_if_error(
    data: bytes | bytearray | memoryview, offset: int, length: int, what: str
) -> None:
    """Raise SockDiagError for an ``NLMSG_ERROR``/``NLMSG_DONE`` carrying a negative errno."""
    if length >= HEADER_LEN + _ERRNO.size:
        (error,) = _ERRNO.unpack_from(data, offset + HEADER_LEN)
        if error < 0:
            raise SockDiagError(
                -error, f"sock_diag {what or 'request refused'}: {os.strerror(-error)}"
            )


def open_socket() -> socket.socket:
    """A ``NETLINK_SOCK_DIAG`` socket (in the calling thread's network namespace)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)


def dump(
    protocol: Protocol,
    family: Family | None,
    *,
    states: int = ALL_STATES,
    bytecode: bytes = b"",
    ext: int = 0,
    detailed: bool = False,
    timers: bool = False,
    sock: socket.socket | None = None,
) -> list[Socket]:
    """The sockets of one protocol and family in this network namespace that pass the filter.

    ``family=None`` dumps TCP sockets of both families in one request.
    ``detailed`` adds :class:`SocketDetails` (cookie, shutdown, and what ``ext``
    and ``timers`` ask for). ``sock`` is a sock_diag socket to use (one opened in
    another namespace, say); by default one is opened for the call. Raises
    :class:`SockDiagError` (an ``OSError``) when netlink cannot answer; callers
    fall back to ``/proc/net``.
    """
    out: list[Socket] = []
    seq = 1
    own = sock is None
    sock = open_socket() if sock is None else sock
    try:
        if family is None:
            if protocol is not Protocol.TCP:
                raise ValueError("only TCP has a dump of both families")
            request = encode_tcp_request(seq=seq, states=states, ext=ext, bytecode=bytecode)
        else:
            request = encode_request(
                protocol, family, seq=seq, states=states, ext=ext, bytecode=bytecode
            )
        sock.sendto(request, (0, 0))
        buffer = bytearray(1 << 17)
        view = memoryview(buffer)
        while True:
            count = sock.recv_into(buffer)
            if count == 0:
                raise SockDiagError(0, "netlink socket closed before the dump ended")
            if detailed:
                done = decode_detailed(view[:count], protocol, out, seq=seq, ext=ext, timers=timers)
            else:
                done = decode_messages(view[:count], protocol, out, seq=seq)
            if done:
                return out
    finally:
        if own:
            sock.close()
