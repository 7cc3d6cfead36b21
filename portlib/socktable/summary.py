"""``ss -s``: how many sockets of each kind a network namespace has, from the kernel's counters.

The numbers come from ``/proc/net/sockstat``, ``sockstat6`` and the ``Tcp:``
lines of ``/proc/net/snmp``, combined exactly as ``ss -s`` combines them (so
its odd "closed" count, which subtracts TIME-WAIT sockets that were never
counted in, reads the same). :func:`parse_summary` is pure; :func:`socket_summary`
reads the files.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from portlib.errors import ParseError
from portlib.socktable import netns

Counters = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class TransportCounts:
    """One row of ``ss -s``'s table: sockets in use, over IPv4 and IPv6 and on each."""

    total: int
    ipv4: int
    ipv6: int


@dataclass(frozen=True, slots=True)
class SocketSummary:
    """What ``ss -s`` prints. ``sockets`` is the machine-wide count of open sockets.

    ``tcp`` is ss's "TCP: N": allocated TCP sockets plus TIME-WAIT ones;
    ``tcp_closed`` is ss's "closed" figure, computed as ss does.

    Example:

    >>> import portlib
    >>> summary = portlib.socket_summary()  # doctest: +SKIP
    >>> summary.tcp_established, summary.tcp_sockets  # doctest: +SKIP
    (3, TransportCounts(total=8, ipv4=6, ipv6=2))
    """

    sockets: int
    tcp: int
    tcp_established: int
    tcp_closed: int
    tcp_orphaned: int
    tcp_timewait: int
    raw_sockets: TransportCounts
    udp_sockets: TransportCounts
    tcp_sockets: TransportCounts
    inet_sockets: TransportCounts
    fragments: TransportCounts


def parse_counters(text: str, *, source: str = "sockstat") -> Counters:
    """``TCP: inuse 1 orphan 0 tw 2`` lines as ``{"TCP": {"inuse": 1, ...}}``."""
    found: Counters = {}
    for number, line in enumerate(text.splitlines(), start=1):
        key, colon, rest = line.partition(":")
        words = rest.split()
        if not colon or len(words) % 2:
            raise ParseError(f"bad counter line {line.strip()!r}", source=source, line=number)
        values = {}
        for name, value in zip(words[::2], words[1::2], strict=True):
            if not value.isdigit():
                raise ParseError(f"bad counter {name} {value!r}", source=source, line=number)
            values[name] = int(value)
        found[key.strip()] = values
    return found


def current_established(snmp: str, *, source: str = "snmp") -> int:
    """``CurrEstab`` from the two ``Tcp:`` lines of ``/proc/net/snmp`` (names, then values)."""
    rows = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2 or "CurrEstab" not in rows[0] or len(rows[1]) != len(rows[0]):
        raise ParseError("no Tcp: CurrEstab counter", source=source)
    value = rows[1][rows[0].index("CurrEstab")]
    if not value.lstrip("-").isdigit():
        raise ParseError(f"bad CurrEstab value {value!r}", source=source)
    return int(value)


def parse_summary(sockstat: str, sockstat6: str, snmp: str) -> SocketSummary:
    """The summary from the three files' text (``sockstat6`` may be empty: no IPv6)."""
    counts = parse_counters(sockstat, source="sockstat") | parse_counters(
        sockstat6, source="sockstat6"
    )

    def get(key: str, name: str = "inuse") -> int:
        return counts.get(key, {}).get(name, 0)

    def row(v4: int, v6: int) -> TransportCounts:
        return TransportCounts(v4 + v6, v4, v6)

    tcp4, tcp6, tw, allocated = get("TCP"), get("TCP6"), get("TCP", "tw"), get("TCP", "alloc")
    raw, udp, tcp = row(get("RAW"), get("RAW6")), row(get("UDP"), get("UDP6")), row(tcp4, tcp6)
    return SocketSummary(
        sockets=get("sockets", "used"),
        tcp=allocated + tw,
        tcp_established=current_established(snmp),
        tcp_closed=allocated - (tcp4 + tcp6 - tw),
        tcp_orphaned=get("TCP", "orphan"),
        tcp_timewait=tw,
        raw_sockets=raw,
        udp_sockets=udp,
        tcp_sockets=tcp,
        inet_sockets=row(raw.ipv4 + udp.ipv4 + tcp.ipv4, raw.ipv6 + udp.ipv6 + tcp.ipv6),
        fragments=row(get("FRAG"), get("FRAG6")),
    )


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror}", source=path) from None


def socket_summary(*, netns_name: str | None = None) -> SocketSummary:
    """``ss -s`` for this network namespace, or for ``netns_name`` (``ss -N NAME -s``).

    Example:

    >>> import portlib
    >>> portlib.socket_summary().tcp_sockets.total  # doctest: +SKIP
    12
    """
    with netns.entered(netns_name) if netns_name else contextlib.nullcontext():
        base = netns.THREAD_NET
        texts = [_read(f"{base}/{name}") for name in ("sockstat", "sockstat6", "snmp")]
    if not texts[0]:
        raise ParseError("the kernel has no socket counters", source=f"{base}/sockstat")
    return parse_summary(*texts)


__all__ = ["SocketSummary", "TransportCounts", "parse_summary", "socket_summary"]
