"""Pure: the raw engine's per-probe book, one column per fact, indexed ``host * nports + port``.

Probes are numbers, not objects: a -p- scan keeps 65535 of them, so each fact
is a column (``bytearray``/``array``) the send and reply paths index directly.
A probe is *in flight* from its send until it is answered or its timeout
passes; the congestion window counts those (``pending``), not the send queue,
which forgets decided probes only lazily.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from operator import sub

from portlib.model import IPAddress, PortResult, PortState, Protocol, Reason
from portlib.scanning.book import RetryBook
from portlib.scanning.raw.replies import FirstTries
from portlib.scanning.timing import CongestionWindow, RttEstimator

_FIELDS = dataclasses.fields(PortResult)


def port_results(columns: Mapping[str, Iterable[object]], count: int) -> list[PortResult]:
    """``count`` results from one column per ``PortResult`` field (its default where none is).

    What ``PortResult(...)`` makes, made by columns: bare objects, then each
    field set through its slot with one ``map``, where the frozen dataclass's
    ``__init__`` would run Python for every object.
    """
    out: list[PortResult] = list(map(object.__new__, repeat(PortResult, count)))
    for field in _FIELDS:
        column = columns.get(field.name)
        if column is None:
            if field.default is dataclasses.MISSING:
                raise TypeError(f"port_results() needs a {field.name!r} column")
            column = repeat(field.default)
        deque(map(getattr(PortResult, field.name).__set__, out, column), maxlen=0)
    return out


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
        batch: FirstTries,
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
        probes, states, reasons, whens = batch.probes, batch.states, batch.reasons, batch.whens
        flying = self.flying
        self.pending -= sum(map(flying.__getitem__, probes))
        deque(map(flying.__setitem__, probes, repeat(0)), maxlen=0)
        window.on_answer(count)
        retries.on_first_try_answers(count)
        rtts = list(map(sub, whens, map(self.sent_at.__getitem__, probes)))
        step = max(1, count // 8)
        for i in range(step - 1, count, step):
            rtt.observe(rtts[i])
        nports = self.nports
        if len(self.addresses) == 1:  # then a probe's index is its port's
            hosts: Iterable[IPAddress] = repeat(self.addresses[0])
            ports: Iterable[int] = map(self.ports.__getitem__, probes)
        else:
            hosts = map(self.addresses.__getitem__, map(nports.__rfloordiv__, probes))
            ports = map(self.ports.__getitem__, map(nports.__rmod__, probes))
        columns: dict[str, Iterable[object]] = {
            "host": hosts,
            "port": ports,
            "protocol": repeat(self.protocol),
            "state": states,
            "reason": reasons,
            "rtt": rtts,
        }
        self.out.extend(port_results(columns, count))

    def take_out(self) -> list[PortResult]:
        """The decided probes' results since the last call."""
        out, self.out = self.out, []
        return out
