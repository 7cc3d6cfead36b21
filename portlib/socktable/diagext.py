"""Decode inet_diag's optional attributes into typed values: ``tcp_info``, memory, timers.

A dump request asks for attributes with bits of ``idiag_ext`` (bit N-1 for
attribute N); each reply then carries them as netlink attributes after its
``inet_diag_msg``. Layouts from linux/inet_diag.h, linux/sock_diag.h and
linux/tcp.h. Pure: bytes in, values out.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from types import MappingProxyType

from portlib.socktable.details import SocketMemory, SocketTimer, TcpInfo, TimerKind

# Attribute types (enum in linux/inet_diag.h).
INET_DIAG_MEMINFO = 1
INET_DIAG_INFO = 2
INET_DIAG_CONG = 4
INET_DIAG_SKMEMINFO = 7
INET_DIAG_SHUTDOWN = 8
INET_DIAG_SKV6ONLY = 11


def ext_bit(attribute: int) -> int:
    """The ``idiag_ext`` bit that asks for ``attribute`` (only the first eight can be asked)."""
    return 1 << (attribute - 1)


EXT_TCP_INFO = ext_bit(INET_DIAG_INFO) | ext_bit(INET_DIAG_CONG)
EXT_MEMORY = ext_bit(INET_DIAG_SKMEMINFO)

ATTRIBUTE = struct.Struct("=HH")  # struct nlattr: length (header included), type

# idiag_timer codes, as the kernel sets them (net/ipv4/inet_diag.c) and ss names them.
TIMER_KINDS: Mapping[int, TimerKind] = MappingProxyType(
    {
        0: TimerKind.OFF,
        1: TimerKind.ON,
        2: TimerKind.KEEPALIVE,
        3: TimerKind.TIMEWAIT,
        4: TimerKind.PERSIST,
        5: TimerKind.DELACK,
    }
)


def timer(code: int, expires_ms: int, retransmits: int) -> SocketTimer:
    return SocketTimer(TIMER_KINDS.get(code, TimerKind.UNKNOWN), expires_ms, retransmits)


# struct tcp_info after its eight u8 fields, piece by piece: a kernel reports as much of
# it as it knows, so each piece is read only when the attribute is long enough for it.
# (struct format, field names; None for fields kept out of TcpInfo)
TCP_INFO_PIECES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (
        "=24I",
        (
            "rto_us", "ato_us", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans",
            None,  # fackets: always 0 since Linux 4.15
            "last_data_sent_ms",
            None,  # last_ack_sent: never recorded
            "last_data_recv_ms", "last_ack_recv_ms", "pmtu", "rcv_ssthresh", "rtt_us",
            "rttvar_us", "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt_us",
            "rcv_space", "total_retrans",
        ),
    ),
    ("=2Q", ("pacing_rate", "max_pacing_rate")),
    ("=2Q", ("bytes_acked", "bytes_received")),
    ("=2I", ("segs_out", "segs_in")),
    ("=4I", ("notsent_bytes", "min_rtt_us", "data_segs_in", "data_segs_out")),
    ("=Q", ("delivery_rate",)),
    ("=3Q", ("busy_time_us", "rwnd_limited_us", "sndbuf_limited_us")),
    ("=2I", ("delivered", "delivered_ce")),
    ("=2Q", ("bytes_sent", "bytes_retrans")),
    ("=2I", ("dsack_dups", "reord_seen")),
    ("=I", ("rcv_ooopack",)),
    ("=I", ("snd_wnd",)),
)  # fmt: skip
_PIECES = tuple((struct.Struct(fmt), names) for fmt, names in TCP_INFO_PIECES)
_HEAD = struct.Struct("=8B")
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF
_OPTIONAL = frozenset(name for _, names in TCP_INFO_PIECES[1:] for name in names if name)


def decode_tcp_info(raw: bytes | memoryview, congestion: str | None) -> TcpInfo | None:
    """``struct tcp_info`` as a TcpInfo; None when shorter than the fields every kernel has."""
    offset = _HEAD.size + _PIECES[0][0].size
    if len(raw) < offset:
        return None
    state, ca_state, retransmits, probes, backoff, options, wscale, flags = _HEAD.unpack_from(raw)
    values: dict[str, object] = dict.fromkeys(_OPTIONAL)
    offset = _HEAD.size
    for layout, names in _PIECES:
        if offset + layout.size > len(raw):
            break
        for name, value in zip(names, layout.unpack_from(raw, offset), strict=True):
            if name is not None:
                values[name] = value
        offset += layout.size
    if values["snd_ssthresh"] == TCP_INFINITE_SSTHRESH:
        values["snd_ssthresh"] = None
    return TcpInfo(
        congestion=congestion,
        state=state,
        ca_state=ca_state,
        retransmits=retransmits,
        probes=probes,
        backoff=backoff,
        options=options,
        snd_wscale=wscale & 0x0F,
        rcv_wscale=wscale >> 4,
        delivery_rate_app_limited=bool(flags & 1),
        **values,  # type: ignore[arg-type]
    )


_MEMORY = struct.Struct("=7I")
_U32 = struct.Struct("=I")


def decode_memory(raw: bytes | memoryview) -> SocketMemory | None:
    """``INET_DIAG_SKMEMINFO`` (u32 per ``SK_MEMINFO_*``) as a SocketMemory."""
    if len(raw) < _MEMORY.size:
        return None
    more = [_U32.unpack_from(raw, at)[0] if len(raw) >= at + 4 else None for at in (28, 32)]
    return SocketMemory(*_MEMORY.unpack_from(raw), *more)


def attributes(data: bytes | bytearray | memoryview, start: int, end: int) -> dict[int, memoryview]:
    """The netlink attributes in ``data[start:end]``, by type (payloads, headers removed)."""
    view = memoryview(data)
    found: dict[int, memoryview] = {}
    while start + ATTRIBUTE.size <= end:
        length, kind = ATTRIBUTE.unpack_from(data, start)
        if length < ATTRIBUTE.size or start + length > end:
            break
        found[kind & 0x3FFF] = view[start + ATTRIBUTE.size : start + length]  # no NESTED bits
        start += (length + 3) & ~3
    return found


def c_string(raw: memoryview) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace")


__all__ = [
    "EXT_MEMORY",
    "EXT_TCP_INFO",
    "TIMER_KINDS",
    "attributes",
    "c_string",
    "decode_memory",
    "decode_tcp_info",
    "ext_bit",
    "timer",
]
