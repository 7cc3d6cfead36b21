"""A ``PACKET_RX_RING`` (TPACKET_V3) on the engine's packet socket: replies without a syscall each.

The kernel writes accepted packets into blocks of a memory-mapped ring and
hands a block to us when it is full or ``retire_ms`` after its first packet.
Reading a reply is then a few ``unpack_from`` calls on the map, where a
``recv`` per packet cost a system call, an skb clone in the kernel and a
bytes object here (on a -p- loopback scan, ~0.13 s of CPU). The socket keeps
its BPF filter and its drop counters (``PACKET_STATISTICS``).

Layouts (linux/if_packet.h): a block starts with ``tpacket_block_desc``
(version, offset_to_priv, then block_status, num_pkts, offset_to_first_pkt,
...); each frame with ``tpacket3_hdr`` (tp_next_offset, tp_sec, tp_nsec,
tp_snaplen, tp_len, tp_status, tp_mac, tp_net, ...). With ``SOCK_DGRAM`` the
packet starts at tp_net, at the network header.

The ring is set up, and let go, in threads (``ringmap``).
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator
from typing import cast

from portlib.scanning.raw.io.ringmap import RingMap, RingView
from portlib.scanning.raw.replies import Block, Frame

PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

_REQ3 = struct.Struct("=IIIIIII")  # block_size, block_nr, frame_size, frame_nr, tov, priv, feat
_BLOCK = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt (at byte 8)
_FRAME = struct.Struct("=IIIIIIHH")  # tp_next_offset ... tp_mac, tp_net
_STATUS_AT = 8
_NEXT_AT, _SNAPLEN_AT, _NET_AT = 0, 12, 26  # in tpacket3_hdr
FRAME_ALIGN = 16  # TPACKET_ALIGNMENT
# The ring as ``ctypes`` maps it (slices are ``bytes``), or plain bytes in tests.
RingBuffer = RingView | bytes


class RxRing:
    """The receive ring of ``sock``; ``frames()`` yields (packet, offset, length) per packet.

    The ring is set up in a thread: ``ready()`` waits for it (``OSError`` if the
    kernel refused it: keep using ``recv`` then). ``close()`` after the socket's
    own ``close()`` lets the socket go in a thread too.
    """

    __slots__ = ("_block", "_block_size", "_blocks", "_ring", "map")

    def __init__(
        self,
        sock: socket.socket,
        *,
        block_size: int = 1 << 18,
        blocks: int = 64,
        frame_size: int = 2048,
        retire_ms: int = 1,
    ) -> None:
        # frame_size only bounds a frame in V3 (frames are packed by their real size).
        request = _REQ3.pack(
            block_size, blocks, frame_size, block_size * blocks // frame_size, retire_ms, 0, 0
        )
        version = TPACKET_V3.to_bytes(4, sys.byteorder)
        options = [(PACKET_VERSION, version), (PACKET_RX_RING, request)]
        self._ring = RingMap(sock, options, block_size * blocks)
        self._block_size = block_size
        self._blocks = blocks
        self._block = 0
        self.map: RingView | None = None

    def ready(self) -> None:
        """Wait for the set-up; ``OSError`` if the kernel gave no ring."""
        self.map = self._ring.ready()

    def blocks(self, snaplen: int = 0) -> Iterator[Block]:
        """Every block the kernel has handed over, oldest first (see ``replies.Block``).

        With ``snaplen``, a block whose frames all hold ``snaplen`` bytes comes
        with their stride. A block goes back to the kernel when the consumer
        asks for the next one; one that stops early gets the block again.
        """
        if self.map is None:
            self.ready()
        ring = self.map
        assert ring is not None
        unpack_block = _BLOCK.unpack_from
        while True:
            base = self._block * self._block_size
            status, count, first = unpack_block(ring, base + _STATUS_AT)
            if not status & TP_STATUS_USER:
                return
            at = base + first
            stride, ip = uniform_stride(ring, at, count, snaplen) if snaplen else (0, 0)
            yield block_frames(ring, at, count), ring, ip, count, stride
            struct.pack_into("=I", ring, base + _STATUS_AT, TP_STATUS_KERNEL)
            self._block = (self._block + 1) % self._blocks

    def frames(self) -> Iterator[Frame]:
        """Every packet of every block the kernel has handed over, oldest first.

        A block goes back to the kernel once its last packet has been yielded;
        a consumer that stops early (a ``break``) gets that block again, whole.
        """
        for frames, *_ in self.blocks():
            yield from frames

    def close(self) -> None:
        """Unmap the ring; with the socket closed already, the kernel lets it go in a thread."""
        self.map = None
        self._ring.close()


def block_frames(buf: RingBuffer, at: int, count: int) -> Iterator[Frame]:
    """(packet, 0, length) of the ``count`` frames from offset ``at``, each packet a copy."""
    unpack_frame = _FRAME.unpack_from
    for _ in range(count):
        step, _, _, snaplen, _, _, _, net = unpack_frame(buf, at)
        yield buf[at + net : at + net + snaplen], 0, snaplen
        at += step


def uniform_stride(buf: RingBuffer, at: int, count: int, snaplen: int) -> tuple[int, int]:
    """(stride, offset of the first IP header) if the block's frames all hold ``snaplen`` bytes.

    (0, 0) when they do not. The first frame is a frame; if each of the rest
    but the last says the next one is ``stride`` on, every ``stride`` step is a
    frame, so the checks read only the header fields' columns.
    """
    step, _, _, first_snaplen, _, _, _, net = _FRAME.unpack_from(buf, at)
    if count < 2 or first_snaplen != snaplen or not 0 < step < 0x10000:
        return 0, 0

    def column(offset: int, frames: int = count) -> bytes:
        return cast(bytes, buf[at + offset : at + offset + (frames - 1) * step + 1 : step])

    for offset, value, frames in (
        (_NEXT_AT, step & 0xFF, count - 1),  # the last frame's may be 0
        (_NEXT_AT + 1, step >> 8, count - 1),
        (_NEXT_AT + 2, 0, count - 1),
        (_NEXT_AT + 3, 0, count - 1),
        (_SNAPLEN_AT, snaplen & 0xFF, count),
        (_SNAPLEN_AT + 1, snaplen >> 8 & 0xFF, count),
        (_SNAPLEN_AT + 2, 0, count),
        (_SNAPLEN_AT + 3, 0, count),
        (_NET_AT, net & 0xFF, count),
        (_NET_AT + 1, net >> 8, count),
    ):
        if column(offset, frames).count(value) != frames:
            return 0, 0
    return step, at + net
