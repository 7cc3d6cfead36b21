"""Batch sending through an ``AF_PACKET`` ``PACKET_TX_RING`` (TPACKET_V2) mmap ring.

Frames are written into the shared ring with slice copies and ``pack_into``;
one ``send`` hands every ready frame to the kernel, instead of one system call
per probe. The frames carry their Ethernet header: our interface's MAC and the
neighbor's (``links`` finds both; local targets never take a ring).
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct
import sys
import threading
from typing import Any

from portlib.errors import ScanError
from portlib.scanning.raw.io.ringmap import RingMap, RingView
from portlib.scanning.raw.io.sendworker import TRANSIENT

PACKET_VERSION = 10
PACKET_TX_RING = 13
TPACKET_V2 = 1
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4
DATA_OFFSET = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr)); the frame data starts here

ETHERTYPE = {4: b"\x08\x00", 6: b"\x86\xdd"}


def ethernet_header(dst_mac: bytes, src_mac: bytes, version: int) -> bytes:
    return dst_mac + src_mac + ETHERTYPE[version]


class TxRing:
    """One TX ring bound to one interface; ``put`` frames, then ``flush``."""

    def __init__(self, interface: str, *, frame_size: int = 256, frames: int = 2048):
        page = mmap.PAGESIZE
        per_block = page // frame_size
        blocks = max(1, frames // per_block)
        self.frame_size = frame_size
        self.frames = blocks * per_block
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # proto 0: never receives
        try:
            self.sock.bind((interface, 0))
        except BaseException:
            self.sock.close()
            raise
        # Set up in a thread (see ``ringmap``): the first ``put`` waits for it.
        version = TPACKET_V2.to_bytes(4, sys.byteorder)
        request = struct.pack("IIII", page, blocks, frame_size, self.frames)
        options = [(PACKET_VERSION, version), (PACKET_TX_RING, request)]
        self._map = RingMap(self.sock, options, page * blocks)
        self.ring: RingView | None = None
        self._direct = False  # no ring after all: frames go one send() each
        self.interface = interface
        self.head = 0
        self.pending = 0
        self.max_data = frame_size - DATA_OFFSET
        # The kernel's share of sending (the whole path to the target when it is a
        # local namespace) runs in a thread's send() without the GIL, in parallel
        # with the Python that patches frames and reads replies.
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._flusher, name="portlib-txring", daemon=True)
        self._thread.start()

    def ready(self) -> None:
        """Wait for the ring's set-up; ``OSError`` if the kernel gave none."""
        self.ring = self._map.ready()

    def _flusher(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            with contextlib.suppress(OSError):
                self.sock.send(b"")

    def put(self, link_header: bytes, packet: bytes | bytearray) -> bool:
        """Queue one frame; False when the ring is full (``flush`` and try again)."""
        offset = self.head * self.frame_size
        ring = self.ring
        if ring is None:
            if self._direct:
                return self._send_direct(link_header + packet)
            try:
                ring = self.ring = self._map.ready()
            except OSError:  # the kernel gave no ring: each frame goes by itself
                self._direct = True
                return self._send_direct(link_header + packet)
        status = struct.unpack_from("I", ring, offset)[0]
        if status != TP_STATUS_AVAILABLE and status != TP_STATUS_WRONG_FORMAT:
            return False
        size = len(link_header) + len(packet)
        if size > self.max_data:
            raise ValueError(f"frame of {size} bytes does not fit a {self.frame_size}-byte slot")
        start = offset + DATA_OFFSET
        frame: Any = ring  # ctypes: a slice takes bytes of its length
        frame[start : start + len(link_header)] = link_header
        frame[start + len(link_header) : start + size] = packet
        struct.pack_into("I", ring, offset + 4, size)  # tp_len
        struct.pack_into("I", ring, offset, TP_STATUS_SEND_REQUEST)
        self.head = (self.head + 1) % self.frames
        self.pending += 1
        return True

    def _send_direct(self, frame: bytes) -> bool:
        """One frame through the socket itself (no ring); False when the kernel pushes back."""
        try:
            self.sock.send(frame, socket.MSG_DONTWAIT)
        except OSError as exc:
            if exc.errno in TRANSIENT:
                return False
            raise ScanError(f"cannot send on {self.interface}: {exc.strerror}") from None
        return True

    def flush(self) -> None:
        """Hand every queued frame to the kernel: one send() in the flusher thread."""
        if self.pending:
            self.pending = 0
            self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.ring = None
        self.sock.close()
        self._map.close()  # after the socket: the mapping is its last hold
