"""The TCP connect engine: many non-blocking connects, one epoll, driven from asyncio.

Why not ``loop.sock_connect`` per port: a coroutine, a future and two epoll
registrations per probe cap that at about 7,000 ports/s. Here the engine owns
one ``select.epoll`` whose fd the event loop watches (``add_reader``), and
does the rest with plain system calls:

* A probe is ``connect_ex`` on a non-blocking socket. When the answer is
  immediate (loopback, a veth neighbour: the kernel processes the SYN and the
  RST inside the same system call), a second ``connect_ex`` to the same address
  reports it at once and, for a refusal, returns the socket to the unconnected
  state, so the same socket serves the next probe: two system calls per
  closed port, no socket churn.
* Slower answers arrive through epoll (each socket registered once,
  edge-triggered); the status is read the same way (a repeated
  ``connect_ex`` reports the outcome, or ``EALREADY`` while still waiting).
* Sockets carry ``SO_LINGER`` 0 (closing an accepted connection sends a RST:
  no TIME_WAIT, no ephemeral port held after the probe) and ``IP_RECVERR`` so
  an ICMP error can be read back from the error queue and named exactly
  (admin-prohibited versus host-unreachable).
* Deadlines come from the per-host RTT estimate; silence is retried up to the
  loss-aware budget; the in-flight window follows ``CongestionWindow`` and is
  capped by ``RLIMIT_NOFILE`` and the ephemeral port range.
* Silence is called filtered only when no answer can change that: a probe at a
  budget that later answers may raise waits on a bench (as nmap's), and a scan
  that heard nothing at all is confirmed silent past the kernel's neighbour
  resolution before its host counts as firewalled.
* Big unpaced scans (10,000 probes or more) fork one worker per CPU, each with
  its own epoll and sockets on an exact sub-shard of the probe order; verdicts
  come back through pipes as fixed-size records. The system calls, most of the
  cost, then run on every core. If a fork fails, the scan runs here instead.
* A socket that ends up connected to itself (or to another probe socket of
  this scan, a simultaneous open) is no open port: every connection whose
  local address equals the peer address is checked (same endpoint, another
  probe socket's endpoint, and a listener on that port in /proc/net/tcp{,6}
  for probe sockets of other workers), and such a port is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import math
import os
import resource
import select
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import NoReturn

from portlib.errors import ScanError
from portlib.model import IPAddress, PortResult, PortState, Protocol, Reason, ScanMethod
from portlib.scanning.connect.verdicts import (
    CLOSED,
    OPEN,
    PENDING_ERRNOS,
    RESOURCE_ERRNOS,
    SELF_CONNECT,
    SILENT,
    Verdict,
    classify_errno,
    classify_icmp,
    parse_extended_err,
)
from portlib.scanning.contract import Emit, ScanWork
from portlib.scanning.order import ProbeOrder
from portlib.scanning.timing import (
    CongestionWindow,
    HostTiming,
    RateLimiter,
    RetryPolicy,
    TimingProfile,
)

# Linux constants the socket module does not export (linux/in.h, linux/in6.h).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)

_LINGER_ZERO = struct.pack("ii", 1, 0)
_BATCH = 512  # probes per step before results are handed over and the loop may run
_FD_HEADROOM = 32  # descriptors left for the rest of the process (and the scanner)
_STARVED_GIVE_UP = 5.0  # seconds without any socket and nothing in flight: give up
# A scan that heard nothing at all is confirmed silent for this long before its
# ports are called filtered: longer than Linux takes to give up resolving a
# neighbour (3 solicitations a second apart), so a lost ND/ARP exchange is not
# taken for a firewall. Only a few benched probes go out meanwhile.
_SILENT_SCAN_HORIZON = 4.0
_CONFIRMERS = 3
# Registered once per socket, edge-triggered: each state change of the socket
# (answer, error) queues one event; no epoll_ctl per probe.
_EPOLL_MASK = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP | select.EPOLLET

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


def descriptor_budget() -> int:
    """How many sockets this process may open for probes: RLIMIT_NOFILE minus what is used."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    headroom = max(_FD_HEADROOM, soft // 16)
    return max(4, soft - in_use - headroom)


def ephemeral_port_count() -> int:
    """Size of the kernel's ephemeral port range (in-flight probes must stay well below)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return max(1, high - low + 1)
    except (OSError, ValueError):
        return 28232  # the kernel's default range 32768-60999


_Decided = tuple[int, PortState, Reason, float | None]


_PROC_TCP = ("/proc/net/tcp", "/proc/net/tcp6")
_TCP_LISTEN = "0A"


def listening_ports() -> frozenset[int] | None:
    """TCP ports with a listening socket in this network namespace; None without /proc."""
    ports: set[int] = set()
    read = False
    for path in _PROC_TCP:
        try:
            with open(path) as table:
                next(table, None)
                for line in table:
                    fields = line.split(None, 4)
                    if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            read = True
        except (OSError, ValueError, IndexError):
            continue
    return frozenset(ports) if read else None


@dataclass(slots=True)
class _Probe:
    """One probe in flight on one socket."""

    index: int
    tries: int  # sends before this one
    sent: float
    deadline: float
    sock: socket.socket
    addr: tuple[str, int] | tuple[str, int, int, int]


@dataclass(slots=True)
class _Target:
    address: IPAddress
    text: str
    family: socket.AddressFamily
    timing: HostTiming


@dataclass(slots=True)
class _Core:
    """The engine's state and its synchronous steps (no asyncio in here)."""

    work: ScanWork
    targets: list[_Target]
    ports: tuple[int, ...]
    order: Iterator[int]
    remaining: int
    window: CongestionWindow
    retry: RetryPolicy
    rate: RateLimiter | None
    epoll: select.epoll
    clock: Callable[[], float] = time.monotonic
    in_flight: dict[int, _Probe] = field(default_factory=dict)  # fd -> probe
    deadlines: list[tuple[float, int, int]] = field(default_factory=list)  # (t, seq, fd)
    again: deque[tuple[int, int]] = field(default_factory=deque)  # (index, tries) to resend
    # Silent probes at a retry budget that may still grow: (index, tries), and the
    # fewest tries among them (the budget must pass it before any is resent).
    bench: list[tuple[int, int]] = field(default_factory=list)
    bench_floor: int = 1 << 30
    first_send: float | None = None
    pool: dict[socket.AddressFamily, list[socket.socket]] = field(
        default_factory=lambda: {socket.AF_INET: [], socket.AF_INET6: []}
    )
    # decided probes: (index, state, reason, rtt); turned into PortResults by the caller
    results: list[_Decided] = field(default_factory=list)
    order_done: bool = False
    seq: int = 0
    sent: int = 0
    not_before: float = 0.0  # rate cap / scan delay: no send before this time
    starved_since: float | None = None
    self_connects: int = 0
    stalls: int = 0
    phantoms: set[tuple[str, int]] = field(default_factory=set)
    listening: frozenset[int] | None = frozenset()  # LISTEN ports; None: cannot tell

    # ---- sockets ------------------------------------------------------------

    def _new_socket(self, family: socket.AddressFamily) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self.epoll.register(sock.fileno(), _EPOLL_MASK)
        except BaseException:
            sock.close()
            raise
        return sock

    def _release(self, sock: socket.socket, family: socket.AddressFamily) -> None:
        """A socket back in the unconnected state: keep it for the next probe."""
        self.pool[family].append(sock)

    def _discard(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(sock.fileno())
        sock.close()

    def open_sockets(self) -> int:
        return len(self.in_flight) + sum(len(v) for v in self.pool.values())

    def close(self) -> None:
        """Close every socket this run opened (in flight and pooled)."""
        for probe in self.in_flight.values():
            self._discard(probe.sock)
        self.in_flight.clear()
        self.deadlines.clear()
        for free in self.pool.values():
            for sock in free:
                self._discard(sock)
        self.pool.clear()

    # ---- verdicts -----------------------------------------------------------

    def _decide(self, index: int, verdict: Verdict, rtt: float | None) -> None:
        self.results.append((index, verdict.state, verdict.reason, rtt))
        self.remaining -= 1

    def _answered(self, probe: _Probe, target: _Target, verdict: Verdict, now: float) -> None:
        tries = probe.tries
        rtt = now - probe.sent
        target.timing.answered(rtt if tries == 0 else None)  # Karn: no RTT from a retry
        self.retry.on_answer(tries)
        if tries:
            self.window.on_drop(now, len(self.in_flight), target.timing.rtt.timeout)
        else:
            self.window.on_answer()
        self._decide(probe.index, verdict, rtt)

    def _is_phantom(self, sock: socket.socket, target: _Target) -> bool:
        """Connected to itself or to another probe socket of this scan (simultaneous open)."""
        local = sock.getsockname()[:2]
        peer = sock.getpeername()[:2]
        if local[0] != peer[0]:
            return False  # a connection to ourselves needs our own address at both ends
        if local == peer or local in self.phantoms:
            return True
        for other in self.in_flight.values():
            if other.sock is sock or other.addr[0] != peer[0]:
                continue
            with contextlib.suppress(OSError):
                if other.sock.getsockname()[:2] == peer:
                    self.phantoms.add(peer)  # the other end: closed too, when its turn comes
                    return True
        # A probe socket of another worker process is invisible from here; what
        # tells a real open port is a listener on it in this network namespace.
        port = int(peer[1])
        if self.listening is not None and port not in self.listening:
            self.listening = listening_ports()
        return self.listening is not None and port not in self.listening

    def _outcome(self, probe: _Probe, code: int, now: float) -> None:
        """The probe on ``probe.sock`` ended with ``code``; decide, recycle the socket."""
        count = len(self.targets)
        target = self.targets[probe.index % count]
        sock = probe.sock
        if code == errno.ECONNREFUSED:
            self._release(sock, target.family)
            self._answered(probe, target, CLOSED, now)
            return
        if code == 0 or code == errno.EISCONN:
            verdict = OPEN
            try:
                if self._is_phantom(sock, target):
                    verdict = SELF_CONNECT
                    self.self_connects += 1
            except OSError:
                verdict = CLOSED  # reset before we looked: nothing held the connection
            self._discard(sock)  # SO_LINGER 0: RST, no TIME_WAIT
            self._answered(probe, target, verdict, now)
            return
        if code in RESOURCE_ERRNOS:
            self._discard(sock)
            self._starved(probe.index, probe.tries)
            return
        try:
            verdict_or_none = classify_errno(code)
        except KeyError:
            self._discard(sock)
            raise ScanError(
                f"connect to {target.text} port {self.ports[probe.index // count]} failed "
                f"unexpectedly: {os.strerror(code)} (errno {code})"
            ) from None
        assert verdict_or_none is not None  # resource errnos were handled above
        verdict = verdict_or_none
        if code in _ICMP_ERRNOS:
            verdict = self._icmp_verdict(sock, probe.addr) or verdict
        if verdict is SILENT:  # the kernel gave up on its own SYN retries
            self._discard(sock)
            self._silence(probe, target, now)
            return
        self._release(sock, target.family)
        self._answered(probe, target, verdict, now)

    def _icmp_verdict(self, sock: socket.socket, addr: tuple[object, ...]) -> Verdict | None:
        """Read the ICMP message behind a connect error from the error queue."""
        found: Verdict | None = None
        for _ in range(8):  # drain: stale entries must not reach the next probe
            try:
                _data, ancdata, _flags, source = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if source is not None and tuple(source[:2]) != tuple(addr[:2]):
                continue  # about an earlier probe on this socket
            for level, kind, data in ancdata:
                if (level, kind) in (
                    (socket.IPPROTO_IP, IP_RECVERR),
                    (socket.IPPROTO_IPV6, IPV6_RECVERR),
                ):
                    err = parse_extended_err(data)
                    if err is not None:
                        found = classify_icmp(err) or found
        return found

    def _silence(self, probe: _Probe, target: _Target, now: float) -> None:
        target.timing.expired()
        tries = probe.tries + 1
        if self.retry.should_retry(tries):
            self.again.append((probe.index, tries))
        elif self.retry.may_grow:
            # The budget came from the evidence so far; answers still to come may
            # show loss and raise it. Filtered is decided in _review_bench.
            self.bench.append((probe.index, tries))
            self.bench_floor = min(self.bench_floor, tries)
        else:
            self._decide(probe.index, SILENT, None)

    def _review_bench(self) -> None:
        """Resend benched probes the budget now allows; at the end, call the rest filtered."""
        final = not self.in_flight and not self.again and self.order_done
        allowed = self.retry.tries_allowed
        if not final and allowed <= self.bench_floor:
            return
        if final and self._confirm_silence():
            return
        waiting, self.bench, self.bench_floor = self.bench, [], 1 << 30
        for index, tries in waiting:
            if tries < allowed:
                self.again.append((index, tries))
            elif final:
                self._decide(index, SILENT, None)
            else:
                self.bench.append((index, tries))
                self.bench_floor = min(self.bench_floor, tries)

    def _confirm_silence(self) -> bool:
        """Nothing answered yet and not for long: send a few benched probes once more.

        True if some went out (they come back to the bench if silent again).
        """
        if self.retry.tries_sent or self.first_send is None:
            return False
        if self.clock() - self.first_send >= _SILENT_SCAN_HORIZON:
            return False
        cap = self.retry.max_retries + 1
        chosen = sorted(item for item in self.bench if item[1] < cap)[:_CONFIRMERS]
        if not chosen:
            return False
        for item in chosen:
            self.bench.remove(item)
            self.again.append(item)
        return True

    def _starved(self, index: int, tries: int) -> None:
        """A local resource ran out: try that probe again later, with fewer in flight."""
        self.again.appendleft((index, tries))
        self.window.shrink_cap(len(self.in_flight))
        self.stalls += 1
        now = self.clock()
        if self.starved_since is None:
            self.starved_since = now
        if not self.in_flight:
            # Nothing of ours will free a descriptor: wait for the rest of the process.
            self.not_before = now + 0.01
            if now - self.starved_since > _STARVED_GIVE_UP:
                raise ScanError(
                    "cannot open sockets for the scan (out of file descriptors, buffers or "
                    "ephemeral ports); raise `ulimit -n` or lower the concurrency"
                )

    # ---- the steps ----------------------------------------------------------

    def send(self, now: float) -> None:
        """Start probes while the window, the rate cap and the work allow (one batch)."""
        if now < self.not_before:
            return
        if self.first_send is None:
            self.first_send = now
        quick = 0  # closed ports answered inside the connect call (the hot path)
        try:
            quick = self._send_batch(now)
        finally:
            if quick:
                self.sent += quick
                self.remaining -= quick
                self.retry.on_first_try_answers(quick)
                self.window.on_answer(quick)

    def _send_batch(self, now: float) -> int:
        in_flight = self.in_flight
        targets = self.targets
        count = len(targets)
        ports = self.ports
        clock = self.clock
        window = self.window
        rate = self.rate
        pool = self.pool
        again = self.again
        order = self.order
        results_append = self.results.append
        paced = rate is not None or any(t.timing.delay.current > 0 for t in targets)
        limit = window.limit
        einprogress = errno.EINPROGRESS
        refused = errno.ECONNREFUSED
        inet6 = socket.AF_INET6
        closed_state, refused_reason = CLOSED.state, CLOSED.reason
        quick = 0
        for _ in range(_BATCH):
            if len(in_flight) >= limit:
                break
            if again:
                index, tries = again.popleft()
            elif self.order_done:
                break
            else:
                index = next(order, -1)
                if index < 0:
                    self.order_done = True
                    break
                tries = 0
            target = targets[index % count]
            if paced:
                timing = target.timing
                if not timing.may_send(now):
                    again.appendleft((index, tries))
                    self.not_before = timing.next_send
                    break
                if rate is not None:
                    wait = rate.delay(now)
                    if wait > 0:
                        again.appendleft((index, tries))
                        self.not_before = now + wait
                        break
                timing.sent(now)
            family = target.family
            free = pool[family]
            if free:
                sock = free.pop()
            else:
                try:
                    sock = self._new_socket(family)
                except OSError as exc:
                    if exc.errno in RESOURCE_ERRNOS:
                        self._starved(index, tries)
                        break
                    raise ScanError(f"cannot open a socket to scan {target.text}: {exc}") from exc
                self.starved_since = None
            port = ports[index // count]
            addr: tuple[str, int] | tuple[str, int, int, int]
            addr = (target.text, port, 0, 0) if family == inet6 else (target.text, port)
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
            probe = _Probe(index, tries, started, 0.0, sock, addr)
            if code in PENDING_ERRNOS:
                deadline = started + target.timing.rtt.retry_timeout(tries)
                probe.deadline = deadline
                fd = sock.fileno()
                in_flight[fd] = probe
                self.seq += 1
                heapq.heappush(self.deadlines, (deadline, self.seq, fd))
            else:
                self._outcome(probe, code, clock())
            limit = window.limit
        return quick

    def poll(self) -> None:
        """Collect the outcomes epoll reports as ready."""
        events = self.epoll.poll(0, 1024)
        if not events:
            return
        now = self.clock()
        in_flight = self.in_flight
        for fd, mask in events:
            probe = in_flight.get(fd)
            if probe is None:
                continue  # a pooled socket's stale edge
            code = probe.sock.connect_ex(probe.addr)
            if code in PENDING_ERRNOS:
                if mask & select.EPOLLERR:
                    self._pending_icmp(fd, probe, now)
                continue  # still waiting (or a stale edge from this socket's previous probe)
            del in_flight[fd]
            self._outcome(probe, code, now)

    def _pending_icmp(self, fd: int, probe: _Probe, now: float) -> bool:
        """An ICMP error queued on a socket still in SYN-SENT: decide by it.

        When the ICMP comes back inside our own connect() call (a near host), the
        socket is locked by that call, so TCP records only a soft error and keeps
        retransmitting; the error queue still has the message.
        """
        verdict = self._icmp_verdict(probe.sock, probe.addr)
        if verdict is None:
            return False
        del self.in_flight[fd]
        self._discard(probe.sock)
        target = self.targets[probe.index % len(self.targets)]
        self._answered(probe, target, verdict, now)
        return True

    def expire(self, now: float) -> None:
        """Probes whose deadline passed in silence: retry or call them filtered."""
        heap = self.deadlines
        in_flight = self.in_flight
        while heap and heap[0][0] <= now:
            _deadline, _seq, fd = heapq.heappop(heap)
            probe = in_flight.get(fd)
            if probe is None or probe.deadline > now:
                continue  # already answered (or the fd now carries a newer probe)
            code = probe.sock.connect_ex(probe.addr)  # one last look before giving up
            if code in PENDING_ERRNOS and self._pending_icmp(fd, probe, now):
                continue
            del in_flight[fd]
            if code in PENDING_ERRNOS:
                self._discard(probe.sock)  # still in SYN-SENT: a fresh socket is cheaper
                target = self.targets[probe.index % len(self.targets)]
                self._silence(probe, target, now)
            else:
                self._outcome(probe, code, now)
        if self.bench:
            self._review_bench()

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until something is due without an epoll event; None: send now."""
        can_send = (self.again or not self.order_done) and len(self.in_flight) < self.window.limit
        if can_send and now >= self.not_before:
            return None
        due = []
        if self.deadlines:
            due.append(self.deadlines[0][0])
        if can_send:
            due.append(self.not_before)
        if not due:
            if self.remaining > 0:
                raise ScanError(f"internal error: {self.remaining} probes undecided, none pending")
            return 0.0
        return max(0.0, min(due) - now)


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET6 if isinstance(address, IPv6Address) else socket.AF_INET


# Worker processes: a big scan is split over forked children, each with its own
# epoll and sockets, because the system calls (the bulk of the cost) then run on
# every core. Each child streams its verdicts back through a pipe as records.
_WORKER_MIN_PROBES = 10_000
_RECORD = struct.Struct("=BQBBd")  # kind, index (or trailer length), state, reason, rtt
_RESULT, _DONE, _FAILED = 0, 1, 2
_STATES = list(PortState)
_REASONS = list(Reason)
_STATE_CODES = {state: i for i, state in enumerate(_STATES)}
_REASON_CODES = {reason: i for i, reason in enumerate(_REASONS)}
_NO_RTT = float("nan")
_PAUSE_AT = 16_384  # decoded records waiting for emit before the pipes stop being read


class ConnectEngine:
    """TCP connect scan engine (``-sT``): needs no privileges.

    ``max_sockets`` lowers the socket budget read from ``RLIMIT_NOFILE`` and the
    ephemeral port range. ``workers``: processes that probe (None: one per CPU
    for scans of 10,000 probes or more that are not paced by ``rate`` or a scan
    delay, else 1; 1 keeps everything in this process).
    """

    def __init__(
        self,
        method: ScanMethod = ScanMethod.CONNECT,
        *,
        max_sockets: int | None = None,
        workers: int | None = None,
    ) -> None:
        if method is not ScanMethod.CONNECT:
            raise ScanError(f"ConnectEngine does connect scans only, not {method}")
        if workers is not None and workers < 1:
            raise ScanError(f"workers must be 1 or more, not {workers!r}")
        self.method = method
        self.max_sockets = max_sockets
        self.workers = workers
        self.probes_sent = 0
        self.self_connects = 0  # connections to ourselves caught (and called closed)
        self.resource_stalls = 0  # probes put back because a local resource ran out

    def resource_cap(self, share: int = 1) -> int:
        """Sockets one process may hold in flight; ``share`` processes split the ports."""
        cap = min(descriptor_budget(), ephemeral_port_count() // (2 * share))
        if self.max_sockets is not None:
            cap = min(cap, max(1, self.max_sockets // share))
        return max(1, cap)

    def worker_count(self, work: ScanWork) -> int:
        if self.workers is not None:
            return self.workers
        profile = work.timing
        paced = profile.rate is not None or profile.scan_delay > 0
        probes = len(work.hosts) * len(work.ports)
        if work.shard is not None:
            probes //= work.shard[1]
        if paced or probes < _WORKER_MIN_PROBES:
            return 1
        try:
            cpus = len(os.sched_getaffinity(0))
        except OSError:
            cpus = os.cpu_count() or 1
        workers = max(1, min(cpus, 8))
        if profile.max_parallelism is not None and profile.max_parallelism < 2 * workers:
            return 1  # a tight concurrency cap: splitting it buys nothing
        return workers

    async def run(self, work: ScanWork, emit: Emit) -> None:
        if work.protocol is not Protocol.TCP:
            raise ScanError(f"a connect scan probes TCP ports, not {work.protocol}")
        for host in work.hosts:
            if not isinstance(host, IPv4Address | IPv6Address):
                raise ScanError(f"not an IP address: {host!r}")
        if not work.hosts or not work.ports:
            return
        workers = self.worker_count(work)
        if workers > 1:
            await self._run_workers(work, emit, workers)
        else:
            await self._run_here(work, emit)

    # ---- in this process ------------------------------------------------------

    async def _run_here(self, work: ScanWork, emit: Emit) -> None:
        core = self._core(work, work.shard, self.resource_cap())
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[None]] = []
        hosts, ports, count, tcp = work.hosts, work.ports, len(work.hosts), Protocol.TCP

        def wake() -> None:
            if waiter and not waiter[0].done():
                waiter[0].set_result(None)

        loop.add_reader(core.epoll.fileno(), wake)
        try:
            while core.remaining > 0:
                now = core.clock()
                core.send(now)
                core.poll()
                core.expire(core.clock())
                if core.results:
                    batch, core.results = core.results, []
                    for index, state, reason, rtt in batch:
                        await emit(
                            PortResult(
                                hosts[index % count], ports[index // count], tcp, state, reason, rtt
                            )
                        )
                if core.remaining <= 0:
                    break
                delay = core.next_wakeup(core.clock())
                if delay is None:
                    await asyncio.sleep(0)  # a full batch went out: let the loop breathe
                    continue
                if delay <= 0:
                    continue
                future = loop.create_future()
                waiter[:] = [future]
                timer = loop.call_later(delay, wake)
                try:
                    await future
                finally:
                    timer.cancel()
                    waiter.clear()
        finally:
            self.probes_sent += core.sent
            self.self_connects += core.self_connects
            self.resource_stalls += core.stalls
            loop.remove_reader(core.epoll.fileno())
            core.close()
            core.epoll.close()

    def _core(self, work: ScanWork, shard: tuple[int, int] | None, cap: int) -> _Core:
        profile: TimingProfile = work.timing
        targets = [
            _Target(h, str(h), _family(h), HostTiming.for_profile(profile)) for h in work.hosts
        ]
        total = len(targets) * len(work.ports)
        order = ProbeOrder(total, seed=work.seed, shard=shard)
        window = CongestionWindow.for_profile(profile, cap)
        rate = RateLimiter.per_second(profile.rate) if profile.rate else None
        epoll = select.epoll()
        return _Core(
            work=work,
            targets=targets,
            ports=work.ports,
            order=iter(order),
            remaining=order.count,
            window=window,
            retry=RetryPolicy(profile.max_retries),
            rate=rate,
            epoll=epoll,
        )

    # ---- in worker processes -------------------------------------------------

    async def _run_workers(self, work: ScanWork, emit: Emit, workers: int) -> None:
        first, shards = work.shard if work.shard is not None else (0, 1)
        # Shard i of n splits exactly into shards i + n*j of n*k (see portlib.scanning.order).
        sub_shards = [(first + shards * j, shards * workers) for j in range(workers)]
        sub_shards = [s for s in sub_shards if s[0] < len(work.hosts) * len(work.ports)]
        cap = self.resource_cap(len(sub_shards))
        if work.timing.max_parallelism is not None:  # the user's concurrency is for all
            cap = min(cap, max(1, -(-work.timing.max_parallelism // len(sub_shards))))
        loop = asyncio.get_running_loop()
        hosts, ports, count, tcp = work.hosts, work.ports, len(work.hosts), Protocol.TCP
        children: dict[int, int] = {}  # read fd -> pid
        buffers: dict[int, bytearray] = {}
        finished: set[int] = set()
        paused: set[int] = set()
        pending: deque[PortResult] = deque()
        failure: list[str] = []
        waiter: list[asyncio.Future[None]] = []
        size = _RECORD.size
        iter_unpack = _RECORD.iter_unpack
        states, reasons = _STATES, _REASONS

        def wake() -> None:
            if waiter and not waiter[0].done():
                waiter[0].set_result(None)

        def readable(fd: int) -> None:
            try:
                chunk = os.read(fd, 1 << 18)
            except BlockingIOError:
                return
            buf = buffers[fd]
            if not chunk:
                loop.remove_reader(fd)
                if fd not in finished:
                    failure.append(f"worker process {children[fd]} ended without finishing")
                finished.add(fd)
                wake()
                return
            buf += chunk
            offset = 0
            append = pending.append
            while True:
                whole = (len(buf) - offset) // size
                if not whole:
                    break
                trailer_next = False
                for kind, index, state, reason, rtt in iter_unpack(
                    bytes(buf[offset : offset + whole * size])
                ):
                    if kind != _RESULT:
                        trailer_next = True
                        break
                    append(
                        PortResult(
                            hosts[index % count],
                            ports[index // count],
                            tcp,
                            states[state],
                            reasons[reason],
                            None if rtt != rtt else rtt,  # NaN: no answer
                        )
                    )
                    offset += size
                if not trailer_next:
                    break
                kind, length, _state, _reason, _rtt = _RECORD.unpack_from(buf, offset)
                if len(buf) - offset < size + length:
                    break  # the trailer is not all here yet
                trailer = bytes(buf[offset + size : offset + size + length]).decode()
                offset += size + length
                if kind == _DONE:
                    sent, self_connects, stalls = (int(x) for x in trailer.split())
                    self.probes_sent += sent
                    self.self_connects += self_connects
                    self.resource_stalls += stalls
                    finished.add(fd)
                else:
                    failure.append(trailer)
            del buf[:offset]
            if len(pending) > _PAUSE_AT and fd not in finished:
                loop.remove_reader(fd)
                paused.add(fd)
            wake()

        try:
            for shard in sub_shards:
                try:
                    read_fd, write_fd = os.pipe()
                except OSError:
                    break
                try:
                    pid = os.fork()
                except OSError:
                    os.close(read_fd)
                    os.close(write_fd)
                    break
                if pid == 0:  # the child: never returns
                    os.close(read_fd)
                    self._child(work, shard, cap, write_fd, list(children))
                os.close(write_fd)
                os.set_blocking(read_fd, False)
                children[read_fd] = pid
                buffers[read_fd] = bytearray()
                loop.add_reader(read_fd, readable, read_fd)
            if len(children) < len(sub_shards):
                # No more processes to be had: nothing was emitted yet, so stop the
                # workers already started and do the whole work here instead.
                _stop_workers(loop, children, finished)
                children.clear()
                await self._run_here(work, emit)
                return
            while True:
                while pending:
                    await emit(pending.popleft())
                if failure:
                    raise ScanError(f"connect scan worker failed: {failure[0]}")
                for fd in list(paused):
                    paused.discard(fd)
                    loop.add_reader(fd, readable, fd)
                if len(finished) == len(children) and not pending:
                    break
                future = loop.create_future()
                waiter[:] = [future]
                try:
                    await future
                finally:
                    waiter.clear()
        finally:
            _stop_workers(loop, children, finished)

    def _child(
        self, work: ScanWork, shard: tuple[int, int], cap: int, out: int, inherited: list[int]
    ) -> NoReturn:
        """Body of a worker process: probe one shard, stream records to ``out``, exit."""
        status = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent decides about Ctrl-C
            for fd in inherited:  # other workers' pipes: an EOF must mean they ended
                with contextlib.suppress(OSError):
                    os.close(fd)
            core = self._core(work, shard, cap)
            pack = _RECORD.pack
            states, reasons = _STATE_CODES, _REASON_CODES
            idle = select.poll()  # poll, not select: the epoll fd may be above 1023
            idle.register(core.epoll.fileno(), select.POLLIN)
            while core.remaining > 0:
                core.send(core.clock())
                core.poll()
                core.expire(core.clock())
                if core.results:
                    batch, core.results = core.results, []
                    _write_all(
                        out,
                        b"".join(
                            [
                                pack(
                                    _RESULT,
                                    index,
                                    states[state],
                                    reasons[reason],
                                    _NO_RTT if rtt is None else rtt,
                                )
                                for index, state, reason, rtt in batch
                            ]
                        ),
                    )
                if core.remaining <= 0:
                    break
                delay = core.next_wakeup(core.clock())
                if delay is not None and delay > 0:
                    idle.poll(max(1, math.ceil(delay * 1000)))
            trailer = f"{core.sent} {core.self_connects} {core.stalls}".encode()
            _write_all(out, _RECORD.pack(_DONE, len(trailer), 0, 0, 0.0) + trailer)
        except BaseException as exc:  # reported to the parent, which raises it
            status = 1
            with contextlib.suppress(BaseException):
                message = (str(exc) or type(exc).__name__).encode()
                _write_all(out, _RECORD.pack(_FAILED, len(message), 0, 0, 0.0) + message)
        finally:
            os._exit(status)


def _stop_workers(
    loop: asyncio.AbstractEventLoop, children: dict[int, int], finished: set[int]
) -> None:
    """Close the pipes, kill unfinished workers, reap them all (their sockets die with them)."""
    for fd, pid in children.items():
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        if fd not in finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


__all__ = ["ConnectEngine", "descriptor_budget", "ephemeral_port_count"]
