"""The userspace delay link: two TUN devices joined by a relay that delays, drops, reorders.

The kernel here has no netem, so a delayed lab host sits behind this link. The lab
creates a persistent TUN device in the scanner namespace ("near") and one in the
target namespace ("far"), then runs ``ip netns exec SCANNER python -m tests.lab.link``.
The relay attaches to both (it enters the target namespace with setns(2) just long
enough to open the far device), prints READY, and moves raw IP packets (v4 and v6,
no packet-info header) both ways.

Each packet is held for its own random time, independently of the others: packets sit
in a heap keyed by release time, so a thousand packets in flight cost no more wall time
than one. Per direction a packet is held ``delay/2 ± jitter/2`` (uniform, or normal with
that standard deviation, never below zero), so ``delay`` and ``jitter`` describe the
round trip. With probability ``loss`` a packet is dropped; with probability
``reorder`` it skips the queue and overtakes the packets in flight. A seed makes the
sequence of random choices repeatable.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time
from dataclasses import dataclass

from tests.lab.procs import announce_ready, parent_gone

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_CLONE_NEWNET = 0x40000000
_BATCH = 256  # packets read per device per wake-up
# epoll waits in whole milliseconds, rounded up, so wake-ups come up to 1 ms late;
# releasing packets that are due within half a millisecond centres that error on zero.
_EARLY_S = 0.0005


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to a packet. Pure apart from its ``rng``."""

    hold_s: float  # mean one-way hold time
    spread_s: float  # uniform half-width, or normal standard deviation
    loss: float
    reorder: float
    normal: bool
    rng: random.Random

    def hold(self) -> float | None:
        """Seconds to hold the next packet, or None to drop it."""
        if self.loss and self.rng.random() < self.loss:
            return None
        if self.reorder and self.rng.random() < self.reorder:
            return 0.0
        if not self.spread_s:
            return self.hold_s
        if self.normal:
            return max(0.0, self.rng.gauss(self.hold_s, self.spread_s))
        return max(0.0, self.rng.uniform(self.hold_s - self.spread_s, self.hold_s + self.spread_s))


def open_tun(name: str) -> int:
    """Attach to the TUN device ``name`` in the current network namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_tun_in(ns: str, name: str) -> int:
    """Attach to TUN ``name`` in namespace ``ns``, then return to our own namespace."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return open_tun(name)
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


class Relay:
    """Moves packets between two TUN fds through a heap of (release time, seq, fd, packet)."""

    def __init__(self, near: int, far: int, out: Impairment, back: Impairment):
        self.routes = {near: (far, out), far: (near, back)}
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        self.counts = {"in": 0, "out": 0, "lost": 0, "write_failed": 0}
        self.running = True

    def run(self, parent: int) -> None:
        poller = select.epoll()
        for fd in self.routes:
            poller.register(fd, select.EPOLLIN)
        next_check = time.monotonic() + 1.0
        while self.running:
            now = time.monotonic()
            if now >= next_check:
                if parent_gone(parent):
                    return
                next_check = now + 1.0
            due = self.heap[0][0] - _EARLY_S if self.heap else next_check
            wait = min(due, next_check) - now
            try:
                events = poller.poll(max(0.0, wait))
            except InterruptedError:
                continue
            for fd, _ in events:
                self._take(fd)
            self._release(time.monotonic() + _EARLY_S)

    def _take(self, fd: int) -> None:
        out_fd, impairment = self.routes[fd]
        now = time.monotonic()
        for _ in range(_BATCH):
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            self.counts["in"] += 1
            hold = impairment.hold()
            if hold is None:
                self.counts["lost"] += 1
                continue
            self.seq += 1
            heapq.heappush(self.heap, (now + hold, self.seq, out_fd, packet))

    def _release(self, now: float) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, fd, packet = heapq.heappop(heap)
            try:
                os.write(fd, packet)
                self.counts["out"] += 1
            except OSError:  # device down or its queue full: the packet is lost
                self.counts["write_failed"] += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.link")
    parser.add_argument("--near", required=True, help="TUN device in this namespace")
    parser.add_argument("--far-ns", required=True, help="namespace of the other TUN device")
    parser.add_argument("--far", required=True, help="TUN device in --far-ns")
    parser.add_argument("--delay", type=float, default=0.0, help="added round trip, seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="round-trip spread, seconds")
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability per packet")
    parser.add_argument("--reorder", type=float, default=0.0, help="overtake probability")
    parser.add_argument("--distribution", choices=("uniform", "normal"), default="uniform")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    normal = args.distribution == "normal"

    def impairment() -> Impairment:
        return Impairment(args.delay / 2, args.jitter / 2, args.loss, args.reorder, normal, rng)

    near = open_tun(args.near)
    far = open_tun_in(args.far_ns, args.far)
    relay = Relay(near, far, impairment(), impairment())

    def stop(_sig: int, _frame: object) -> None:
        raise SystemExit(0)  # interrupts the poll at once; the stats below still print

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announce_ready()
    try:
        relay.run(args.parent)
    finally:
        print(f"link {args.near}<->{args.far_ns}/{args.far}: {relay.counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
