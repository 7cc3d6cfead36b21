"""Pure: the raw engine's per-probe book, one column per fact, indexed ``host * nports + port``.

Probes are numbers, not objects: a -p- scan keeps 65535 of them, so each fact
is a column (``bytearray``/``array``) the send and reply paths index directly.
A probe is *in flight* from its send until it is answered or its timeout
passes; the congestion window counts those (``pending``), not the send queue,
which forgets decided probes only lazily.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence

from portlib.model import IPAddress, PortResult, PortState, Protocol, Reason
from portlib.scanning.book import RetryBook
from portlib.scanning.raw.replies import FirstTry
from portlib.scanning.timing import CongestionWindow, RttEstimator


class ProbeBook:
    """What each probe of one raw scan has been through; decided ones not yet handed over."""

    __slots__ = (
        "addresses",
        "cookies",
        "cookies_ready",
        "decided",
        "flying",
        "in_flight",
        "nports",
        "out",
        "paced_out",
        "pending",
        "ports",
        "protocol",
        "resend",
        "sends",
        "sent_at",
        "silences",
        "undecided",
    )

    def __init__(
        self,
        addresses: Sequence[IPAddress],
        ports: Sequence[int],
        protocol: Protocol,
        *,
        to_decide: int,
    ) -> None:
        count = len(addresses) * len(ports)
        self.addresses = addresses
        self.ports = ports
        self.nports = len(ports)
        self.protocol = protocol
        self.undecided = to_decide  # a shard decides only its share of the probes
        self.decided = bytearray(count)
        self.sends = bytearray(count)  # tries so far (capped at 255)
        self.silences = bytearray(count)  # silent tries that counted (capped at 255)
        self.sent_at = array("d", bytes(8 * count))
        # Each probe's cookie, filled a host at a time before its first probe:
        # sends and replies then only index this column.
        self.cookies = array("I", bytes(4 * count))
        self.cookies_ready = bytearray(len(addresses))
        self.flying = bytearray(count)  # in flight and undecided: what the window counts
        self.pending = 0  # sum of ``flying``
        self.in_flight: deque[int] = deque()  # send order; decided ones leave lazily
        self.paced_out: deque[int] = deque()  # probes sent as a host's ICMP bucket allows
        self.resend: deque[int] = deque()  # to send again
        self.out: list[PortResult] = []  # decided, not yet handed over

    def fill_cookies(self, h: int, table: array[int]) -> None:
        """Host number ``h``'s cookies, one per port in port order."""
        nports = self.nports
        self.cookies[h * nports : (h + 1) * nports] = table
        self.cookies_ready[h] = 1

    def sent(self, idx: int, when: float) -> None:
        self.sends[idx] = min(255, self.sends[idx] + 1)
        self.sent_at[idx] = when

    def fly(self, idx: int) -> None:
        self.in_flight.append(idx)
        if not self.flying[idx]:
            self.flying[idx] = 1
            self.pending += 1

    def land(self, idx: int) -> None:
        """``idx`` is no longer in flight (decided, or silent past its timeout)."""
        if self.flying[idx]:
            self.flying[idx] = 0
            self.pending -= 1

    def decide(self, idx: int, state: PortState, reason: Reason, rtt: float | None) -> None:
        """``idx``'s verdict, once: later calls for the same probe are ignored."""
        if self.decided[idx]:
            return
        self.decided[idx] = 1
        self.undecided -= 1
        self.land(idx)
        nports = self.nports
        self.out.append(
            PortResult(
                self.addresses[idx // nports],
                self.ports[idx % nports],
                self.protocol,
                state,
                reason,
                rtt,
            )
        )

    def decide_first_tries(
        self,
        batch: list[FirstTry],
        window: CongestionWindow,
        retries: RetryBook,
        rtt: RttEstimator,
    ) -> None:
        """First-try answers (already marked decided by the reader), all at once.

        What one answer does, in closed form: the window grows by the count, the
        retry budget counts first tries, and the RTT estimator takes a handful of
        evenly spaced samples (its smoothing would forget the rest within a few
        samples anyway).
        """
        count = len(batch)
        self.undecided -= count
        flying = self.flying
        landed = 0
        for idx, _, _, _ in batch:
            landed += flying[idx]
            flying[idx] = 0
        self.pending -= landed
        window.on_answer(count)
        retries.on_first_try_answers(count)
        sent_at = self.sent_at
        step = max(1, count // 8)
        for i in range(step - 1, count, step):
            idx, _, _, when = batch[i]
            rtt.observe(when - sent_at[idx])
        nports = self.nports
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

    def take_out(self) -> list[PortResult]:
        """The decided probes' results since the last call."""
        out, self.out = self.out, []
        return out
