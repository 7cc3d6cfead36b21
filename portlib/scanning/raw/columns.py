"""Pure: a whole block of replies read by columns, with no Python statement per frame.

The receive filter cuts every IPv4 TCP reply without options to ``TCP_SNAP``
bytes, and every IPv4 ICMP message quoting such a header to ``ICMP_SNAP``, so a
ring block of nothing but TCP answers (or ICMP port unreachables, for a UDP
scan) holds them at one fixed stride. Each header field is then one extended slice of the block
(``buf[at::stride]``): constant fields are checked with ``count``, the source
ports, sequence and acknowledgement numbers are joined from their byte
columns into ``array``s, and every lookup (port number, probe flags, cookie)
is one ``map`` over a column.

``BlockColumns.block`` only accepts the plain case: every frame a first-try
answer, proven by its cookie, from one fast host, to a distinct undecided
probe, with flags that say one thing (a UDP scan: port unreachables from the
target itself, whose ICMP answers need no counting). Anything else (a stray, a retry, a duplicate, a
decided probe, odd flags, another host) makes it decline the whole block,
which then takes ``ReplyReader.read``, frame by frame; so a block gets the same
verdicts either way.
"""

from __future__ import annotations

import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from itertools import repeat
from operator import sub
from typing import Protocol, cast

from portlib.model import PortState, Reason
from portlib.scanning.raw.bpf import ICMP_SNAP, TCP_SNAP
from portlib.scanning.raw.wire import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK_FLAG,
    TCP_RST,
    TCP_SYN,
    Probe,
)

# The length of the replies a scan of each kind reads by columns.
SNAP: dict[Probe, int] = {Probe.SYN: TCP_SNAP, Probe.ACK: TCP_SNAP, Probe.UDP: ICMP_SNAP}

FirstTry = tuple[int, PortState, Reason, float]
"""(probe index, state, reason, time of arrival): a first try's answer, decided in bulk."""


class FirstTries:
    """First tries' answers to decide in bulk, one column per ``FirstTry`` field.

    Columns, not tuples: a block read by columns adds its answers with one
    ``extend`` per column, and the probe book takes the columns as they are.
    """

    __slots__ = ("probes", "reasons", "states", "whens")

    def __init__(self) -> None:
        self.probes: list[int] = []
        self.states: list[PortState] = []
        self.reasons: list[Reason] = []
        self.whens: list[float] = []

    def add(self, idx: int, state: PortState, reason: Reason, when: float) -> None:
        self.probes.append(idx)
        self.states.append(state)
        self.reasons.append(reason)
        self.whens.append(when)

    def __len__(self) -> int:
        return len(self.probes)

    def __iter__(self) -> Iterator[FirstTry]:
        return zip(self.probes, self.states, self.reasons, self.whens, strict=True)


_SWAP = sys.byteorder == "little"  # columns are joined in network order


def _verdict_codes(kind: Probe) -> bytes:
    """Flags byte -> 1 or 2 (the two answers ``kind`` may get), 0 where the flags say nothing."""
    codes = bytearray(256)
    for flags in range(256):
        if kind is Probe.SYN and flags & TCP_ACK_FLAG:
            codes[flags] = 1 if flags & TCP_RST else 2 if flags & TCP_SYN else 0
        elif kind is Probe.ACK:
            codes[flags] = 1 if flags & TCP_RST else 0
    return bytes(codes)


CODES: dict[Probe, bytes] = {kind: _verdict_codes(kind) for kind in Probe}
# Verdict code -> state and -> reason, per kind; code 0 never reaches these.
STATES: dict[Probe, tuple[PortState, ...]] = {
    Probe.SYN: (PortState.CLOSED, PortState.CLOSED, PortState.OPEN),
    Probe.ACK: (PortState.UNFILTERED, PortState.UNFILTERED),
    Probe.UDP: (PortState.CLOSED, PortState.CLOSED),  # a port unreachable from the target
}
REASONS: dict[Probe, tuple[Reason, ...]] = {
    Probe.SYN: (Reason.RESET, Reason.RESET, Reason.SYN_ACK),
    Probe.ACK: (Reason.RESET, Reason.RESET),
    Probe.UDP: (Reason.PORT_UNREACH, Reason.PORT_UNREACH),
}
# Fragment-offset byte values of a first (or only) fragment: the flags bits only.
_FIRST_FRAGMENT = bytes(b for b in range(256) if not b & 0x1F)


def _low_halves(values: array[int]) -> array[int]:
    """The low 16 bits of each of ``values`` (an ``array('I')``), as an ``array('H')``."""
    raw = values.tobytes()
    low = 0 if _SWAP else 2  # where the low half sits in a native 32-bit integer
    halves = bytearray(len(values) * 2)
    halves[0::2] = raw[low::4]
    halves[1::2] = raw[low + 1 :: 4]
    return array("H", halves)


def _join(columns: list[bytes], typecode: str) -> array[int]:
    """Big-endian fields from their byte columns (most significant first), as an array."""
    width = len(columns)
    joined = bytearray(len(columns[0]) * width)
    for i, column in enumerate(columns):
        joined[i::width] = column
    out = array(typecode, joined)
    if _SWAP:
        out.byteswap()
    return out


class ProbeColumns(Protocol):
    """The probe book's columns a reader shares (``ReplyReader`` has them; see there)."""

    kind: Probe
    sport: int
    host_index: Mapping[bytes, int]
    port_index: Mapping[int, int]
    nports: int
    cookies: array[int]
    sends: bytearray
    decided: bytearray
    fast: bytearray
    icmp_untracked: bytearray


class BlockColumns:
    """Reads uniform blocks for one scan against the engine's probe book (``book``)."""

    __slots__ = ("book", "codes", "reasons", "states")

    def __init__(self, book: ProbeColumns) -> None:
        self.book = book
        self.codes = CODES[book.kind]
        self.states = STATES[book.kind]
        self.reasons = REASONS[book.kind]

    def block(
        self,
        buf: bytes | bytearray | memoryview | object,
        at: int,
        count: int,
        stride: int,
        first: FirstTries,
        clock: Callable[[], float],
    ) -> bool:
        """Decide the ``count`` replies whose IP headers start at ``at``, ``stride`` apart.

        Each frame holds ``SNAP[kind]`` bytes (the caller has checked): TCP
        answers for a TCP scan, ICMP port unreachables for a UDP one. Returns
        False, having changed nothing, when the block is not the plain case.
        """
        b: bytes = buf  # type: ignore[assignment]  # bytes, bytearray or an mmap
        book = self.book
        span = (count - 1) * stride + 1

        def column(offset: int) -> bytes:
            return bytes(b[at + offset : at + offset + span : stride])

        def constant(checks: tuple[tuple[int, int], ...]) -> bool:
            return all(column(offset).count(value) == count for offset, value in checks)

        sport = book.sport
        key = bytes(b[at + 12 : at + 16])  # the first frame's source address
        if not constant(((0, 0x45), (7, 0), *zip(range(12, 16), key, strict=True))):
            return False  # IPv4 without options, a first fragment (below), from one host
        if column(6).translate(None, _FIRST_FRAGMENT):
            return False
        h = book.host_index.get(key)
        if h is None or not book.fast[h]:
            return False
        if book.kind is Probe.UDP:
            # A port unreachable from the target itself, quoting our probe to it.
            quoted = (*zip(range(44, 48), key, strict=True), (48, sport >> 8), (49, sport & 0xFF))
            if not book.icmp_untracked[h] or not constant(
                ((9, PROTO_ICMP), (20, 3), (21, 3), (28, 0x45), (37, PROTO_UDP), *quoted)
            ):
                return False
            port_at, codes = 50, b"\x01" * count
        else:
            if not constant(((9, PROTO_TCP), (22, sport >> 8), (23, sport & 0xFF))):
                return False
            codes = column(33).translate(self.codes)
            if codes.count(0):
                return False
            port_at = 20
        probes = self._first_tries(h, _join([column(port_at), column(port_at + 1)], "H"), count)
        if probes is None:
            return False
        cookies = array("I", map(book.cookies.__getitem__, probes))
        if book.kind is Probe.UDP:
            if _join([column(32), column(33)], "H") != _low_halves(cookies):
                return False  # the quoted IPv4 ID is our mark (one of 0 goes the slow path)
        elif book.kind is Probe.SYN:
            acks = _join([column(28), column(29), column(30), column(31)], "I")
            if list(map(sub, acks, cookies)).count(1) != count:
                return False  # the ack must be cookie + 1 (a wrapped one takes the slow path)
        elif _join([column(24), column(25), column(26), column(27)], "I") != cookies:
            return False  # an ACK probe's RST carries the cookie as its sequence number
        deque(map(book.decided.__setitem__, probes, repeat(1)), maxlen=0)
        first.probes.extend(probes)
        first.states.extend(map(self.states.__getitem__, codes))
        first.reasons.extend(map(self.reasons.__getitem__, codes))
        first.whens.extend(repeat(clock(), count))
        return True

    def _first_tries(self, h: int, ports: array[int], count: int) -> list[int] | None:
        """Host ``h``'s probes that ``ports`` answer, if each is a distinct undecided first try."""
        book = self.book
        numbers = list(map(book.port_index.get, ports))
        if None in numbers:
            return None
        base = h * book.nports
        known = cast(list[int], numbers)
        probes = known if not base else list(map(base.__add__, known))
        if any(map(book.decided.__getitem__, probes)):
            return None
        if bytes(map(book.sends.__getitem__, probes)).count(1) != count:
            return None
        if len(set(probes)) != count:
            return None
        return probes
