"""The connect engine's probes: which goes next (and when), and those in flight."""

from __future__ import annotations

import heapq
import socket
from collections import deque
from collections.abc import Iterator, ValuesView
from dataclasses import dataclass

from portlib.errors import ScanError
from portlib.scanning.timing import HostTiming, RateLimiter

_STARVED_PAUSE = 0.01  # out of sockets, nothing of ours in flight: wait this long
_STARVED_GIVE_UP = 5.0  # seconds of that before the scan gives up

Address = tuple[str, int] | tuple[str, int, int, int]


@dataclass(slots=True)
class Probe:
    """One probe in flight on one socket."""

    index: int  # in the probe order: host index + host count * port index
    tries: int  # silent sends before this one
    sent: float
    deadline: float
    sock: socket.socket
    addr: Address


class SendQueue:
    """Probes to send, ``(index, tries)``: the resend queue first, then the probe order.

    ``not_before`` holds sending back (the scan delay, the rate cap, a local
    shortage of sockets).
    """

    __slots__ = ("not_before", "order", "order_done", "rate", "resend", "starved_since")

    def __init__(self, order: Iterator[int], rate: RateLimiter | None) -> None:
        self.order = order
        self.order_done = False
        self.rate = rate
        self.resend: deque[tuple[int, int]] = deque()
        self.not_before = 0.0
        self.starved_since: float | None = None  # out of sockets since; None: not now

    @property
    def empty(self) -> bool:
        """Nothing left to send (for now: silences may still queue resends)."""
        return not self.resend and self.order_done

    def next(self) -> tuple[int, int] | None:
        if self.resend:
            return self.resend.popleft()
        if self.order_done:
            return None
        index = next(self.order, -1)
        if index < 0:
            self.order_done = True
            return None
        return index, 0

    def put_back(self, probe: tuple[int, int]) -> None:
        """``probe`` was taken but could not go: it is the next one again."""
        self.resend.appendleft(probe)

    def held_back(self, timing: HostTiming, now: float) -> bool:
        """Must a probe to the host of ``timing`` wait (scan delay, rate cap)? Else it goes."""
        if not timing.may_send(now):
            self.not_before = timing.next_send
            return True
        if self.rate is not None:
            wait = self.rate.delay(now)
            if wait > 0:
                self.not_before = now + wait
                return True
        timing.sent(now)
        return False

    def starved(self, probe: tuple[int, int], now: float, *, idle: bool) -> None:
        """No socket for ``probe``: it goes next again; ``idle``: none of ours in flight.

        With none in flight nothing of ours will free a descriptor: wait for the
        rest of the process, and give up if that never happens.
        """
        self.put_back(probe)
        if self.starved_since is None:
            self.starved_since = now
        if idle:
            self.not_before = now + _STARVED_PAUSE
            if now - self.starved_since > _STARVED_GIVE_UP:
                raise ScanError(
                    "cannot open sockets for the scan (out of file descriptors, buffers or "
                    "ephemeral ports); raise `ulimit -n` or lower the concurrency"
                )


class InFlight:
    """Probes waiting for their outcome, by socket fd, with their deadlines in a heap.

    A heap entry outlives its probe when the probe is decided first; entries
    are checked against the probe still registered on that fd when they fall due.
    """

    __slots__ = ("_seq", "by_fd", "deadlines")

    def __init__(self) -> None:
        self.by_fd: dict[int, Probe] = {}
        self.deadlines: list[tuple[float, int, int]] = []  # (deadline, seq, fd)
        self._seq = 0

    def __len__(self) -> int:
        return len(self.by_fd)

    def add(self, fd: int, probe: Probe) -> None:
        self.by_fd[fd] = probe
        self._seq += 1
        heapq.heappush(self.deadlines, (probe.deadline, self._seq, fd))

    def probes(self) -> ValuesView[Probe]:
        return self.by_fd.values()

    def due(self, now: float) -> Iterator[tuple[int, Probe]]:
        """``(fd, probe)`` for each probe whose deadline passed; still registered."""
        heap = self.deadlines
        by_fd = self.by_fd
        while heap and heap[0][0] <= now:
            _deadline, _seq, fd = heapq.heappop(heap)
            probe = by_fd.get(fd)
            if probe is None or probe.deadline > now:
                continue  # already decided (or the fd now carries a newer probe)
            yield fd, probe

    @property
    def next_deadline(self) -> float | None:
        return self.deadlines[0][0] if self.deadlines else None

    def clear(self) -> list[socket.socket]:
        """Forget every probe; their sockets, for the caller to close."""
        sockets = [probe.sock for probe in self.by_fd.values()]
        self.by_fd.clear()
        self.deadlines.clear()
        return sockets
