"""Small client functions meant for ``lab.call``: they run in the scanner namespace and
return plain, picklable values (strings, numbers, lists).

>>> lab.call("tests.lab.probes.tcp_connect", "192.0.2.10", 22)  # doctest: +SKIP
'open'
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import time


def tcp_connect(host: str, port: int, timeout: float = 2.0) -> str:
    """``"open"``, ``"timeout"``, or the errno name connect() failed with (e.g.
    ``"ECONNREFUSED"``, ``"EHOSTUNREACH"``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))
        return "open"


def udp_exchange(
    host: str, port: int, payloads: list[bytes], timeout: float = 2.0
) -> list[bytes | None]:
    """Send each payload and wait for one reply (None when none came in ``timeout``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    replies: list[bytes | None] = []
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        for payload in payloads:
            sock.send(payload)
            try:
                replies.append(sock.recv(65535))
            except (TimeoutError, ConnectionRefusedError):
                replies.append(None)
    return replies


def udp_echo_rtts(
    host: str, port: int, count: int, *, interval: float = 0.0, timeout: float = 1.0
) -> list[float | None]:
    """Round-trip times (seconds) of ``count`` numbered echo datagrams; None = lost.

    Datagrams go out every ``interval`` seconds without waiting for replies, so a
    lossy or slow link does not stretch the run; replies are matched by number.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.setblocking(False)
        for seq in range(count):
            sent[seq] = time.monotonic()
            sock.send(struct.pack("!I", seq) + os.urandom(12))
            _collect(sock, sent, rtts, until=time.monotonic() + interval)
        _collect(sock, sent, rtts, until=time.monotonic() + timeout)
    return [rtts.get(seq) for seq in range(count)]


def _collect(
    sock: socket.socket, sent: dict[int, float], rtts: dict[int, float], until: float
) -> None:
    """Read replies until ``until`` (and whatever is already queued after it)."""
    while select.select([sock], [], [], max(0.0, until - time.monotonic()))[0]:
        try:
            data = sock.recv(65535)
        except (BlockingIOError, ConnectionRefusedError):
            continue
        now = time.monotonic()
        seq = struct.unpack("!I", data[:4])[0]
        if seq in sent and seq not in rtts:
            rtts[seq] = now - sent[seq]


def dns_query(
    host: str, name: str, qtype: int = 1, port: int = 53, timeout: float = 2.0
) -> bytes | None:
    """Send one DNS query (RD set) for ``name``/``qtype`` and return the raw response."""
    qid = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + b"\0"
    query += struct.pack("!HH", qtype, 1)
    return udp_exchange(host, port, [query], timeout)[0]


def ntp_query(host: str, port: int = 123, timeout: float = 2.0) -> bytes | None:
    """Send one NTPv4 client request and return the raw response."""
    request = bytearray(48)
    request[0] = (4 << 3) | 3  # version 4, mode 3 (client)
    request[40:48] = struct.pack("!Q", int((time.time() + 2208988800) * (1 << 32)))
    return udp_exchange(host, port, [bytes(request)], timeout)[0]
