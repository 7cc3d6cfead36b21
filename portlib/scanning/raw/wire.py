"""Pure wire format of raw probes: header offsets, checksums, templates and patching.

Nothing here touches a socket or a clock. A probe is a template (raw bytes built
once by ``templates``) patched in place with ``struct.pack_into``; its checksum
comes from the template's precomputed partial sum plus the patched words
(one's complement sums are additive, RFC 1071/1624), so no probe is summed twice.
What a reply says is ``replies``; the cookie a probe carries is ``cookie``.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from enum import IntEnum
from operator import add

# --- header layouts (offsets in bytes) ------------------------------------------------

IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
TCP_HEADER_LEN = 20
UDP_HEADER_LEN = 8
ICMP_HEADER_LEN = 8

# IPv4 header
IP4_VER_IHL = 0
IP4_TOTAL_LEN = 2
IP4_ID = 4
IP4_TTL = 8
IP4_PROTO = 9
IP4_CHECKSUM = 10
IP4_SRC = 12
IP4_DST = 16

# IPv6 header
IP6_FLOW = 0  # version(4) | traffic class(8) | flow label(20), one 32-bit word
IP6_PAYLOAD_LEN = 4
IP6_NEXT_HEADER = 6
IP6_HOP_LIMIT = 7
IP6_SRC = 8
IP6_DST = 24

# TCP header (relative to its start)
TCP_SPORT = 0
TCP_DPORT = 2
TCP_SEQ = 4
TCP_ACK = 8
TCP_FLAGS = 13
TCP_CHECKSUM = 16

# UDP header
UDP_SPORT = 0
UDP_DPORT = 2
UDP_LEN = 4
UDP_CHECKSUM = 6

# ICMP / ICMPv6 header
ICMP_TYPE = 0
ICMP_CODE = 1
ICMP_CHECKSUM = 2
ICMP_QUOTE = 8  # an ICMP error quotes the offending packet from here on

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK_FLAG = 0x10

FLOW_LABEL_MASK = 0xFFFFF


class Probe(IntEnum):
    """What the engine sends; decides how replies are read."""

    SYN = 1
    ACK = 2
    UDP = 3


# --- checksums ------------------------------------------------------------------------

_NATIVE_IS_LITTLE = sys.byteorder == "little"


def sum16(data: bytes | bytearray | memoryview) -> int:
    """Unfolded sum of ``data`` as big-endian 16-bit words (odd length padded with zero).

    Summing native-order words and swapping the folded result gives the same
    checksum as summing big-endian words (RFC 1071 byte-order independence).
    """
    if len(data) % 2:
        data = bytes(data) + b"\0"
    words = array("H")
    words.frombytes(bytes(data))
    total = sum(words)
    if not _NATIVE_IS_LITTLE:
        return total
    folded = fold(total)
    return ((folded & 0xFF) << 8) | (folded >> 8)


def fold(total: int) -> int:
    """Fold a one's complement sum into 16 bits (end-around carry)."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The internet checksum of ``data`` plus an already summed ``initial`` (pseudo-header)."""
    return ~fold(sum16(data) + initial) & 0xFFFF


def checksum_update(old_checksum: int, old_word: int, new_word: int) -> int:
    """RFC 1624 eqn. 3: the checksum after one 16-bit word changed from old to new."""
    total = (~old_checksum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    return ~fold(total) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 or IPv6 pseudo-header for a transport checksum."""
    return sum16(src) + sum16(dst) + proto + length


# --- templates and patching -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the variable fields of one probe template sit (absolute offsets)."""

    version: int  # 4 or 6
    l4_offset: int  # start of the TCP/UDP header
    l4_proto: int
    l4_length: int  # transport header + payload length

    @property
    def dst(self) -> int:
        return IP4_DST if self.version == 4 else IP6_DST

    @property
    def src(self) -> int:
        return IP4_SRC if self.version == 4 else IP6_SRC

    @property
    def dport(self) -> int:
        return self.l4_offset + 2

    @property
    def sport(self) -> int:
        return self.l4_offset

    @property
    def l4_checksum(self) -> int:
        return self.l4_offset + (TCP_CHECKSUM if self.l4_proto == PROTO_TCP else UDP_CHECKSUM)


def layout_of(packet: bytes) -> Layout:
    """The layout of a raw IPv4/IPv6 packet whose transport header follows the IP header."""
    version = packet[0] >> 4
    if version == 4:
        offset = (packet[0] & 0x0F) * 4
        proto = packet[IP4_PROTO]
    elif version == 6:
        offset = IPV6_HEADER_LEN
        proto = packet[IP6_NEXT_HEADER]
    else:
        raise ValueError(f"not an IP packet (version {version})")
    if proto not in (PROTO_TCP, PROTO_UDP):
        raise ValueError(f"template must carry TCP or UDP, not protocol {proto}")
    return Layout(version, offset, proto, len(packet) - offset)


class ProbeTemplate:
    """One template per (probe kind, family, source), as scapy built it.

    ``bind(dst)`` gives the per-destination ``BoundProbe`` whose ``patch`` fills
    in port and cookie with one or two ``pack_into`` calls.
    """

    __slots__ = ("base_sum", "buf", "kind", "layout", "sport")

    def __init__(self, packet: bytes, kind: Probe):
        self.layout = layout_of(packet)
        self.kind = kind
        self.buf = bytearray(packet)
        lay = self.layout
        self.sport = struct.unpack_from("!H", packet, lay.sport)[0]
        # Zero what patch() overwrites, then sum what stays: transport bytes + the
        # pseudo-header's source, protocol and length (destination added per host).
        struct.pack_into("!H", self.buf, lay.dport, 0)
        struct.pack_into("!H", self.buf, lay.l4_checksum, 0)
        if kind is not Probe.UDP:
            struct.pack_into("!II", self.buf, lay.l4_offset + TCP_SEQ, 0, 0)
        src = bytes(self.buf[lay.src : lay.src + (4 if lay.version == 4 else 16)])
        self.base_sum = sum16(self.buf[lay.l4_offset :]) + sum16(src)
        self.base_sum += lay.l4_proto + lay.l4_length

    def bind(self, dst: bytes) -> BoundProbe:
        """A copy of the template addressed to ``dst``, ready for per-probe patching."""
        return BoundProbe(self, dst)


def ipv4_mark(cookie: int) -> int:
    """The IPv4 ID that marks a UDP probe: never 0, which the kernel would replace."""
    return (cookie & 0xFFFF) or 1


_TCP_PORT_SEQ_ACK = struct.Struct("!HII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class BoundProbe:
    """A template bound to one destination: ``patch(dport, cookie)`` per probe.

    The checksum is the precomputed partial sum (everything but port and
    cookie) plus the patched words, folded: no byte of the packet is summed again.
    """

    __slots__ = ("_csum_at", "_ip4", "_ipsum", "_l4", "_sum", "buf", "kind")

    def __init__(self, template: ProbeTemplate, dst: bytes):
        lay = template.layout
        if len(dst) != (4 if lay.version == 4 else 16):
            raise ValueError("destination address does not match the template's family")
        self.kind = template.kind
        self.buf = bytearray(template.buf)
        self.buf[lay.dst : lay.dst + len(dst)] = dst
        self._sum = fold(template.base_sum + sum16(dst))
        self._l4 = lay.l4_offset
        self._csum_at = lay.l4_checksum
        self._ip4 = lay.version == 4
        self._ipsum = 0
        if self._ip4:
            # A packet socket sends the IPv4 header as is: keep its checksum right
            # (the ID, our UDP mark, is added per probe).
            self.buf[IP4_ID : IP4_ID + 2] = b"\0\0"
            self.buf[IP4_CHECKSUM : IP4_CHECKSUM + 2] = b"\0\0"
            self._ipsum = sum16(self.buf[: lay.l4_offset])
            _U16.pack_into(self.buf, IP4_CHECKSUM, ~fold(self._ipsum) & 0xFFFF)

    def patch(self, dport: int, cookie: int) -> bytearray:
        """Fill ``buf`` for one probe and return it (valid until the next patch)."""
        buf = self.buf
        kind = self.kind
        if kind is Probe.UDP:
            # Our mark in the IP header, quoted back by ICMP errors.
            if self._ip4:
                mark = ipv4_mark(cookie)
                _U16.pack_into(buf, IP4_ID, mark)
                _U16.pack_into(buf, IP4_CHECKSUM, ~fold(self._ipsum + mark) & 0xFFFF)
            else:
                _U32.pack_into(buf, IP6_FLOW, 0x60000000 | (cookie & FLOW_LABEL_MASK))
            _U16.pack_into(buf, self._l4 + UDP_DPORT, dport)
            total = self._sum + dport
        else:
            ack = cookie if kind is Probe.ACK else 0
            _TCP_PORT_SEQ_ACK.pack_into(buf, self._l4 + TCP_DPORT, dport, cookie, ack)
            total = self._sum + dport + (cookie >> 16) + (cookie & 0xFFFF)
            total += (ack >> 16) + (ack & 0xFFFF)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        csum = ~total & 0xFFFF
        if csum == 0 and kind is Probe.UDP:
            csum = 0xFFFF  # UDP: zero means "no checksum" (RFC 768)
        _U16.pack_into(buf, self._csum_at, csum)
        return buf

    def patch_many(self, dports: array[int], cookies: array[int]) -> bytearray:
        """``len(dports)`` probes back to back, each the bytes ``patch`` would give.

        Built by columns: the template repeated, then each field written into
        every copy by one slice assignment per byte. For a one's complement sum
        ``t > 0``, ``~fold(t) & 0xFFFF == 0xFFFE - (t - 1) % 0xFFFF``, and a 32-bit
        word counts as itself modulo 0xFFFF, so a checksum column is a few
        ``map`` calls, with no Python statement per probe.
        """
        size = len(self.buf)
        out = self.buf * len(dports)
        l4 = self._l4
        if self.kind is Probe.UDP:
            if self._ip4:
                marks = array("H", map(0xFFFF.__and__, cookies))
                if marks.count(0):
                    marks = array("H", [mark or 1 for mark in marks])  # see ipv4_mark
                ip_sums = map(0xFFFF.__rmod__, map((self._ipsum - 1).__add__, marks))
                _put(out, size, IP4_ID, marks)
                _put(out, size, IP4_CHECKSUM, array("H", map(0xFFFE.__sub__, ip_sums)))
            else:
                flows = map(0x60000000.__or__, map(FLOW_LABEL_MASK.__and__, cookies))
                _put(out, size, IP6_FLOW, array("I", flows))
            _put(out, size, l4 + UDP_DPORT, dports)
            sums = map((self._sum - 1).__add__, dports)
        else:
            _put(out, size, l4 + TCP_DPORT, dports)
            _put(out, size, l4 + TCP_SEQ, cookies)
            sums = map(add, map((self._sum - 1).__add__, dports), cookies)
            if self.kind is Probe.ACK:
                _put(out, size, l4 + TCP_ACK, cookies)
                sums = map(add, sums, cookies)
        csums = array("H", map(0xFFFE.__sub__, map(0xFFFF.__rmod__, sums)))
        if self.kind is Probe.UDP and csums.count(0):
            csums = array("H", [csum or 0xFFFF for csum in csums])  # RFC 768, as in patch
        _put(out, size, self._csum_at, csums)
        return out


def _put(out: bytearray, size: int, offset: int, column: array[int]) -> None:
    """Write ``column`` (big-endian, its item size wide) at ``offset`` of every ``size`` bytes."""
    if _NATIVE_IS_LITTLE and column.itemsize > 1:
        column = array(column.typecode, column)
        column.byteswap()
    data = column.tobytes()
    width = column.itemsize
    for byte in range(width):
        out[offset + byte :: size] = data[byte::width]


def ipv4_header_checksum(packet: bytes | bytearray) -> int:
    """Checksum of an IPv4 header (its checksum field taken as zero)."""
    ihl = (packet[0] & 0x0F) * 4
    header = bytearray(packet[:ihl])
    header[IP4_CHECKSUM : IP4_CHECKSUM + 2] = b"\0\0"
    return checksum(header)
