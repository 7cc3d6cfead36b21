"""The raw engine's send side: patched probes out through sockets, rings or send workers.

Fresh first tries, the bulk of a scan, take ``send_fresh``: one datagram per
probe, handed to a forked send worker when there are any (the target's
answer then runs in the kernel on the worker's core), else written to a TX
ring or a raw IP socket. Everything else (service payloads, retries, a full
ring, send errors) goes through ``send``, which handles every case.
"""

from __future__ import annotations

import errno
import itertools
import os
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from portlib.errors import ScanError
from portlib.model import PortState, Reason
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.hosts import RawHost
from portlib.scanning.raw.io.sendworker import MAX_INDEX, TRANSIENT, SendWorker
from portlib.scanning.raw.probes import ProbeBook
from portlib.scanning.timing import RateLimiter

# A send that the kernel refuses outright decides the port (errno -> reason).
SEND_ERRORS: dict[int, Reason] = {
    errno.ENETUNREACH: Reason.NET_UNREACH,
    errno.EHOSTUNREACH: Reason.HOST_UNREACH,
    errno.EPERM: Reason.ADMIN_PROHIBITED,
    errno.EACCES: Reason.ADMIN_PROHIBITED,
}

WORKER_MIN_PROBES = 4096  # below this, forking a send worker costs more than it saves
MAX_WORKERS = 2  # send workers at most (more cores: this process still needs one)


class RawSender:
    """Sends the probes of one raw scan; decides the ones the kernel refuses."""

    def __init__(
        self,
        book: ProbeBook,
        hosts: Sequence[RawHost],
        cookie: Cookie,
        sport: int,
        clock: Callable[[], float],
    ) -> None:
        self.book = book
        self.hosts = hosts
        self.cookie = cookie
        self.sport = sport
        self.clock = clock
        self.sent = 0  # probes sent (a probe of several payloads counts once)
        self.workers: tuple[SendWorker, ...] = ()
        self._next_worker = 0

    # --- workers ------------------------------------------------------------------

    def start_workers(self, to_send: int) -> None:
        """Fork send workers, one per core, when enough probes make them pay.

        The target's whole answer (its TCP/UDP stack, the RST or ICMP error,
        the delivery to our socket) runs in the kernel on the sending core, on
        loopback and through a veth alike: two senders put that work on both
        cores, while this process only reads and decides.
        """
        cores = os.cpu_count() or 1
        if cores < 2 or to_send < WORKER_MIN_PROBES or len(self.book.decided) > MAX_INDEX:
            return
        targets = [(h.default[0], h.sock, h.sockaddr) for h in self.hosts]
        workers: list[SendWorker] = []
        for _ in range(min(cores, MAX_WORKERS)):
            try:
                workers.append(SendWorker(targets, self.book.ports))
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

    def flush_workers(self) -> None:
        """Write on what the workers' pipes had no room for (the last batches too)."""
        for worker in self.workers:
            worker.flush()

    def worker_errors(self) -> None:
        """Sends the workers' kernel refused: decide them as ``send`` would have."""
        book = self.book
        for idx, code in itertools.chain.from_iterable(w.errors() for w in self.workers):
            if book.decided[idx]:
                continue
            reason = SEND_ERRORS.get(code)
            if reason is None:
                host = self.hosts[idx // book.nports]
                raise ScanError(f"cannot send to {host.address}: {os.strerror(code)}")
            book.decide(idx, PortState.FILTERED, reason, None)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = ()

    # --- probes -------------------------------------------------------------------

    def _cookies_of(self, h: int) -> None:
        """Fill host number ``h``'s cookies (256 per hash call, see ``Cookie``)."""
        book = self.book
        book.fill_cookies(h, self.cookie.for_ports(self.hosts[h].key, self.sport, book.ports))

    def send(self, idx: int, now: float) -> bool:
        """Send one probe (all payloads of its port); False when the kernel pushes back."""
        book = self.book
        nports = book.nports
        h = idx // nports
        host = self.hosts[h]
        port = book.ports[idx % nports]
        if not book.cookies_ready[h]:
            self._cookies_of(h)
        cookie = book.cookies[idx]
        ring = host.link.ring
        for probe in host.probes_for(port):
            buf = probe.patch(port, cookie)
            if ring is not None:
                if not ring.put(host.link.header, buf):
                    ring.flush()  # full: hand the batch to the kernel, then retry
                    if not ring.put(host.link.header, buf):
                        return False
                continue
            try:
                host.sock.sendto(buf, host.sockaddr)
            except OSError as exc:
                if exc.errno in TRANSIENT:
                    return False
                reason = SEND_ERRORS.get(exc.errno or 0)
                if reason is None:
                    raise ScanError(f"cannot send to {host.address}: {exc.strerror}") from None
                book.decide(idx, PortState.FILTERED, reason, None)
                return True
        self.sent += 1
        book.sent(idx, self.clock())  # per send: orders probes within a batch
        return True

    def send_fresh(self, budget: int, fresh: Iterator[int]) -> tuple[int, bool, bool]:
        """First tries of fresh probes, the hot path of a scan: (budget left, more, pushed back).

        One datagram per probe (send worker, TX ring or raw IP socket) is written
        out here with locals only; anything else goes through ``send``.
        """
        book = self.book
        nports = book.nports
        hosts = self.hosts
        ports = book.ports
        cookies = book.cookies
        ready = book.cookies_ready
        sends = book.sends
        sent_at = book.sent_at
        clock = self.clock
        in_flight = book.in_flight.append
        flying = book.flying
        worker = self._idle_worker()
        if self.workers and worker is None:
            return budget, True, True  # every worker still has a batch to take: wait
        chunk = list(itertools.islice(fresh, budget))
        more = len(chunk) == budget
        if worker is not None and self._plain(chunk):
            self._hand_over(worker, chunk)
            return budget - len(chunk), more, False
        batch = array("I")
        sent = 0
        todo = iter(chunk)
        try:
            for idx in todo:
                h = idx // nports
                host = hosts[h]
                port = ports[idx % nports]
                if port not in host.by_port:
                    if not ready[h]:
                        self._cookies_of(h)
                    cookie = cookies[idx]
                    ring = host.link.ring
                    if worker is not None:  # even before a ring: no GIL on its way
                        batch.append(idx)
                        batch.append(cookie)
                        done = True
                    elif ring is not None:
                        done = ring.put(host.link.header, host.default[0].patch(port, cookie))
                    else:
                        try:
                            host.sock.sendto(host.default[0].patch(port, cookie), host.sockaddr)
                            done = True
                        except OSError:
                            done = False  # send() below tries again and sorts the error out
                    if done:
                        sends[idx] = 1
                        sent_at[idx] = clock()
                        in_flight(idx)
                        flying[idx] = 1
                        sent += 1
                        budget -= 1
                        continue
                if not self.send(idx, clock()):
                    book.resend.extendleft(reversed([idx, *todo]))
                    return budget, True, True
                book.fly(idx)
                budget -= 1
            return budget, more, False
        finally:
            self.sent += sent
            book.pending += sent
            if batch:
                assert worker is not None
                worker.send(batch)

    def _plain(self, chunk: list[int]) -> bool:
        """Whether every probe of ``chunk`` is one datagram with its cookie ready (filled here)."""
        book = self.book
        hosts = self.hosts
        if len(hosts) == 1:  # then a probe's index is its port's number
            by_port = hosts[0].by_port
            if by_port and not by_port.keys().isdisjoint(map(book.ports.__getitem__, chunk)):
                return False
            numbers: Iterable[int] = (0,)
        else:
            numbers = set(map(book.nports.__rfloordiv__, chunk))
            if any(hosts[h].by_port for h in numbers):
                return False
        for h in numbers:
            if not book.cookies_ready[h]:
                self._cookies_of(h)
        return True

    def _hand_over(self, worker: SendWorker, chunk: list[int]) -> None:
        """First tries of ``chunk`` to a send worker, booked by columns (no statement per probe)."""
        book = self.book
        count = len(chunk)
        records = array("I", bytes(8 * count))
        records[0::2] = array("I", chunk)
        records[1::2] = array("I", map(book.cookies.__getitem__, chunk))
        worker.send(records)
        sends = book.sends.__setitem__
        deque(map(sends, chunk, itertools.repeat(1)), maxlen=0)  # fresh: no try before
        deque(map(book.flying.__setitem__, chunk, itertools.repeat(1)), maxlen=0)
        now = self.clock()
        deque(map(book.sent_at.__setitem__, chunk, itertools.repeat(now)), maxlen=0)
        book.in_flight.extend(chunk)
        self.sent += count
        book.pending += count

    def send_paced(self, now: float, rate: RateLimiter | None) -> float:
        """Probe again the ports whose silence proved nothing, as each ICMP bucket allows.

        Returns the seconds until it wants to look again.
        """
        book = self.book
        for host in self.hosts:
            limit = host.limit
            if limit is None or not limit.waiting:
                continue
            due = limit.due(now)
            while due > 0 and limit.queue:
                if rate is not None and rate.delay(now) > 0:
                    return 0.01  # the user's --rate cap holds for these too
                idx = limit.queue.popleft()
                if book.decided[idx]:
                    continue
                if not self.send(idx, now):
                    limit.queue.appendleft(idx)  # the kernel pushes back: next round
                    break
                if not book.decided[idx]:  # else the kernel refused it outright
                    limit.sent(idx, book.sent_at[idx], self.datagrams(host, idx))
                    book.paced_out.append(idx)
                due -= 1
        return 0.01

    def datagrams(self, host: RawHost, idx: int) -> int:
        """Datagrams in one probe of ``idx`` (service payloads): each may draw an ICMP error."""
        return len(host.probes_for(self.book.ports[idx % self.book.nports]))
