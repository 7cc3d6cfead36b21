"""The raw-socket engine: stateless SYN, ACK and UDP probing over IPv4 and IPv6.

Per probe the engine only patches a template (``wire.ProbeTemplate``) and sends
it; replies are read from one filtered packet socket by a reader callback on the
event loop and classified by fixed offsets (``wire.Classifier``). Whether a reply
is ours is proven by the keyed cookie, so the engine keeps no per-probe table
beyond send count, send time and "decided" flags for retransmits.

Timing (``timing``): RTT estimate -> timeout, congestion window on probes in
flight, loss-aware retry budget, optional rate cap. A UDP silence counts as a try
only when the target's ICMP token bucket certainly held a token for it
(``icmplimit``); other silent ports are probed again as the bucket refills, so
rate-limited closed ports are not misreported as ``open|filtered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import random
import secrets
import socket
import struct
import time
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from portlib.errors import ScanError
from portlib.model import IPAddress, PortResult, PortState, Protocol, Reason, ScanMethod
from portlib.scanning.contract import Emit, ScanWork, emit_many
from portlib.scanning.order import ProbeOrder
from portlib.scanning.raw import bpf, routes, templates
from portlib.scanning.raw.icmplimit import IcmpLimit
from portlib.scanning.raw.io import rawsock
from portlib.scanning.raw.io.rxring import RxRing
from portlib.scanning.raw.io.sendworker import MAX_INDEX, SendWorker
from portlib.scanning.raw.io.txring import TxRing, ethernet_header, neighbor_mac_v4
from portlib.scanning.raw.wire import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    SILENCE_STATE,
    TCP_ACK_FLAG,
    TCP_RST,
    TCP_SYN,
    BoundProbe,
    Classifier,
    Cookie,
    Probe,
    ProbeTemplate,
    ReplyEvent,
    ipv4_mark,
)
from portlib.scanning.timing import CongestionWindow, RateLimiter, RetryPolicy, RttEstimator

_KINDS: dict[ScanMethod, Probe] = {
    ScanMethod.SYN: Probe.SYN,
    ScanMethod.ACK: Probe.ACK,
    ScanMethod.UDP: Probe.UDP,
}
_PROTOCOL: dict[Probe, Protocol] = {
    Probe.SYN: Protocol.TCP,
    Probe.ACK: Protocol.TCP,
    Probe.UDP: Protocol.UDP,
}
# A send that the kernel refuses outright decides the port (errno -> reason).
_SEND_ERRORS: dict[int, Reason] = {
    errno.ENETUNREACH: Reason.NET_UNREACH,
    errno.EHOSTUNREACH: Reason.HOST_UNREACH,
    errno.EPERM: Reason.ADMIN_PROHIBITED,
    errno.EACCES: Reason.ADMIN_PROHIBITED,
}

BATCH = 256  # probes sent between two looks at the receive socket
RAW_WINDOW_CAP = 8192  # probes in flight at most (no file descriptor per probe)
WORKER_MIN_PROBES = 4096  # below this, forking a send worker costs more than it saves
MAX_WORKERS = 2  # send workers at most (more cores: this process still needs one)

_TCP_REPLY = struct.Struct("!HHII")  # source port, destination port, seq, ack
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(slots=True)
class _Host:
    address: IPAddress
    key: bytes  # packed address, as replies carry it
    sockaddr: tuple[str, int]
    sock: socket.socket
    default: tuple[BoundProbe, ...]
    by_port: dict[int, tuple[BoundProbe, ...]]
    limit: IcmpLimit | None = None  # UDP, not loopback: its ICMP errors may be rate-limited
    ring: TxRing | None = None  # batch sending, once the link header is known
    link: bytes = b""  # that link header
    unresolved: tuple[str, bytes] | None = None  # (interface, our MAC) awaiting the neighbor


class RawEngine:
    """Stateless raw probing for ``syn``, ``ack`` and ``udp`` (needs CAP_NET_RAW)."""

    def __init__(self, method: ScanMethod | str):
        try:
            self.method = ScanMethod(method)
            self.kind = _KINDS[self.method]
        except (ValueError, KeyError):
            raise ScanError(f"the raw engine does syn, ack and udp scans, not {method!r}") from None
        self.probes_sent = 0
        self.receive_drops = 0
        # Hosts seen rate-limiting ICMP errors -> seconds per token (an upper bound).
        self.icmp_intervals: dict[IPAddress, float] = {}

    async def run(self, work: ScanWork, emit: Emit) -> None:
        scan = _RawScan(self.kind, work)
        try:
            await scan.run(emit)
        finally:
            scan.close()
            self.probes_sent += scan.sent
            self.receive_drops += scan.rx_drops
            for host in scan.hosts:
                if host.limit is not None and host.limit.limited:
                    self.icmp_intervals[host.address] = host.limit.interval


class _RawScan:
    """One run of the engine over one ``ScanWork``; owns every socket it opens."""

    def __init__(self, kind: Probe, work: ScanWork):
        self.kind = kind
        self.work = work
        self.protocol = _PROTOCOL[kind]
        self.sockets: list[socket.socket] = []
        self.sent = 0
        self.rx_drops = 0
        self.clock = time.monotonic
        rng = random.Random(work.seed)
        try:
            self.sport, held = rawsock.hold_port(
                socket.SOCK_DGRAM if kind is Probe.UDP else socket.SOCK_STREAM, rng
            )
            self.sockets += held
            l4 = (PROTO_UDP,) if kind is Probe.UDP else (PROTO_TCP,)
            ifindexes = rawsock.receive_interfaces(work.hosts)
            self.rx = rawsock.packet_receiver(bpf.reply_filter(l4, self.sport, ifindexes=ifindexes))
            self.sockets.append(self.rx)
            self.rx_ring: RxRing | None = None
            if self.use_rx_ring:
                with contextlib.suppress(OSError):  # no ring here: replies come by recv
                    self.rx_ring = RxRing(self.rx)
            self.cookie = Cookie(secrets.token_bytes(16))
            self.classifier = Classifier(kind, self.sport, self.cookie)
            self._rings: dict[str, TxRing | None] = {}
            self._senders: dict[int, socket.socket] = {}
            self._template_cache: dict[
                IPAddress, tuple[ProbeTemplate, dict[int, tuple[ProbeTemplate, ...]]]
            ] = {}
            self.hosts = [self._host(h) for h in dict.fromkeys(work.hosts)]
        except BaseException:
            self.close()
            raise
        self.host_index = {h.key: i for i, h in enumerate(self.hosts)}
        self.addresses = [h.address for h in self.hosts]
        # Per host: may a first-try answer skip ``_answer``? Not while its link
        # header is unresolved; ICMP answers from a host that may rate-limit them
        # (one with an ``IcmpLimit``) always count one by one.
        self.fast_hosts = bytearray(h.unresolved is None for h in self.hosts)
        self.icmp_untracked = bytearray(h.limit is None for h in self.hosts)
        self.ports = list(dict.fromkeys(work.ports))
        self.port_index = dict(zip(self.ports, range(len(self.ports)), strict=True))
        count = len(self.hosts) * len(self.ports)
        # Seeded pseudo-random walk, nothing materialized; shards partition exactly.
        self.order = ProbeOrder(count, seed=work.seed, shard=work.shard)
        self.undecided = self.order.count
        self.decided = bytearray(count)
        self.sends = bytearray(count)  # tries so far (capped at 255)
        # Each probe's cookie, filled a host at a time before its first probe
        # (``_cookies_of``): sends and replies then only index this array.
        self.cookies = array("I", bytes(4 * count))
        self.cookies_ready = bytearray(len(self.hosts))
        self.silences = bytearray(count)  # counted silent tries
        self.sent_at = array("d", bytes(8 * count))
        self.in_flight: deque[int] = deque()  # send order; decided ones leave lazily
        # In flight and undecided: what the window counts. Not len(in_flight),
        # which holds decided probes until the (undecided, silent) one at its
        # head expires: with DROPped ports that overcounted ~100x at full speed.
        self.flying = bytearray(count)
        self.pending = 0
        self.paced_out: deque[int] = deque()
        self.resend: deque[int] = deque()
        self.out: list[PortResult] = []  # decided, not yet handed over
        timing = work.timing
        self.rtt = RttEstimator.for_profile(timing)
        self.window = CongestionWindow.for_profile(timing, RAW_WINDOW_CAP)
        self.window.cwnd = max(self.window.cwnd, min(64.0, float(self.window.high)))
        self.window.ssthresh = float(self.window.high)  # slow start until the first loss
        self.retry = RetryPolicy(timing.max_retries)
        self.rate = RateLimiter.per_second(timing.rate) if timing.rate else None
        self.drop_mark = float("-inf")

    # --- setup --------------------------------------------------------------------

    def _sender(self, family: socket.AddressFamily) -> socket.socket:
        sock = self._senders.get(family)
        if sock is None:
            sock = rawsock.raw_sender(family)
            self.sockets.append(sock)
            self._senders[family] = sock
        return sock

    def _templates(
        self, source: IPAddress
    ) -> tuple[ProbeTemplate, dict[int, tuple[ProbeTemplate, ...]]]:
        """scapy builds these once per source address (usually once per family)."""
        cached = self._template_cache.get(source)
        if cached is None:
            build = templates.build_template
            default = ProbeTemplate(build(self.kind, source, self.sport), self.kind)
            by_port: dict[int, tuple[ProbeTemplate, ...]] = {}
            if self.kind is Probe.UDP:
                for port, payloads in templates.udp_payloads().items():
                    by_port[port] = tuple(
                        ProbeTemplate(build(self.kind, source, self.sport, p), self.kind)
                        for p in payloads
                    )
            cached = (default, by_port)
            self._template_cache[source] = cached
        return cached

    def _host(self, address: IPAddress) -> _Host:
        v4 = isinstance(address, IPv4Address)
        family = socket.AF_INET if v4 else socket.AF_INET6
        key = address.packed
        source = rawsock.source_address(address)
        default, by_port = self._templates(source)
        host = _Host(
            address,
            key,
            (str(address), 0),
            self._sender(family),
            (default.bind(key),),
            {port: tuple(t.bind(key) for t in ts) for port, ts in by_port.items()},
        )
        if self.use_tx_ring:
            self._attach_link(host, local=address.is_loopback or source == address)
        if self.kind is Probe.UDP and not address.is_loopback:  # Linux exempts loopback
            host.limit = IcmpLimit(since=self.clock())
        return host

    use_rx_ring = True  # False: one recv per reply
    use_tx_ring = True  # False: one sendto per probe on a raw IP socket
    use_send_worker = True  # False: every sendto in this process
    workers: tuple[SendWorker, ...] = ()
    _next_worker = 0

    def _start_workers(self) -> None:
        """Fork send workers, one per core, when enough probes make them pay.

        The target's whole answer (its TCP/UDP stack, the RST or ICMP error,
        the delivery to our socket) runs in the kernel on the sending core, on
        loopback and through a veth alike: two senders put that work on both
        cores, while this process only reads and decides.
        """
        cores = os.cpu_count() or 1
        if not self.use_send_worker or cores < 2:
            return
        if self.order.count < WORKER_MIN_PROBES or len(self.decided) > MAX_INDEX:
            return
        targets = [(h.default[0], h.sock, h.sockaddr) for h in self.hosts]
        workers: list[SendWorker] = []
        for _ in range(min(cores, MAX_WORKERS)):
            try:
                workers.append(SendWorker(targets, self.ports))
            except OSError:
                break  # no more processes to be had: the ones we have send
        self.workers = tuple(workers)

    def _idle_worker(self) -> SendWorker | None:
        """The next worker (in turn) whose pipe took everything handed to it so far."""
        count = len(self.workers)
        for _ in range(count):
            worker = self.workers[self._next_worker % count]
            self._next_worker += 1
            if worker.flush():
                return worker
        return None

    def _worker_errors(self) -> None:
        """Sends the workers' kernel refused: decide them as ``_send`` would have."""
        for idx, code in itertools.chain.from_iterable(w.errors() for w in self.workers):
            if self.decided[idx]:
                continue
            reason = _SEND_ERRORS.get(code)
            if reason is None:
                host = self.hosts[idx // len(self.ports)]
                raise ScanError(f"cannot send to {host.address}: {os.strerror(code)}")
            self._decide(idx, PortState.FILTERED, reason, None)

    def _ring(self, interface: str) -> TxRing | None:
        ring = self._rings.get(interface)
        if ring is None and interface not in self._rings:
            try:
                ring = TxRing(interface)
            except OSError:
                ring = None  # no ring here: raw IP sockets still work
            self._rings[interface] = ring
        return ring

    def _attach_link(self, host: _Host, *, local: bool) -> None:
        """Send to ``host`` through a TX ring when its link header can be known.

        Local targets stay on raw IP sockets: a frame injected on ``lo`` has no
        route attached, and the kernel drops 127.0.0.0/8 arriving that way as
        martian. A directly attached IPv4 target needs its neighbor's MAC: until
        the kernel has resolved it (our first probes go through the raw IP
        socket, which makes it resolve), it waits.
        """
        version = host.address.version
        if local:
            return
        if version != 4:
            return  # the IPv6 neighbor table is not in /proc: stay on raw sockets
        interface = routes.on_link_interface(host.address, routes.read_routes(4))
        mac = rawsock.interface_mac(interface) if interface else None
        if interface is not None and mac is not None:
            host.unresolved = (interface, mac)
            self._resolve_link(host)

    def _resolve_link(self, host: _Host) -> None:
        if host.unresolved is None:
            return
        interface, mac = host.unresolved
        try:
            with open("/proc/net/arp", encoding="ascii") as table:
                neighbor = neighbor_mac_v4(str(host.address), interface, table.read())
        except OSError:
            neighbor = None
        if neighbor is None:
            return
        host.unresolved = None
        ring = self._ring(interface)
        if ring is not None:
            host.ring, host.link = ring, ethernet_header(neighbor, mac, 4)

    def _flush(self) -> None:
        for ring in self._rings.values():
            if ring is not None:
                ring.flush()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = ()
        for ring in getattr(self, "_rings", {}).values():
            if ring is not None:
                ring.close()
        ring = getattr(self, "rx_ring", None)
        if ring is not None:
            ring.close()
            self.rx_ring = None
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    # --- the loop -----------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        fd = self.rx.fileno()
        self._start_workers()
        loop.add_reader(fd, self._on_readable)
        try:
            await self._loop(emit)
        finally:
            loop.remove_reader(fd)

    async def _loop(self, emit: Emit) -> None:
        hand_over = emit_many(emit)
        fresh = iter(self.order)
        fresh_left = True
        scan_delay = self.work.timing.scan_delay
        next_allowed = 0.0
        while self.undecided:
            self._on_readable()  # replies already queued are answers, not silence
            if self.workers:
                self._worker_errors()
            now = self.clock()
            self._check_drops(now)
            self._expire(now)
            wait = 0.01
            budget = min(BATCH, self.window.available(self.pending))
            unpaced = self.rate is None and not scan_delay
            while budget > 0:
                if self.resend:
                    idx = self.resend.popleft()
                    if self.decided[idx]:
                        continue
                elif fresh_left and unpaced:
                    # Retransmissions are out: the rest of the budget takes the hot path.
                    budget, fresh_left, pushed_back = self._send_fresh(budget, fresh)
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
                        self.resend.appendleft(idx)
                        wait = min(wait, delay)
                        break
                    next_allowed = now + scan_delay
                if not self._send(idx, now):
                    self.resend.appendleft(idx)
                    wait = 0.001
                    break
                self._fly(idx)
                budget -= 1
            wait = min(wait, self._send_paced(now))
            self._flush()
            if self.out:
                decided, self.out = self.out, []
                await hand_over(decided)
            if not self.undecided:
                break
            if budget == 0 and (self.resend or fresh_left):
                # The window is full: sleep until replies free some of it. Spinning
                # here would take CPU from the send workers, whose kernel work
                # (the targets' answers) is what we are waiting for.
                await self._until_answered(wait)
            else:
                await self._until_answered(max(0.0, min(wait, self._next_expiry(now) - now)))
                self._on_readable()
        if self.out:
            decided, self.out = self.out, []
            await hand_over(decided)

    _answered: asyncio.Future[None] | None = None

    async def _until_answered(self, timeout: float) -> None:
        """Wait ``timeout`` seconds, or less if the reader decides a probe meanwhile."""
        loop = asyncio.get_running_loop()
        waiter = self._answered = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._answered = None

    def _next_expiry(self, now: float) -> float:
        timeout = self.rtt.timeout
        heads = [q[0] for q in (self.in_flight, self.paced_out) if q]
        if not heads:
            return now + 0.01
        return min(self.sent_at[i] for i in heads) + timeout

    # --- sending ------------------------------------------------------------------

    def _cookies_of(self, h: int) -> None:
        """Fill host number ``h``'s cookies (16 per hash call, see ``wire.Cookie``)."""
        nports = len(self.ports)
        table = self.cookie.for_ports(self.hosts[h].key, self.sport, self.ports)
        self.cookies[h * nports : (h + 1) * nports] = table
        self.cookies_ready[h] = 1

    def _send(self, idx: int, now: float) -> bool:
        """Send one probe (all payloads of its port); False when the kernel pushes back."""
        nports = len(self.ports)
        h = idx // nports
        host = self.hosts[h]
        port = self.ports[idx % nports]
        if not self.cookies_ready[h]:
            self._cookies_of(h)
        cookie = self.cookies[idx]
        ring = host.ring
        for probe in host.by_port.get(port, host.default):
            buf = probe.patch(port, cookie)
            if ring is not None:
                if not ring.put(host.link, buf):
                    ring.flush()  # full: hand the batch to the kernel, then retry
                    if not ring.put(host.link, buf):
                        return False
                continue
            try:
                host.sock.sendto(buf, host.sockaddr)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return False
                reason = _SEND_ERRORS.get(exc.errno or 0)
                if reason is None:
                    raise ScanError(f"cannot send to {host.address}: {exc.strerror}") from None
                self._decide(idx, PortState.FILTERED, reason, None)
                return True
        self.sent += 1
        self.sends[idx] = min(255, self.sends[idx] + 1)
        self.sent_at[idx] = self.clock()  # per send: orders probes within a batch
        return True

    def _send_fresh(self, budget: int, fresh: Iterator[int]) -> tuple[int, bool, bool]:
        """First tries of fresh probes, the hot path of a scan: (budget left, more, pushed back).

        One datagram per probe (raw IP socket or TX ring) is written out here with
        locals only; anything else (service payloads, a full ring, send errors)
        goes through ``_send``, which handles every case.
        """
        nports = len(self.ports)
        hosts = self.hosts
        ports = self.ports
        cookies = self.cookies
        ready = self.cookies_ready
        sends = self.sends
        sent_at = self.sent_at
        clock = self.clock
        in_flight = self.in_flight.append
        flying = self.flying
        worker = self._idle_worker()
        if self.workers and worker is None:
            return budget, True, True  # every worker still has a batch to take: wait
        batch = array("I")
        sent = 0
        try:
            while budget > 0:
                idx = next(fresh, -1)
                if idx < 0:
                    return budget, False, False
                h = idx // nports
                host = hosts[h]
                port = ports[idx % nports]
                if port not in host.by_port:
                    if not ready[h]:
                        self._cookies_of(h)
                    cookie = cookies[idx]
                    ring = host.ring
                    if worker is not None:  # even before a ring: no GIL on its way
                        batch.append(idx)
                        batch.append(cookie)
                        done = True
                    elif ring is not None:
                        done = ring.put(host.link, host.default[0].patch(port, cookie))
                    else:
                        try:
                            host.sock.sendto(host.default[0].patch(port, cookie), host.sockaddr)
                            done = True
                        except OSError:
                            done = False  # _send below tries again and sorts the error out
                    if done:
                        sends[idx] = 1
                        sent_at[idx] = clock()
                        in_flight(idx)
                        flying[idx] = 1
                        sent += 1
                        budget -= 1
                        continue
                if not self._send(idx, clock()):
                    self.resend.appendleft(idx)
                    return budget, True, True
                self._fly(idx)
                budget -= 1
            return budget, True, False
        finally:
            self.sent += sent
            self.pending += sent
            if batch:
                assert worker is not None
                worker.send(batch)

    def _send_paced(self, now: float) -> float:
        """Probe again the ports whose silence proved nothing, as each bucket allows."""
        for host in self.hosts:
            limit = host.limit
            if limit is None or not limit.waiting:
                continue
            due = limit.due(now)
            while due > 0 and limit.queue:
                if self.rate is not None and self.rate.delay(now) > 0:
                    return 0.01  # the user's --rate cap holds for these too
                idx = limit.queue.popleft()
                if self.decided[idx]:
                    continue
                if not self._send(idx, now):
                    limit.queue.appendleft(idx)  # the kernel pushes back: next round
                    break
                if not self.decided[idx]:  # else the kernel refused it outright
                    limit.sent(idx, self.sent_at[idx], self._datagrams(host, idx))
                    self.paced_out.append(idx)
                due -= 1
        return 0.01

    def _datagrams(self, host: _Host, idx: int) -> int:
        """Datagrams in one probe of ``idx`` (service payloads): each may draw an ICMP error."""
        return len(host.by_port.get(self.ports[idx % len(self.ports)], host.default))

    # --- silence ------------------------------------------------------------------

    def _fly(self, idx: int) -> None:
        self.in_flight.append(idx)
        if not self.flying[idx]:
            self.flying[idx] = 1
            self.pending += 1

    def _land(self, idx: int) -> None:
        """``idx`` is no longer in flight (decided, or silent past its timeout)."""
        if self.flying[idx]:
            self.flying[idx] = 0
            self.pending -= 1

    def _check_drops(self, now: float) -> None:
        drops = rawsock.packet_drops(self.rx)
        if drops:
            # Replies were lost in our own buffer: silences until now prove nothing.
            self.rx_drops += drops
            self.drop_mark = now

    def _expire(self, now: float) -> None:
        timeout = self.rtt.timeout
        for queue, paced in ((self.in_flight, False), (self.paced_out, True)):
            while queue:
                idx = queue[0]
                if self.decided[idx]:
                    queue.popleft()
                    continue
                if self.sent_at[idx] + timeout > now:
                    break
                queue.popleft()
                if not paced:
                    self._land(idx)
                self._silent(idx)

    def _silent(self, idx: int) -> None:
        host = self.hosts[idx // len(self.ports)]
        limit = host.limit
        if self.sent_at[idx] <= self.drop_mark:
            if limit is not None:
                limit.forget(idx)
            self.resend.append(idx)  # the answer may have been dropped by us: not a try
            return
        if limit is not None and not limit.on_silence(idx, self.sent_at[idx]):
            return  # no ICMP token was certainly waiting for it: queued, not a try
        self.silences[idx] = min(255, self.silences[idx] + 1)
        if not self.retry.should_retry(self.silences[idx]):
            self._decide(idx, SILENCE_STATE[self.kind], Reason.NO_RESPONSE, None)
        elif limit is None or not limit.retry_later(idx, self.sent_at[idx]):
            self.resend.append(idx)

    # --- replies ------------------------------------------------------------------

    def _on_readable(self) -> None:
        """Drain the receive socket, then settle what it proved.

        The common replies (IPv4 without options: a TCP answer, a UDP answer, an
        ICMP port unreachable quoting a UDP probe) are checked here by fixed
        offsets against the cookie kept from the send; the same rules as
        ``wire.Classifier``, which handles everything else. Answers to first
        tries are collected and settled in one batch (``_settle``): on a -p-
        scan of a local host this loop runs 65535 times in well under a second.
        """
        classify = self.classifier.classify
        host_index = self.host_index
        port_index = self.port_index
        nports = len(self.ports)
        decided = self.decided
        sends = self.sends
        cookies = self.cookies
        sport = self.sport
        tcp = self.kind is not Probe.UDP
        syn = self.kind is Probe.SYN
        clock = self.clock
        batch: list[tuple[int, PortState, Reason, float]] = []
        answer = batch.append
        fast = self.fast_hosts  # hosts whose first-try answers need no per-reply bookkeeping
        icmp_untracked = self.icmp_untracked
        frames = self.rx_ring.frames() if self.rx_ring is not None else self._received()
        for buf, o, size in frames:
            if size < 28 or buf[o] != 0x45 or buf[o + 6] & 0x1F or buf[o + 7]:
                event = classify(buf[o : o + size])  # options, IPv6, fragments, runts
                if event is not None:
                    self._on_event(event)
                continue
            # Which probe would this answer? (the target's address and port)
            proto = buf[o + 9]
            icmp = False
            if proto == PROTO_TCP and tcp and size >= 40:
                port, dst_port, seq, ack = _TCP_REPLY.unpack_from(buf, o + 20)
                if dst_port != sport:
                    continue
                key = buf[o + 12 : o + 16]
            elif proto == PROTO_UDP and not tcp:
                port, dst_port = _PORTS.unpack_from(buf, o + 20)
                if dst_port != sport:
                    continue
                if port == dst_port:
                    # Maybe our own probe to our own port, looped back.
                    event = classify(buf[o : o + size])
                    if event is not None:
                        self._on_event(event)
                    continue
                key = buf[o + 12 : o + 16]
            elif (
                proto == PROTO_ICMP
                and not tcp
                and size >= 56
                and buf[o + 20] == 3  # destination unreachable
                and buf[o + 21] == 3  # port unreachable
                and buf[o + 28] == 0x45
                and buf[o + 37] == PROTO_UDP
            ):
                q_sport, port = _PORTS.unpack_from(buf, o + 48)
                if q_sport != sport:
                    continue
                key = buf[o + 44 : o + 48]  # the quoted probe's destination
                icmp = True
            else:
                event = classify(buf[o : o + size])
                if event is not None:
                    self._on_event(event)
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
                if _U16.unpack_from(buf, o + 32)[0] != ipv4_mark(cookie):
                    continue
                # A router's port unreachable says nothing about the port itself.
                closed = buf[o + 12 : o + 16] == key
                state = PortState.CLOSED if closed else PortState.FILTERED
                reason = Reason.PORT_UNREACH
            elif not tcp:
                state, reason = PortState.OPEN, Reason.UDP_RESPONSE
            else:
                flags = buf[o + 33]
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
                answer((idx, state, reason, clock()))
            else:
                self._answer(idx, h, state, reason, icmp)
        if batch:
            self._settle(batch)
        if self.out and self._answered is not None:
            _wake(self._answered)  # the loop sleeps: results to hand over, room to send

    def _received(self) -> Iterator[tuple[bytes, int, int]]:
        """Replies by ``recv``, one system call each: where the kernel gave no ring."""
        recv = self.rx.recv
        while True:
            try:
                data = recv(bpf.SNAPLEN)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            yield data, 0, len(data)

    def _settle(self, batch: list[tuple[int, PortState, Reason, float]]) -> None:
        """First-try answers from hosts needing no per-reply care, all at once.

        What ``_answer`` does per reply, in closed form: the window grows by the
        count, the retry budget counts first tries, and the RTT estimator takes
        a handful of evenly spaced samples (its smoothing would forget the rest
        within a few samples anyway).
        """
        count = len(batch)
        self.undecided -= count
        flying = self.flying
        landed = 0
        for idx, _, _, _ in batch:
            landed += flying[idx]
            flying[idx] = 0
        self.pending -= landed
        self.window.on_answer(count)
        self.retry.on_first_try_answers(count)
        sent_at = self.sent_at
        step = max(1, count // 8)
        for i in range(step - 1, count, step):
            idx, _, _, when = batch[i]
            self.rtt.observe(when - sent_at[idx])
        nports = len(self.ports)
        addresses = self.addresses
        ports = self.ports
        protocol = self.protocol
        self.out.extend(
            [
                PortResult(
                    addresses[idx // nports],
                    ports[idx % nports],
                    protocol,
                    state,
                    reason,
                    when - sent_at[idx],
                )
                for idx, state, reason, when in batch
            ]
        )

    def _on_event(self, event: ReplyEvent) -> None:
        h = self.host_index.get(event.host)
        p = self.port_index.get(event.port)
        if h is None or p is None:
            return
        idx = h * len(self.ports) + p
        if self.decided[idx] or self.sends[idx] == 0:
            return  # late duplicate, or never probed (a spoof that guessed the cookie)
        self._answer(idx, h, event.state, event.reason, event.from_icmp)

    def _answer(self, idx: int, h: int, state: PortState, reason: Reason, from_icmp: bool) -> None:
        """A proven reply to the probe ``idx`` (of host number ``h``) decides it."""
        tries = self.sends[idx]
        now = self.clock()
        host = self.hosts[h]
        if host.unresolved is not None:
            self._resolve_link(host)  # it answered, so the kernel knows its MAC now
            self.fast_hosts[h] = host.unresolved is None  # then its answers may take the fast path
        rtt = now - self.sent_at[idx]
        limit = host.limit
        starved = limit is not None and limit.on_answer(
            idx, self.sent_at[idx], self._datagrams(host, idx), icmp=from_icmp
        )
        if starved:  # its earlier silences were the limit, not loss: the try that counted worked
            self.retry.on_answer(0)
        else:
            self.retry.on_answer(tries - 1)
            if tries == 1:
                self.rtt.observe(rtt)
                self.window.on_answer()
            else:
                self.window.on_drop(now, self.pending, self.rtt.timeout)
        self._decide(idx, state, reason, rtt)

    def _decide(self, idx: int, state: PortState, reason: Reason, rtt: float | None) -> None:
        if self.decided[idx]:
            return
        self.decided[idx] = 1
        self.undecided -= 1
        self._land(idx)
        nports = len(self.ports)
        self.out.append(
            PortResult(
                self.hosts[idx // nports].address,
                self.ports[idx % nports],
                self.protocol,
                state,
                reason,
                rtt,
            )
        )
