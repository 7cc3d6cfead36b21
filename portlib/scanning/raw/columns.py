"""Pure: a whole block of TCP replies read by columns, with no Python statement per frame.

The receive filter cuts every IPv4 TCP reply without options to ``TCP_SNAP``
bytes, so a ring block of nothing but such replies holds them at one fixed
stride. Each header field is then one extended slice of the block
(``buf[at::stride]``): constant fields are checked with ``count``, the source
ports, sequence and acknowledgement numbers are joined from their byte
columns into ``array``s, and every lookup (port number, probe flags, cookie)
is one ``map`` over a column.

``tcp_block`` only accepts the plain case: every frame a first-try answer,
proven by its cookie, from one fast host, to a distinct undecided probe, with
flags that say one thing. Anything else (a stray, a retry, a duplicate, a
decided probe, odd flags, another host) makes it decline the whole block,
which then takes ``ReplyReader.read``, frame by frame; so a block gets the same
verdicts either way.
"""

from __future__ import annotations

import sys
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from itertools import repeat
from operator import sub
from typing import cast

from portlib.model import PortState, Reason
from portlib.scanning.raw.wire import PROTO_TCP, TCP_ACK_FLAG, TCP_RST, TCP_SYN, Probe

FirstTry = tuple[int, PortState, Reason, float]
"""(probe index, state, reason, time of arrival): a first try's answer, decided in bulk."""

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


CODES: dict[Probe, bytes] = {kind: _verdict_codes(kind) for kind in (Probe.SYN, Probe.ACK)}
# Verdict code -> state and -> reason, per kind; code 0 never reaches these.
STATES: dict[Probe, tuple[PortState, ...]] = {
    Probe.SYN: (PortState.CLOSED, PortState.CLOSED, PortState.OPEN),
    Probe.ACK: (PortState.UNFILTERED, PortState.UNFILTERED),
}
REASONS: dict[Probe, tuple[Reason, ...]] = {
    Probe.SYN: (Reason.RESET, Reason.RESET, Reason.SYN_ACK),
    Probe.ACK: (Reason.RESET, Reason.RESET),
}
# Fragment-offset byte values of a first (or only) fragment: the flags bits only.
_FIRST_FRAGMENT = bytes(b for b in range(256) if not b & 0x1F)


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


class BlockColumns:
    """Reads uniform blocks for one TCP scan against the engine's probe book.

    The book's columns are shared with ``ReplyReader`` (see there): ``host_index``,
    ``port_index``, ``cookies``, ``sends``, ``decided``, and per host ``fast``.
    """

    __slots__ = (
        "codes",
        "cookies",
        "decided",
        "fast",
        "host_index",
        "kind",
        "nports",
        "port_index",
        "reasons",
        "sends",
        "sport",
        "states",
    )

    def __init__(
        self,
        kind: Probe,
        sport: int,
        *,
        host_index: Mapping[bytes, int],
        port_index: Mapping[int, int],
        cookies: array[int],
        sends: bytearray,
        decided: bytearray,
        fast: bytearray,
    ) -> None:
        self.kind = kind
        self.sport = sport
        self.codes = CODES[kind]
        self.states = STATES[kind]
        self.reasons = REASONS[kind]
        self.host_index = host_index
        self.port_index = port_index
        self.nports = len(port_index)
        self.cookies = cookies
        self.sends = sends
        self.decided = decided
        self.fast = fast

    def tcp_block(
        self,
        buf: bytes | bytearray | memoryview | object,
        at: int,
        count: int,
        stride: int,
        first: list[FirstTry],
        clock: Callable[[], float],
    ) -> bool:
        """Decide the ``count`` replies whose IP headers start at ``at``, ``stride`` apart.

        Each frame holds ``TCP_SNAP`` bytes (the caller has checked). Returns
        False, having changed nothing, when the block is not the plain case.
        """
        b: bytes = buf  # type: ignore[assignment]  # bytes, bytearray or an mmap
        span = (count - 1) * stride + 1

        def column(offset: int) -> bytes:
            return bytes(b[at + offset : at + offset + span : stride])

        sport = self.sport
        key = bytes(b[at + 12 : at + 16])  # the first frame's source address
        for offset, value in (
            (0, 0x45),  # IPv4, no options
            (7, 0),  # fragment offset, low byte
            (9, PROTO_TCP),
            (12, key[0]),
            (13, key[1]),
            (14, key[2]),
            (15, key[3]),
            (22, sport >> 8),  # destination port: the held one
            (23, sport & 0xFF),
        ):
            if column(offset).count(value) != count:
                return False
        if column(6).translate(None, _FIRST_FRAGMENT):
            return False
        h = self.host_index.get(key)
        if h is None or not self.fast[h]:
            return False
        codes = column(33).translate(self.codes)
        if codes.count(0):
            return False
        numbers = list(map(self.port_index.get, _join([column(20), column(21)], "H")))
        if None in numbers:
            return False
        base = h * self.nports
        known = cast(list[int], numbers)
        probes = known if not base else list(map(base.__add__, known))
        if any(map(self.decided.__getitem__, probes)):
            return False
        if bytes(map(self.sends.__getitem__, probes)).count(1) != count:
            return False
        if len(set(probes)) != count:
            return False
        cookies = list(map(self.cookies.__getitem__, probes))
        if self.kind is Probe.SYN:
            acks = _join([column(28), column(29), column(30), column(31)], "I")
            if list(map(sub, acks, cookies)).count(1) != count:
                return False  # the ack must be cookie + 1 (a wrapped one takes the slow path)
        elif _join([column(24), column(25), column(26), column(27)], "I").tolist() != cookies:
            return False  # an ACK probe's RST carries the cookie as its sequence number
        deque(map(self.decided.__setitem__, probes, repeat(1)), maxlen=0)
        first.extend(
            zip(
                probes,
                map(self.states.__getitem__, codes),
                map(self.reasons.__getitem__, codes),
                repeat(clock()),
                strict=False,
            )
        )
        return True
