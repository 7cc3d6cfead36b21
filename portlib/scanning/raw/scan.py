"""One run of the raw engine over one ``ScanWork``: the loop between sending and reading.

The loop sends what the window, the rate cap and the ICMP buckets allow
(``sending``), reads replies when the receive socket is readable (``columns``
for uniform ring blocks, ``replies`` for the rest), times silent probes out
(``silences``: tried again, benched or given up), and hands decided verdicts
to the Scanner in batches. It owns every socket it opens.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from portlib.model import PortState, Protocol, Reason
from portlib.scanning.book import RetryBook
from portlib.scanning.contract import Emit, ScanWork, emit_many
from portlib.scanning.order import ProbeOrder
from portlib.scanning.raw import bpf
from portlib.scanning.raw.columns import SNAP
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.hosts import HostBuilder, RawHost
from portlib.scanning.raw.io import rawsock
from portlib.scanning.raw.io.rxring import RxRing
from portlib.scanning.raw.links import Links
from portlib.scanning.raw.probes import ProbeBook
from portlib.scanning.raw.replies import (
    Answer,
    Classifier,
    FirstTries,
    Frame,
    ReplyReader,
)
from portlib.scanning.raw.sending import RawSender
from portlib.scanning.raw.silences import Silences
from portlib.scanning.raw.wire import PROTO_TCP, PROTO_UDP, Probe
from portlib.scanning.timing import (
    CongestionWindow,
    LearnedTiming,
    RateFloor,
    RateLimiter,
    RetryPolicy,
)
from portlib.scanning.wakeup import Wakeup

PROTOCOL: dict[Probe, Protocol] = {
    Probe.SYN: Protocol.TCP,
    Probe.ACK: Protocol.TCP,
    Probe.UDP: Protocol.UDP,
}
BATCH = 256  # probes sent between two looks at the receive socket
# With send workers a batch is one pipe write: a bigger one keeps both workers'
# kernel work queued while this process reads, decides and hands results over.
WORKER_BATCH = 1024
RAW_WINDOW_CAP = 8192  # probes in flight at most (no file descriptor per probe)


@dataclass(frozen=True, slots=True)
class RawTuning:
    """Which kernel facilities a raw scan uses; each off switch keeps a slower, plainer path."""

    rx_ring: bool = True  # False: one recv per reply
    tx_ring: bool = True  # False: one sendto per probe on a raw IP socket
    send_workers: bool = True  # False: every sendto in this process


DEFAULT_TUNING = RawTuning()


class RawScan:
    """One run of the engine over one ``ScanWork``; owns every socket it opens."""

    def __init__(self, kind: Probe, work: ScanWork, tuning: RawTuning = DEFAULT_TUNING):
        self.kind = kind
        self.work = work
        self.tuning = tuning
        self.sockets: list[socket.socket] = []
        self.rx_drops = 0
        self.clock = time.monotonic
        self.links = Links()
        self.rx_ring: RxRing | None = None
        rng = random.Random(work.seed)
        try:
            self.sport, held = rawsock.hold_port(
                socket.SOCK_DGRAM if kind is Probe.UDP else socket.SOCK_STREAM, rng
            )
            self.sockets += held
            l4 = (PROTO_UDP,) if kind is Probe.UDP else (PROTO_TCP,)
            ifindexes = rawsock.receive_interfaces(work.hosts, interface=work.interface)
            self.rx = rawsock.packet_receiver(bpf.reply_filter(l4, self.sport, ifindexes=ifindexes))
            self.sockets.append(self.rx)
            if tuning.rx_ring:  # set up in a thread meanwhile: see run()
                self.rx_ring = RxRing(self.rx)
            builder = HostBuilder(
                kind,
                self.sport,
                self.links,
                self.sockets,
                use_tx_ring=tuning.tx_ring,
                now=self.clock(),
                interface=work.interface,
            )
            self.hosts: list[RawHost] = [builder.host(h) for h in dict.fromkeys(work.hosts)]
        except BaseException:
            self.close()
            raise
        ports = list(dict.fromkeys(work.ports))
        count = len(self.hosts) * len(ports)
        # Seeded pseudo-random walk, nothing materialized; shards partition exactly.
        self.order = ProbeOrder(count, seed=work.seed, shard=work.shard, sequential=work.sequential)
        book = self.book = ProbeBook(
            [h.address for h in self.hosts], ports, PROTOCOL[kind], to_decide=self.order.count
        )
        cookie = Cookie(secrets.token_bytes(16))
        self.sender = RawSender(book, self.hosts, cookie, self.sport, self.clock)
        # Per host: may a first-try answer be decided in bulk? Not while its link
        # header is unresolved; ICMP answers from a host that may rate-limit them
        # (one with an ``IcmpLimit``) always count one by one.
        self.reader = ReplyReader(
            Classifier(kind, self.sport, cookie),
            host_index={h.key: i for i, h in enumerate(self.hosts)},
            port_index=dict(zip(ports, range(len(ports)), strict=True)),
            cookies=book.cookies,
            sends=book.sends,
            decided=book.decided,
            fast=bytearray(h.link.unresolved is None for h in self.hosts),
            icmp_untracked=bytearray(h.limit is None for h in self.hosts),
        )
        timing = work.timing
        self.learned = work.learned or LearnedTiming.for_profile(timing)
        self.rtt = self.learned.rtt  # shared: what this run measures, the next one starts from
        self.window = CongestionWindow.for_profile(timing, RAW_WINDOW_CAP)
        start = min(64.0, float(self.window.high))
        if self.learned.cwnd is not None:
            start = max(start, min(self.learned.cwnd, float(self.window.high)))
        self.window.cwnd = max(self.window.cwnd, start)
        self.window.ssthresh = float(self.window.high)  # slow start until the first loss
        # No silent-scan horizon: a raw scan that hears nothing at all is done after
        # its tries (the connect engine confirms such a silence for a few seconds).
        self.retries = RetryBook(RetryPolicy(timing.max_retries), horizon=0.0)
        self.rate = RateLimiter.per_second(timing.rate) if timing.rate else None
        self.rate_floor = RateFloor(timing.min_rate, self.clock()) if timing.min_rate else None
        self.silences = Silences(self.book, self.hosts, kind, self.retries, self.rtt)
        self.wakeup = Wakeup()

    @property
    def sent(self) -> int:
        return self.sender.sent

    def close(self) -> None:
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.close()
        self.links.close()
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        if self.rx_ring is not None:  # after the socket: its mapping is the last hold on it
            self.rx_ring.close()
            self.rx_ring = None

    # --- the loop -----------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        fd = self.rx.fileno()
        if self.rx_ring is not None:
            try:
                self.rx_ring.ready()
            except OSError:  # no ring here: replies come by recv
                self.rx_ring.close()
                self.rx_ring = None
        if self.tuning.send_workers:
            self.sender.start_workers(self.order.count)
        loop.add_reader(fd, self.on_readable)
        try:
            await self._loop(emit)
        finally:
            loop.remove_reader(fd)
            self.learned.cwnd = self.window.cwnd

    async def _loop(self, emit: Emit) -> None:
        hand_over = emit_many(emit)
        book, sender = self.book, self.sender
        fresh = iter(self.order)
        fresh_left = True
        scan_delay = self.work.timing.scan_delay
        next_allowed = 0.0
        batch = WORKER_BATCH if sender.workers else BATCH
        while book.undecided:
            self.on_readable()  # replies already queued are answers, not silence
            if sender.workers:
                sender.flush_workers()
                sender.worker_errors()
            now = self.clock()
            self._check_drops(now)
            self.silences.expire(now)
            if self.retries.bench:
                self.silences.review_bench(now, final=not fresh_left)
            wait = 0.01
            budget = min(batch, self.window.available(book.pending))
            if self.rate_floor is not None:  # --min-rate: past the window, to the cap
                owed = self.rate_floor.owed(now, sender.sent)
                budget = max(budget, min(batch, owed, RAW_WINDOW_CAP - book.pending))
            unpaced = self.rate is None and not scan_delay
            while budget > 0:
                if book.resend:
                    idx = book.resend.popleft()
                    if book.decided[idx]:
                        continue
                elif fresh_left and unpaced:
                    # Retransmissions are out: the rest of the budget takes the hot path.
                    budget, fresh_left, pushed_back = sender.send_fresh(budget, fresh)
                    if pushed_back:
                        wait = 0.001  # the kernel wants a pause
                        break
                    continue
                elif fresh_left:
                    idx = next(fresh, -1)
                    if idx < 0:
                        fresh_left = False
                        break
                else:
                    break
                if self.rate is not None or scan_delay:
                    delay = max(self.rate.delay(now) if self.rate else 0.0, next_allowed - now)
                    if delay > 0:
                        book.resend.appendleft(idx)
                        wait = min(wait, delay)
                        break
                    next_allowed = now + scan_delay
                if not sender.send(idx, now):
                    book.resend.appendleft(idx)
                    wait = 0.001
                    break
                book.fly(idx)
                budget -= 1
            self.retries.on_send(now)
            wait = min(wait, sender.send_paced(now, self.rate))
            self.links.flush()
            if book.out:
                await hand_over(book.take_out())
            if not book.undecided:
                break
            if budget == 0 and (book.resend or fresh_left):
                # The window is full: sleep until replies free some of it. Spinning
                # here would take CPU from the send workers, whose kernel work
                # (the targets' answers) is what we are waiting for.
                await self.wakeup.sleep(wait)
            else:
                await self.wakeup.sleep(max(0.0, min(wait, self.silences.next_expiry(now) - now)))
                self.on_readable()
        if book.out:
            await hand_over(book.take_out())

    def _check_drops(self, now: float) -> None:
        drops = rawsock.packet_drops(self.rx)
        if drops:
            # Replies were lost in our own buffer: silences until now prove nothing.
            self.rx_drops += drops
            self.silences.drop_mark = now

    # --- replies ------------------------------------------------------------------

    def on_readable(self) -> None:
        """Drain the receive socket, then decide what it proved."""
        first = FirstTries()
        later: list[Answer] = []
        if self.rx_ring is not None:
            blocks = self.rx_ring.blocks(SNAP[self.kind])
            self.reader.read_blocks(blocks, first, later, self.clock)
        else:
            self.reader.read(self._received(), first, later, self.clock)
        if first:
            self.book.decide_first_tries(first, self.window, self.retries, self.rtt)
        for idx, h, state, reason, from_icmp in later:
            self._on_answer(idx, h, state, reason, from_icmp)
        if self.book.out:
            self.wakeup.wake()  # the loop sleeps: results to hand over, room to send

    def _received(self) -> Iterator[Frame]:
        """Replies by ``recv``, one system call each: where the kernel gave no ring."""
        recv = self.rx.recv
        while True:
            try:
                data = recv(bpf.SNAPLEN)
            except OSError:  # BlockingIOError (drained) and the rest alike
                return
            yield data, 0, len(data)

    def _on_answer(self, idx: int, h: int, state: PortState, reason: Reason, icmp: bool) -> None:
        """A proven reply to the probe ``idx`` (of host number ``h``) decides it."""
        book = self.book
        if book.decided[idx]:
            return
        tries = book.sends[idx]
        now = self.clock()
        host = self.hosts[h]
        if host.link.unresolved is not None:
            self.links.resolve(host.address, host.link)  # it answered: the kernel knows its MAC
            self.reader.fast[h] = host.link.unresolved is None  # its answers may go in bulk
        rtt = now - book.sent_at[idx]
        limit = host.limit
        starved = limit is not None and limit.on_answer(
            idx, book.sent_at[idx], self.sender.datagrams(host, idx), icmp=icmp
        )
        if starved:  # its earlier silences were the limit, not loss: the try that counted worked
            self.retries.on_answer(idx, 0)
        else:
            self.retries.on_answer(idx, tries - 1)
            if tries == 1:
                self.rtt.observe(rtt)
                self.window.on_answer()
            else:
                self.window.on_drop(now, book.pending, self.rtt.timeout)
        book.decide(idx, state, reason, rtt)


__all__ = [
    "BATCH",
    "DEFAULT_TUNING",
    "PROTOCOL",
    "RAW_WINDOW_CAP",
    "WORKER_BATCH",
    "RawScan",
    "RawTuning",
]
