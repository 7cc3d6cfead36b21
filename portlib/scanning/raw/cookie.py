"""Pure: the keyed cookie a probe carries and a reply must prove it saw.

A probe's cookie is a keyed hash of (destination, destination port, source
port) with a per-scan secret; it rides in the TCP sequence number (or, for
UDP, the IPv4 ID / IPv6 flow label), so a reply validates with no per-probe
state (masscan's and zmap's stateless validation).
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Sequence
from typing import Any


class Cookie:
    """A keyed 32-bit hash of (destination, destination port, source port).

    The key is a per-scan secret, so only someone who saw our probe can forge a
    valid reply. Pure: the same secret and inputs always give the same cookie.
    One SHAKE-256 output of the key, destination, source port and a block
    number (a keyed sponge, as KMAC is) holds the cookies of 256 neighbouring
    destination ports, so ``for_ports`` fills a whole -p- scan's cookies with
    256 hash calls before the first probe goes out; a single cookie
    (``__call__``, for the odd reply) costs one call.
    """

    __slots__ = ("_base", "_by_dst")

    CACHE_LIMIT = 4096
    PER_BLOCK = 256  # cookies per digest

    def __init__(self, secret: bytes):
        if not 1 <= len(secret) <= 64:
            raise ValueError("cookie secret must be 1 to 64 bytes")
        # The key's length first: no two secrets share a prefix of what is hashed.
        self._base = hashlib.shake_256(b"portlib-cookie3" + bytes((len(secret),)) + secret)
        self._by_dst: dict[bytes, Any] = {}

    def _block(self, dst: bytes, sport: int, block: int) -> bytes:
        keyed = self._by_dst.get(dst)
        if keyed is None:
            if len(self._by_dst) >= self.CACHE_LIMIT:
                self._by_dst.clear()
            keyed = self._base.copy()
            keyed.update(dst)
            self._by_dst[dst] = keyed
        h = keyed.copy()
        h.update(((sport << 16) | block).to_bytes(4, "big"))
        digest: bytes = h.digest(4 * self.PER_BLOCK)
        return digest

    def __call__(self, dst: bytes, dport: int, sport: int) -> int:
        at = (dport % self.PER_BLOCK) * 4
        return int.from_bytes(self._block(dst, sport, dport // self.PER_BLOCK)[at : at + 4], "big")

    def for_ports(self, dst: bytes, sport: int, ports: Sequence[int]) -> array[int]:
        """The cookie of each of ``ports`` (in that order), as ``__call__`` gives them."""
        if not ports:
            return array("I")
        # Every block from the lowest port's to the highest's: at most 256 digests.
        first, last = min(ports) // self.PER_BLOCK, max(ports) // self.PER_BLOCK
        table = array("I", bytes(4 * self.PER_BLOCK * (last + 1)))
        for block in range(first, last + 1):
            words = array("I", self._block(dst, sport, block))
            if sys.byteorder == "little":
                words.byteswap()  # digest bytes are big-endian words, as in __call__
            at = block * self.PER_BLOCK
            table[at : at + self.PER_BLOCK] = words
        return array("I", map(table.__getitem__, ports))
