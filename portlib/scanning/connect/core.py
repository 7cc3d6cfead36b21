"""One connect-scan run's state and its synchronous steps: send, poll, expire (no asyncio).

A probe is a ``connect_ex`` on a pooled non-blocking socket. An answer inside
the call (a near host) is read by a second ``connect_ex`` at once; the rest
come as epoll events or meet their deadline in silence. Both drivers (this
process, a worker process) call :meth:`ConnectCore.step` and then wait for
:meth:`ConnectCore.wait_time`.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from select import EPOLLERR

from portlib.errors import ScanError
from portlib.model import IPAddress, PortResult, Protocol
from portlib.scanning.book import RetryBook
from portlib.scanning.connect.ledger import Decided, Ledger
from portlib.scanning.connect.probes import Address, InFlight, Probe, SendQueue
from portlib.scanning.connect.selfconnect import SelfConnects
from portlib.scanning.connect.sockets import SocketPool, icmp_verdict
from portlib.scanning.connect.verdicts import (
    CLOSED,
    OPEN,
    PENDING_ERRNOS,
    RESOURCE_ERRNOS,
    SELF_CONNECT,
    SILENT,
    Verdict,
    classify_errno,
)
from portlib.scanning.contract import ScanWork
from portlib.scanning.order import ProbeOrder
from portlib.scanning.timing import CongestionWindow, HostTiming, RateFloor, RateLimiter

_BATCH = 512  # probes per step before results are handed over and the loop may run

# Errnos behind which an ICMP message may name the reason exactly (error queue).
_ICMP_ERRNOS = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EACCES,
        errno.EPERM,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.ECONNREFUSED,
    }
)


def port_results(work: ScanWork, decided: Iterable[Decided]) -> list[PortResult]:
    """The verdicts as the Scanner takes them (probe index -> host and port)."""
    hosts, ports, count, tcp = work.hosts, work.ports, len(work.hosts), Protocol.TCP
    return [
        PortResult(hosts[index % count], ports[index // count], tcp, state, reason, rtt)
        for index, state, reason, rtt in decided
    ]


@dataclass(slots=True)
class Counts:
    """What a run did besides its verdicts (summed over worker processes)."""

    sent: int = 0  # probes sent
    self_connects: int = 0  # connections to ourselves caught (and called closed)
    stalls: int = 0  # probes put back because a local resource ran out

    def add(self, other: Counts) -> None:
        self.sent += other.sent
        self.self_connects += other.self_connects
        self.stalls += other.stalls


@dataclass(slots=True)
class Target:
    address: IPAddress
    text: str
    family: socket.AddressFamily
    timing: HostTiming


def _rate_floor(work: ScanWork, shard: tuple[int, int] | None, now: float) -> RateFloor | None:
    """``--min-rate`` for a run over ``shard``: worker processes each keep their share."""
    if not work.timing.min_rate:
        return None
    parts = (shard[1] if shard else 1) // (work.shard[1] if work.shard else 1)
    return RateFloor(work.timing.min_rate / max(1, parts), now)


@dataclass(slots=True)
class ConnectCore:
    """Every probe of one run, from its first send to its verdict."""

    targets: list[Target]
    ports: tuple[int, ...]
    queue: SendQueue
    ledger: Ledger
    window: CongestionWindow
    clock: Callable[[], float] = time.monotonic
    sockets: SocketPool = field(default_factory=SocketPool)
    in_flight: InFlight = field(default_factory=InFlight)
    self_connects: SelfConnects = field(default_factory=SelfConnects)
    sent: int = 0
    stalls: int = 0  # probes put back because a local resource ran out
    rate_floor: RateFloor | None = None  # --min-rate: this run's share

    @classmethod
    def for_work(cls, work: ScanWork, shard: tuple[int, int] | None, cap: int) -> ConnectCore:
        """The run over ``work`` (its ``shard`` share), at most ``cap`` sockets in flight."""
        profile = work.timing
        targets = [
            Target(h, str(h), _family(h), HostTiming.for_profile(profile)) for h in work.hosts
        ]
        order = ProbeOrder(
            len(targets) * len(work.ports), seed=work.seed, shard=shard, sequential=work.sequential
        )
        queue = SendQueue(
            iter(order), RateLimiter.per_second(profile.rate) if profile.rate else None
        )
        window = CongestionWindow.for_profile(profile, cap)
        ledger = Ledger(order.count, queue, window, RetryBook.for_retries(profile.max_retries))
        core = cls(targets, work.ports, queue, ledger, window, sockets=SocketPool(work.interface))
        core.rate_floor = _rate_floor(work, shard, core.clock())
        return core

    def limit(self, now: float) -> int:
        """Probes that may be in flight: the window's, raised to keep ``--min-rate``."""
        limit = self.window.limit
        if self.rate_floor is not None:
            owed = self.rate_floor.owed(now, self.sent)
            limit = max(limit, min(self.window.cap, len(self.in_flight) + owed))
        return limit

    @property
    def remaining(self) -> int:
        """Probes not decided yet."""
        return self.ledger.remaining

    def counts(self) -> Counts:
        return Counts(self.sent, self.self_connects.count, self.stalls)

    def close(self) -> None:
        """Close every socket this run opened (in flight and pooled) and its epoll."""
        self.sockets.close(self.in_flight.clear())

    # ---- the drivers' round ----------------------------------------------------

    def step(self) -> list[Decided]:
        """Send a batch, collect what epoll reports, expire deadlines: the verdicts reached."""
        self.send(self.clock())
        self.poll()
        self.expire(self.clock())
        return self.ledger.take()

    def wait_time(self) -> float | None:
        """Seconds until something is due without an epoll event; None: send now (yield only)."""
        if self.remaining <= 0:
            return 0.0
        now = self.clock()
        can_send = not self.queue.empty and len(self.in_flight) < self.limit(now)
        if can_send and now >= self.queue.not_before:
            return None
        due = []
        deadline = self.in_flight.next_deadline
        if deadline is not None:
            due.append(deadline)
        if can_send:
            due.append(self.queue.not_before)
        if not due:
            raise ScanError(f"internal error: {self.remaining} probes undecided, none pending")
        return max(0.0, min(due) - now)

    # ---- outcomes ---------------------------------------------------------------

    def _outcome(self, probe: Probe, code: int, now: float) -> None:
        """The probe on ``probe.sock`` ended with ``code``; decide, recycle the socket."""
        target = self.targets[probe.index % len(self.targets)]
        sock = probe.sock
        if code == errno.ECONNREFUSED:
            self.sockets.release(sock, target.family)
            self._on_answer(probe, target, CLOSED, now)
            return
        if code == 0 or code == errno.EISCONN:
            verdict = OPEN
            try:
                if self.self_connects.is_phantom(sock, self.in_flight.probes()):
                    verdict = SELF_CONNECT
                    self.self_connects.count += 1
            except OSError:
                verdict = CLOSED  # reset before we looked: nothing held the connection
            self.sockets.discard(sock)  # SO_LINGER 0: RST, no TIME_WAIT
            self._on_answer(probe, target, verdict, now)
            return
        if code in RESOURCE_ERRNOS:
            self.sockets.discard(sock)
            self._starved(probe.index, probe.tries)
            return
        try:
            verdict_or_none = classify_errno(code)
        except KeyError:
            self.sockets.discard(sock)
            port = self.ports[probe.index // len(self.targets)]
            raise ScanError(
                f"connect to {target.text} port {port} failed "
                f"unexpectedly: {os.strerror(code)} (errno {code})"
            ) from None
        assert verdict_or_none is not None  # resource errnos were handled above
        verdict = verdict_or_none
        if code in _ICMP_ERRNOS:
            verdict = icmp_verdict(sock, probe.addr) or verdict
        if verdict is SILENT:  # the kernel gave up on its own SYN retries
            self.sockets.discard(sock)
            self.ledger.on_silence(probe)
            return
        self.sockets.release(sock, target.family)
        self._on_answer(probe, target, verdict, now)

    def _on_answer(self, probe: Probe, target: Target, verdict: Verdict, now: float) -> None:
        self.ledger.on_answer(probe, target.timing, verdict, now, len(self.in_flight))

    def _pending_icmp(self, fd: int, probe: Probe, now: float) -> bool:
        """An ICMP error queued on a socket still in SYN-SENT: decide by it.

        When the ICMP comes back inside our own connect() call (a near host), the
        socket is locked by that call, so TCP records only a soft error and keeps
        retransmitting; the error queue still has the message.
        """
        verdict = icmp_verdict(probe.sock, probe.addr)
        if verdict is None:
            return False
        del self.in_flight.by_fd[fd]
        self.sockets.discard(probe.sock)
        target = self.targets[probe.index % len(self.targets)]
        self._on_answer(probe, target, verdict, now)
        return True

    def _starved(self, index: int, tries: int) -> None:
        """A local resource ran out: try that probe again later, with fewer in flight."""
        self.window.shrink_cap(len(self.in_flight))
        self.stalls += 1
        self.queue.starved((index, tries), self.clock(), idle=not self.in_flight)

    # ---- the steps -------------------------------------------------------------

    def send(self, now: float) -> None:
        """Start probes while the window, the rate cap and the work allow (one batch)."""
        if now < self.queue.not_before:
            return
        self.ledger.book.on_send(now)
        quick = 0  # closed ports answered inside the connect call (the hot path)
        try:
            quick = self._send_batch(now)
        finally:
            if quick:
                self.sent += quick
                self.ledger.on_first_try_answers(quick)

    def _send_batch(self, now: float) -> int:
        targets, ports, clock = self.targets, self.ports, self.clock
        count = len(targets)
        in_flight, free_by_family = self.in_flight, self.sockets.free
        queue = self.queue
        results_append = self.ledger.results.append
        paced = queue.rate is not None or any(t.timing.delay.current > 0 for t in targets)
        limit = self.limit(now)
        einprogress, refused, inet6 = errno.EINPROGRESS, errno.ECONNREFUSED, socket.AF_INET6
        closed_state, refused_reason = CLOSED.state, CLOSED.reason
        quick = 0
        for _ in range(_BATCH):
            if len(in_flight) >= limit:
                break
            picked = queue.next()
            if picked is None:
                break
            index, tries = picked
            target = targets[index % count]
            if paced and queue.held_back(target.timing, now):
                queue.put_back(picked)
                break
            family = target.family
            free = free_by_family[family]
            if free:
                sock = free.pop()
            else:
                fresh = self._new_socket(target, index, tries)
                if fresh is None:
                    break
                sock = fresh
            port = ports[index // count]
            addr: Address = (target.text, port, 0, 0) if family == inet6 else (target.text, port)
            started = clock()
            code = sock.connect_ex(addr)
            if code == einprogress:
                code = sock.connect_ex(addr)  # answered within the call already?
            if code == refused and tries == 0:
                # A closed port on a near host: decided, and the socket is ready again.
                free.append(sock)
                rtt = clock() - started
                if not quick & 31:  # a sample now and then keeps the estimate current
                    target.timing.rtt.observe(rtt)
                results_append((index, closed_state, refused_reason, rtt))
                quick += 1
                continue
            self.sent += 1
            probe = Probe(index, tries, started, 0.0, sock, addr)
            if code in PENDING_ERRNOS:
                probe.deadline = started + target.timing.rtt.retry_timeout(tries)
                in_flight.add(sock.fileno(), probe)
            else:
                self._outcome(probe, code, clock())
            limit = self.limit(now)
        return quick

    def _new_socket(self, target: Target, index: int, tries: int) -> socket.socket | None:
        """A fresh socket for probe ``index``; None (the probe put back) when out of them."""
        try:
            sock = self.sockets.new(target.family)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                self._starved(index, tries)
                return None
            raise ScanError(f"cannot open a socket to scan {target.text}: {exc}") from exc
        self.queue.starved_since = None
        return sock

    def poll(self) -> None:
        """Collect the outcomes epoll reports as ready."""
        events = self.sockets.epoll.poll(0, 1024)
        if not events:
            return
        now = self.clock()
        by_fd = self.in_flight.by_fd
        for fd, mask in events:
            probe = by_fd.get(fd)
            if probe is None:
                continue  # a pooled socket's stale edge
            code = probe.sock.connect_ex(probe.addr)
            if code in PENDING_ERRNOS:
                if mask & EPOLLERR:
                    self._pending_icmp(fd, probe, now)
                continue  # still waiting (or a stale edge from this socket's previous probe)
            del by_fd[fd]
            self._outcome(probe, code, now)

    def expire(self, now: float) -> None:
        """Probes whose deadline passed in silence: resend, bench or decide them."""
        by_fd = self.in_flight.by_fd
        for fd, probe in self.in_flight.due(now):
            code = probe.sock.connect_ex(probe.addr)  # one last look before giving up
            if code in PENDING_ERRNOS and self._pending_icmp(fd, probe, now):
                continue
            del by_fd[fd]
            if code in PENDING_ERRNOS:
                self.sockets.discard(probe.sock)  # still in SYN-SENT: a fresh socket is cheaper
                self.ledger.on_silence(probe)
            else:
                self._outcome(probe, code, now)
        self.ledger.review_bench(len(self.in_flight), now)


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET6 if isinstance(address, IPv6Address) else socket.AF_INET
