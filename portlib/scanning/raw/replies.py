"""Pure: what a received packet says about which probe, in one place.

``Classifier`` reads any IPv4 or IPv6 packet by fixed offsets into a
``ReplyEvent`` or None (a stray). Replies count only if they prove they answer
our probe: TCP replies acknowledge the keyed cookie we put in the sequence
number, ICMP errors quote our probe's header with that cookie (TCP sequence, or
for UDP the IPv4 ID / IPv6 flow label), so late, stray or spoofed packets are
ignored.

``ReplyReader`` is the engine's path through a whole drain of frames: the
common replies (IPv4 without options: a TCP answer, a UDP answer, an ICMP port
unreachable quoting a UDP probe) are read inline against the cookie column,
and every other frame goes to the ``Classifier``. Both give the same verdict
for the same frame (a property test holds them to it); the inline path exists
because a -p- scan of a near host reads 65535 replies in well under a second.
``read_blocks`` first offers each ring block to ``columns.BlockColumns``, which
reads a block of nothing but plain answers at once, and reads the rest here.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from portlib.model import PortState, Reason
from portlib.scanning.icmp import icmp_reason
from portlib.scanning.raw.columns import BlockColumns
from portlib.scanning.raw.columns import FirstTries as FirstTries
from portlib.scanning.raw.columns import FirstTry as FirstTry
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.wire import (
    FLOW_LABEL_MASK,
    ICMP_CODE,
    ICMP_QUOTE,
    ICMP_TYPE,
    IP4_DST,
    IP4_ID,
    IP4_PROTO,
    IP4_SRC,
    IP4_TTL,
    IP6_DST,
    IP6_FLOW,
    IP6_HOP_LIMIT,
    IP6_NEXT_HEADER,
    IP6_SRC,
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK_FLAG,
    TCP_FLAGS,
    TCP_HEADER_LEN,
    TCP_RST,
    TCP_SYN,
    Probe,
    ipv4_mark,
)

# (probe, reason of an ICMP error) -> state; the default for a probe is "filtered".
ICMP_STATE: dict[tuple[Probe, Reason], PortState] = {
    (Probe.UDP, Reason.PORT_UNREACH): PortState.CLOSED,
}
# State after silence through every retry.
SILENCE_STATE: dict[Probe, PortState] = {
    Probe.SYN: PortState.FILTERED,
    Probe.ACK: PortState.FILTERED,
    Probe.UDP: PortState.OPEN_FILTERED,
}


@dataclass(frozen=True, slots=True)
class ReplyEvent:
    """One decided probe: ``host`` is the target's packed address (4 or 16 bytes)."""

    host: bytes
    port: int
    state: PortState
    reason: Reason
    ttl: int
    from_icmp: bool = False


class Classifier:
    """Turns a received IP packet into a ``ReplyEvent`` for one scan, or None (a stray).

    ``sport`` is the scan's held source port; ``cookie`` the scan's keyed hash.
    """

    __slots__ = ("cookie", "kind", "sport")

    def __init__(self, kind: Probe, sport: int, cookie: Cookie):
        self.kind = kind
        self.sport = sport
        self.cookie = cookie

    def classify(self, pkt: bytes | bytearray | memoryview) -> ReplyEvent | None:
        if len(pkt) < IPV4_HEADER_LEN:
            return None
        version = pkt[0] >> 4
        if version == 4:
            ihl = (pkt[0] & 0x0F) * 4
            if ihl < IPV4_HEADER_LEN or len(pkt) < ihl + 8:
                return None
            if struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF:
                return None  # a non-first fragment has no transport header
            return self._transport(
                pkt[IP4_PROTO], bytes(pkt[IP4_SRC:IP4_DST]), pkt[IP4_TTL], pkt, ihl
            )
        if version == 6:
            if len(pkt) < IPV6_HEADER_LEN + 8:
                return None
            return self._transport(
                pkt[IP6_NEXT_HEADER], bytes(pkt[IP6_SRC:IP6_DST]), pkt[IP6_HOP_LIMIT], pkt, 40
            )
        return None

    def _transport(
        self, proto: int, src: bytes, ttl: int, pkt: bytes | bytearray | memoryview, off: int
    ) -> ReplyEvent | None:
        kind = self.kind
        if proto == PROTO_TCP and kind is not Probe.UDP:
            if len(pkt) < off + TCP_HEADER_LEN:
                return None
            sport, dport, seq, ack = struct.unpack_from("!HHII", pkt, off)
            if dport != self.sport:
                return None
            flags = pkt[off + TCP_FLAGS]
            cookie = self.cookie(src, sport, dport)
            if kind is Probe.SYN:
                if ack != (cookie + 1) & 0xFFFFFFFF or not flags & TCP_ACK_FLAG:
                    return None
                if flags & TCP_RST:
                    return ReplyEvent(src, sport, PortState.CLOSED, Reason.RESET, ttl)
                if flags & TCP_SYN:
                    return ReplyEvent(src, sport, PortState.OPEN, Reason.SYN_ACK, ttl)
                return None
            # ACK probe: a RST answers with our acknowledgment number as its sequence.
            if flags & TCP_RST and seq == cookie:
                return ReplyEvent(src, sport, PortState.UNFILTERED, Reason.RESET, ttl)
            return None
        if proto == PROTO_UDP and kind is Probe.UDP:
            sport, dport = struct.unpack_from("!HH", pkt, off)
            if dport != self.sport:
                return None
            if sport == dport and self._own_probe(pkt, src, sport):
                return None  # scanning our own port on this host: our probe, looped back
            return ReplyEvent(src, sport, PortState.OPEN, Reason.UDP_RESPONSE, ttl)
        if proto == PROTO_ICMP and pkt[0] >> 4 == 4:
            return self._icmp(pkt, off, src, ttl, 4)
        if proto == PROTO_ICMPV6 and pkt[0] >> 4 == 6:
            return self._icmp(pkt, off, src, ttl, 6)
        return None

    def _own_probe(self, pkt: bytes | bytearray | memoryview, src: bytes, port: int) -> bool:
        """Whether a UDP packet from our port to our port carries our probe's IP mark."""
        mark = self.cookie(src, port, port)
        if len(src) == 4:
            return bool(struct.unpack_from("!H", pkt, IP4_ID)[0] == ipv4_mark(mark))
        return bool(
            struct.unpack_from("!I", pkt, IP6_FLOW)[0] & FLOW_LABEL_MASK == mark & FLOW_LABEL_MASK
        )

    def _icmp(
        self,
        pkt: bytes | bytearray | memoryview,
        off: int,
        icmp_src: bytes,
        ttl: int,
        version: int,
    ) -> ReplyEvent | None:
        reason = icmp_reason(version, pkt[off + ICMP_TYPE], pkt[off + ICMP_CODE])
        if reason is None:
            return None
        quoted = quoted_probe(pkt, off + ICMP_QUOTE)
        if quoted is None:
            return None
        proto, dst, mark, sport, dport, seq = quoted
        if sport != self.sport:
            return None
        cookie = self.cookie(dst, dport, sport)
        if self.kind is Probe.UDP:
            if proto != PROTO_UDP:
                return None
            expected = ipv4_mark(cookie) if len(dst) == 4 else cookie & FLOW_LABEL_MASK
            if mark != expected:
                return None
        elif proto != PROTO_TCP or seq != cookie:
            return None
        state = ICMP_STATE.get((self.kind, reason), PortState.FILTERED)
        if state is PortState.CLOSED and icmp_src != dst:
            state = PortState.FILTERED  # a router's port-unreach says nothing about the port
        return ReplyEvent(dst, dport, state, reason, ttl, from_icmp=True)


def quoted_probe(
    pkt: bytes | bytearray | memoryview, off: int
) -> tuple[int, bytes, int, int, int, int | None] | None:
    """(protocol, destination, mark, sport, dport, tcp seq) of the packet an ICMP error quotes.

    ``mark`` is the quoted IPv4 ID or IPv6 flow label; ``seq`` is None for UDP.
    """
    if len(pkt) < off + 1:
        return None
    version = pkt[off] >> 4
    if version == 4:
        ihl = (pkt[off] & 0x0F) * 4
        if ihl < IPV4_HEADER_LEN or len(pkt) < off + ihl + 8:
            return None
        proto = pkt[off + IP4_PROTO]
        dst = bytes(pkt[off + IP4_DST : off + IP4_DST + 4])
        mark = struct.unpack_from("!H", pkt, off + IP4_ID)[0]
        l4 = off + ihl
    elif version == 6:
        if len(pkt) < off + IPV6_HEADER_LEN + 8:
            return None
        proto = pkt[off + IP6_NEXT_HEADER]
        dst = bytes(pkt[off + IP6_DST : off + IP6_DST + 16])
        mark = struct.unpack_from("!I", pkt, off)[0] & FLOW_LABEL_MASK
        l4 = off + IPV6_HEADER_LEN
    else:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", pkt, l4)
    return proto, dst, mark, sport, dport, (seq if proto == PROTO_TCP else None)


Frame = tuple[bytes | bytearray | memoryview | object, int, int]
"""(buffer, offset of the IP header, length): how a receive ring hands a packet over."""


Block = tuple[Iterable[Frame], object, int, int, int]
"""(its frames, buffer, offset of the first IP header, count, stride): a receive ring's block.

``stride`` is 0 unless every frame holds ``columns.SNAP[kind]`` bytes, that far apart.
"""

COLUMN_BLOCK = 8  # fewer frames than this: frame by frame is as quick

Answer = tuple[int, int, PortState, Reason, bool]
"""(probe index, host number, state, reason, from ICMP): an answer needing the full path."""

_TCP_REPLY = struct.Struct("!HHII")  # source port, destination port, seq, ack
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")


class ReplyReader:
    """Finds the probe each frame of a drain answers, and what the answer says.

    The probe book is shared with the engine: ``host_index`` (packed address ->
    host number), ``port_index`` (port -> port number), the per-probe
    ``cookies``, ``sends`` (tries so far) and ``decided`` flags, indexed
    ``host * nports + port``. Per host, ``fast`` says whether a first-try answer
    may be decided in bulk and ``icmp_untracked`` whether its ICMP answers may
    be (a host whose ICMP errors may be rate-limited counts each one).
    """

    __slots__ = (
        "classifier",
        "columns",
        "cookies",
        "decided",
        "fast",
        "host_index",
        "icmp_untracked",
        "kind",
        "nports",
        "port_index",
        "sends",
        "sport",
    )

    def __init__(
        self,
        classifier: Classifier,
        *,
        host_index: Mapping[bytes, int],
        port_index: Mapping[int, int],
        cookies: array[int],
        sends: bytearray,
        decided: bytearray,
        fast: bytearray,
        icmp_untracked: bytearray,
    ) -> None:
        self.classifier = classifier
        self.kind = classifier.kind
        self.sport = classifier.sport
        self.host_index = host_index
        self.port_index = port_index
        self.nports = len(port_index)
        self.cookies = cookies
        self.sends = sends
        self.decided = decided
        self.fast = fast
        self.icmp_untracked = icmp_untracked
        self.columns = BlockColumns(self)

    def read_blocks(
        self,
        blocks: Iterable[Block],
        first: FirstTries,
        later: list[Answer],
        clock: Callable[[], float],
    ) -> None:
        """``read`` for a ring's blocks: a uniform block of common replies by columns, if it can."""
        queued: set[int] = set()
        by_columns = self.columns.block
        for frames, buf, ip, count, stride in blocks:
            if (
                stride
                and count >= COLUMN_BLOCK
                and by_columns(buf, ip, count, stride, first, clock)
            ):
                continue
            self.read(frames, first, later, clock, queued)

    def read(
        self,
        frames: Iterable[Frame],
        first: FirstTries,
        later: list[Answer],
        clock: Callable[[], float],
        queued: set[int] | None = None,
    ) -> None:
        """Sort the proven answers among ``frames`` into ``first`` and ``later``.

        A first try's answer from a fast host is marked decided here and goes to
        ``first``; every other proven answer to an undecided, probed port goes to
        ``later`` once per ``queued`` (the probes in ``later`` already), for the
        engine's full bookkeeping.
        """
        classify = self.classifier.classify
        host_index = self.host_index
        port_index = self.port_index
        nports = self.nports
        decided = self.decided
        sends = self.sends
        cookies = self.cookies
        sport = self.sport
        tcp = self.kind is not Probe.UDP
        syn = self.kind is Probe.SYN
        fast = self.fast
        icmp_untracked = self.icmp_untracked
        in_bulk = first.add
        if queued is None:
            queued = set()  # in ``later`` already: a duplicate in the same drain
        for buf, o, size in frames:
            b: bytes = buf  # type: ignore[assignment]  # bytes, bytearray or an mmap
            if size < 28 or b[o] != 0x45 or b[o + 6] & 0x1F or b[o + 7]:
                self._general(classify(b[o : o + size]), later, queued)
                continue  # options, IPv6, fragments, runts
            # Which probe would this answer? (the target's address and port)
            proto = b[o + 9]
            icmp = False
            if proto == PROTO_TCP and tcp and size >= 40:
                port, dst_port, seq, ack = _TCP_REPLY.unpack_from(b, o + 20)
                if dst_port != sport:
                    continue
                key = b[o + 12 : o + 16]
            elif proto == PROTO_UDP and not tcp:
                port, dst_port = _PORTS.unpack_from(b, o + 20)
                if dst_port != sport:
                    continue
                if port == dst_port:  # maybe our own probe to our own port, looped back
                    self._general(classify(b[o : o + size]), later, queued)
                    continue
                key = b[o + 12 : o + 16]
            elif (
                proto == PROTO_ICMP
                and not tcp
                and size >= 56
                and b[o + 20] == 3  # destination unreachable
                and b[o + 21] == 3  # port unreachable
                and b[o + 28] == 0x45
                and b[o + 37] == PROTO_UDP
            ):
                q_sport, port = _PORTS.unpack_from(b, o + 48)
                if q_sport != sport:
                    continue
                key = b[o + 44 : o + 48]  # the quoted probe's destination
                icmp = True
            else:
                self._general(classify(b[o : o + size]), later, queued)
                continue
            h = host_index.get(key)
            p = port_index.get(port)
            if h is None or p is None:
                continue
            idx = h * nports + p
            if decided[idx] or not sends[idx]:
                continue  # late duplicate, or never probed
            # Is it proven ours (the cookie), and what does it say?
            cookie = cookies[idx]
            if icmp:
                if _U16.unpack_from(b, o + 32)[0] != ipv4_mark(cookie):
                    continue
                # A router's port unreachable says nothing about the port itself.
                closed = b[o + 12 : o + 16] == key
                state = PortState.CLOSED if closed else PortState.FILTERED
                reason = Reason.PORT_UNREACH
            elif not tcp:
                state, reason = PortState.OPEN, Reason.UDP_RESPONSE
            else:
                flags = b[o + 33]
                if syn:
                    if ack != (cookie + 1) & 0xFFFFFFFF or not flags & TCP_ACK_FLAG:
                        continue
                    if flags & TCP_RST:
                        state, reason = PortState.CLOSED, Reason.RESET
                    elif flags & TCP_SYN:
                        state, reason = PortState.OPEN, Reason.SYN_ACK
                    else:
                        continue
                elif flags & TCP_RST and seq == cookie:
                    state, reason = PortState.UNFILTERED, Reason.RESET
                else:
                    continue
            if sends[idx] == 1 and fast[h] and (not icmp or icmp_untracked[h]):
                decided[idx] = 1
                in_bulk(idx, state, reason, clock())
            elif idx not in queued:
                queued.add(idx)
                later.append((idx, h, state, reason, icmp))

    def _general(self, event: ReplyEvent | None, later: list[Answer], queued: set[int]) -> None:
        """A frame the inline path does not read: the classifier's verdict, if any."""
        if event is None:
            return
        h = self.host_index.get(event.host)
        p = self.port_index.get(event.port)
        if h is None or p is None:
            return
        idx = h * self.nports + p
        if self.decided[idx] or self.sends[idx] == 0 or idx in queued:
            return  # late duplicate, or never probed (a spoof that guessed the cookie)
        queued.add(idx)
        later.append((idx, h, event.state, event.reason, event.from_icmp))
