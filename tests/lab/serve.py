"""Servers run inside a target namespace: TCP listeners and UDP responders, v4 and v6.

Run by the lab as ``ip netns exec NS python -m tests.lab.serve ...``; prints ``READY``
once every socket is bound and listening. TCP listeners accept and close each
connection (``--keep``: hold it until the peer closes; ``--banner``: send a line first).
UDP responders: ``echo`` sends the datagram back, ``dns`` answers DNS queries (A and
AAAA with this host's own addresses, other types with an empty NOERROR answer), ``ntp``
answers NTP client requests with a server reply carrying the current time.
Only the standard library is used so the server starts in tens of milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import selectors
import socket
import struct
import time
from collections.abc import Callable

from tests.lab.procs import announce_ready, parent_gone

# --- UDP answers (pure functions: bytes in, bytes or None out) ----------------------------

_DNS_HEADER = struct.Struct("!HHHHHH")
_QTYPE_A, _QTYPE_AAAA = 1, 28
_RCODE_FORMERR, _RCODE_NOTIMP = 1, 4


def dns_answer(query: bytes, v4: str | None, v6: str | None) -> bytes | None:
    """A DNS response to ``query``, or None when it is not worth answering."""
    if len(query) < _DNS_HEADER.size:
        return None
    qid, flags, qdcount, _an, _ns, _ar = _DNS_HEADER.unpack_from(query)
    if flags & 0x8000:  # a response, not a query
        return None
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    base_flags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080  # QR, AA, RD copied, RA
    if opcode != 0:
        return _DNS_HEADER.pack(qid, base_flags | _RCODE_NOTIMP, 0, 0, 0, 0)
    parsed = _dns_question(query) if qdcount == 1 else None
    if parsed is None:
        return _DNS_HEADER.pack(qid, base_flags | _RCODE_FORMERR, 0, 0, 0, 0)
    question, qtype, qclass = parsed
    answers = []
    rdata = None
    if qclass == 1 and qtype == _QTYPE_A and v4:
        rdata = ipaddress.IPv4Address(v4).packed
    elif qclass == 1 and qtype == _QTYPE_AAAA and v6:
        rdata = ipaddress.IPv6Address(v6).packed
    if rdata is not None:
        # Name as a pointer to the question at offset 12; class IN, TTL 60.
        answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata)
    header = _DNS_HEADER.pack(qid, base_flags, 1, len(answers), 0, 0)
    return header + question + b"".join(answers)


def _dns_question(query: bytes) -> tuple[bytes, int, int] | None:
    """The raw question section (name + type + class), its type and class."""
    pos = _DNS_HEADER.size
    while True:
        if pos >= len(query):
            return None
        length = query[pos]
        if length & 0xC0:  # compression is not valid in a lone question
            return None
        pos += 1 + length
        if length == 0:
            break
    if pos + 4 > len(query) or pos - _DNS_HEADER.size > 255:
        return None
    qtype, qclass = struct.unpack_from("!HH", query, pos)
    return query[_DNS_HEADER.size : pos + 4], qtype, qclass


_NTP = struct.Struct("!BBbbII4sQQQQ")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_timestamp(unix_time: float) -> int:
    return int((unix_time + _NTP_EPOCH_OFFSET) * (1 << 32)) & ((1 << 64) - 1)


def ntp_answer(request: bytes, now: float | None = None) -> bytes | None:
    """A stratum-1 server reply to an NTP client (mode 3) request, else None."""
    if len(request) < _NTP.size:
        return None
    first = request[0]
    version, mode = (first >> 3) & 0x7, first & 0x7
    if mode != 3 or not 1 <= version <= 4:
        return None
    poll = request[2]
    client_transmit = struct.unpack_from("!Q", request, 40)[0]
    stamp = ntp_timestamp(time.time() if now is None else now)
    return _NTP.pack(
        (version << 3) | 4,  # LI 0, the client's version, mode 4 (server)
        1,  # stratum 1: a primary reference
        poll if poll < 128 else 0,
        -20,  # precision: about a microsecond
        0,  # root delay
        1 << 8,  # root dispersion: 1/256 s
        b"LAB\x00",  # reference id
        stamp,  # reference timestamp
        client_transmit,  # origin = the client's transmit time
        stamp,  # receive
        stamp,  # transmit
    )


_UDP_KINDS: dict[str, Callable[[bytes, argparse.Namespace], bytes | None]] = {
    "echo": lambda data, _args: data,
    "dns": lambda data, args: dns_answer(data, args.v4, args.v6),
    "ntp": lambda data, _args: ntp_answer(data),
}


# --- the server loop ----------------------------------------------------------------------


def _bind(family: int, kind: int, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    sock.setblocking(False)
    return sock


def serve(args: argparse.Namespace) -> None:
    sel = selectors.DefaultSelector()
    for port in args.tcp:
        for family in (socket.AF_INET, socket.AF_INET6):
            sock = _bind(family, socket.SOCK_STREAM, port)
            sock.listen(4096)
            sel.register(sock, selectors.EVENT_READ, "listen")
    for port, kind in args.udp:
        for family in (socket.AF_INET, socket.AF_INET6):
            sel.register(_bind(family, socket.SOCK_DGRAM, port), selectors.EVENT_READ, kind)
    announce_ready()
    banner = args.banner.encode() + b"\r\n" if args.banner is not None else b""
    while not parent_gone(args.parent):
        for key, _ in sel.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "listen":
                _accept(sock, sel, banner, args.keep)
            elif key.data == "conn":
                _drain(sock, sel)
            else:
                _answer_udp(sock, _UDP_KINDS[key.data], args)


def _accept(
    listener: socket.socket, sel: selectors.BaseSelector, banner: bytes, keep: bool
) -> None:
    for _ in range(64):  # take a burst, then let other sockets have a turn
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, ConnectionError):
            return
        if banner:
            with contextlib.suppress(OSError):
                conn.send(banner)
        if keep:
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ, "conn")
        else:
            conn.close()


def _drain(conn: socket.socket, sel: selectors.BaseSelector) -> None:
    try:
        data = conn.recv(65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        sel.unregister(conn)
        conn.close()


def _answer_udp(
    sock: socket.socket,
    answer: Callable[[bytes, argparse.Namespace], bytes | None],
    args: argparse.Namespace,
) -> None:
    for _ in range(64):
        try:
            data, peer = sock.recvfrom(65535)
        except (BlockingIOError, ConnectionError):
            return
        reply = answer(data, args)
        if reply is not None:
            # An unreachable peer or a full buffer: a real server would drop it too.
            with contextlib.suppress(OSError):
                sock.sendto(reply, peer)


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def _udp_spec(text: str) -> list[tuple[int, str]]:
    spec = []
    for item in filter(None, text.split(",")):
        port, kind = item.split(":")
        if kind not in _UDP_KINDS:
            raise SystemExit(f"unknown UDP responder {kind!r}; known: {', '.join(_UDP_KINDS)}")
        spec.append((int(port), kind))
    return spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.serve")
    parser.add_argument("--tcp", type=_ports, default=[], help="ports, comma-separated")
    parser.add_argument("--udp", type=_udp_spec, default=[], help="PORT:KIND,... (echo|dns|ntp)")
    parser.add_argument("--keep", action="store_true", help="hold TCP connections open")
    parser.add_argument("--banner", default=None, help="line sent on each TCP connection")
    parser.add_argument("--v4", default=None, help="address DNS A answers carry")
    parser.add_argument("--v6", default=None, help="address DNS AAAA answers carry")
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone")
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
