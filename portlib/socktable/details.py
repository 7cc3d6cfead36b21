"""What ``ss -e -o -i -m`` adds to a socket: its cookie, timer, TCP internals and memory.

Values only; sockdiag.py fills them from the kernel's inet_diag attributes when
a listing asks for them (``sockets(..., extended=True, timers=True,
tcp_info=True, memory=True)``), so the default listing stays lean.

Units are in the field names where they are not bytes or counts: ``_us``
microseconds, ``_ms`` milliseconds; rates are bytes per second, as the
kernel's ``struct tcp_info`` (linux/tcp.h) has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TimerKind(StrEnum):
    """The timer a socket has running (``idiag_timer``), in the words ``ss -o`` prints."""

    OFF = "off"
    ON = "on"  # retransmission
    KEEPALIVE = "keepalive"
    TIMEWAIT = "timewait"
    PERSIST = "persist"  # zero-window probe
    DELACK = "delack"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SocketTimer:
    """``ss -o``'s ``timer:(keepalive,119min,0)``: the kind, time left and retransmissions.

    Example:

    >>> import portlib
    >>> sock = portlib.sockets("tcp", filter="dport = :443", timers=True)[0]  # doctest: +SKIP
    >>> sock.details.timer  # doctest: +SKIP
    SocketTimer(kind=<TimerKind.KEEPALIVE: 'keepalive'>, expires_ms=7140312, retransmits=0)
    """

    kind: TimerKind
    expires_ms: int
    retransmits: int


@dataclass(frozen=True, slots=True)
class SocketMemory:
    """``ss -m``'s ``skmem:(r,rb,t,tb,f,w,o,bl,d)``: the kernel's ``SK_MEMINFO_*`` values.

    ``backlog`` and ``drops`` are None on kernels that do not report them.

    Example:

    >>> import portlib
    >>> sock = portlib.sockets("tcp", state="LISTEN", memory=True)[0]  # doctest: +SKIP
    >>> sock.details.memory.rcvbuf, sock.details.memory.drops  # doctest: +SKIP
    (131072, 0)
    """

    rmem_alloc: int
    rcvbuf: int
    wmem_alloc: int
    sndbuf: int
    fwd_alloc: int
    wmem_queued: int
    optmem: int
    backlog: int | None
    drops: int | None


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """``ss -i``: the kernel's ``struct tcp_info`` for one TCP socket, and its congestion control.

    Fields the running kernel does not report (older kernels have a shorter
    struct) are None. ``snd_ssthresh`` is None while it is "infinite" (before
    the first loss), where ``ss`` prints nothing.

    Example:

    >>> import portlib
    >>> sock = portlib.sockets("tcp", filter="dport = :443", tcp_info=True)[0]  # doctest: +SKIP
    >>> info = sock.details.tcp  # doctest: +SKIP
    >>> info.congestion, info.rtt_us, info.snd_cwnd, info.bytes_acked  # doctest: +SKIP
    ('cubic', 21435, 10, 5123)
    """

    congestion: str | None
    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    delivery_rate_app_limited: bool
    rto_us: int
    ato_us: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    last_data_sent_ms: int
    last_data_recv_ms: int
    last_ack_recv_ms: int
    pmtu: int
    rcv_ssthresh: int
    rtt_us: int
    rttvar_us: int
    snd_ssthresh: int | None
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt_us: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int | None
    max_pacing_rate: int | None
    bytes_acked: int | None
    bytes_received: int | None
    segs_out: int | None
    segs_in: int | None
    notsent_bytes: int | None
    min_rtt_us: int | None
    data_segs_in: int | None
    data_segs_out: int | None
    delivery_rate: int | None
    busy_time_us: int | None
    rwnd_limited_us: int | None
    sndbuf_limited_us: int | None
    delivered: int | None
    delivered_ce: int | None
    bytes_sent: int | None
    bytes_retrans: int | None
    dsack_dups: int | None
    reord_seen: int | None
    rcv_ooopack: int | None
    snd_wnd: int | None


@dataclass(frozen=True, slots=True)
class SocketDetails:
    """The opt-in extras of one socket; a part not asked for (or not reported) is None.

    ``cookie`` is the kernel's 64-bit socket id (``ss -e`` prints it as ``sk:``).
    ``shutdown`` holds the kernel's bits: 1 no more receiving, 2 no more sending.
    ``v6only`` is set for IPv6 sockets.

    Example:

    >>> import portlib
    >>> sock = portlib.sockets("tcp", state="LISTEN", extended=True)[0]  # doctest: +SKIP
    >>> hex(sock.details.cookie), sock.inode, sock.uid  # doctest: +SKIP
    ('0x1a2b', 577, 0)
    """

    cookie: int | None = None
    timer: SocketTimer | None = None
    tcp: TcpInfo | None = None
    memory: SocketMemory | None = None
    shutdown: int | None = None
    v6only: bool | None = None


__all__ = ["SocketDetails", "SocketMemory", "SocketTimer", "TcpInfo", "TimerKind"]
