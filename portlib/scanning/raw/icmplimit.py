"""ICMP rate limits of UDP targets, sans-IO: when does a silent probe prove anything?

Linux answers a closed UDP port with an ICMP port unreachable only while its
per-peer token bucket holds a token: one token every ``icmp_ratelimit`` (1 s by
default), at most 6 (``XRLIM_BURST_FACTOR``), loopback exempt. A silence is
evidence of an open or filtered port only if a token was certainly waiting when
the probe arrived. Whatever the bucket held when the scan began (someone else
may just have emptied it), :class:`IcmpLimit` keeps per target

* a **lower bound on the tokens** at any send time: since any moment the bucket
  held at least 0, it refilled at no less than 1 token per :attr:`interval`
  (capped at 6) and lost at most one per ICMP error we saw (and, once errors
  flow, per silent probe: see below);
* an **upper bound on the refill interval**, assumed to be Linux's default until
  the answers prove it shorter: ``n`` answers within ``d`` seconds need
  ``n <= 6 + d / T`` (so ``T <= d / (n - 6)``), and ``n`` answers within ``d``
  after a *witness* (a silent probe to a port later proven closed: the bucket
  was empty then) need ``n < 1 + d / T`` (so ``T < d / (n - 1)``). A lost probe
  makes a false witness, so witnesses count only until the host shows loss (a
  port whose silence was proof answers after all); lost answers only loosen
  the bounds.

Once the host has sent errors, every silent probe counts as a possible spend
too: its error may have been lost on the way back, and a token spent unseen
would otherwise make the silences after it look like proof.

A silence that proves nothing is not a try: the port joins the host's queue and
is probed again, in batches no larger than the bucket's lower bound covers or,
while ICMP answers flow, in a train of one probe every quarter interval, so
each token is used as soon as it refills: closed ports are then decided at the
refill rate, the physical limit, and silent ports one token each after that.
No clocks here: the engine passes every time in (seconds on one monotonic
clock, send times of probes).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right, insort
from collections import deque
from dataclasses import dataclass, field

BURST = 6  # Linux's XRLIM_BURST_FACTOR: the bucket holds at most this many tokens
ASSUMED_INTERVAL = 1.0  # s per token until answers prove faster: Linux's icmp_ratelimit default
MIN_INTERVAL = 0.001  # finer than a jiffy means no limit worth modelling
SLACK = 0.01  # a send time stands for the arrival time to a jiffy (HZ=100) and some jitter
TRAIN_SPLIT = 4  # a train probes a limited host this many times per refill interval
TRAIN_PATIENCE = 1.5  # intervals without an answer after which the train stops
TRAIN_CATCH_UP = 63  # train slots missed between two looks that are still sent
KEPT_SPENDS = 4096  # answers remembered; older ones are folded into ``since``
WITNESSES = 8  # latest witnesses of an empty bucket used for calibration
# Answers beyond the burst in the windows tried on each answer (a few, so each costs little).
_EXTRA = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64)


@dataclass(slots=True)
class _Pending:
    """A probe sent from the queue, not yet answered or expired."""

    weight: int  # datagrams in it: each may spend a token


@dataclass(slots=True)
class IcmpLimit:
    """One UDP target's ICMP token bucket, as far as the evidence goes.

    ``since``: a time before the first probe to this host (the bucket held at
    least nothing then). The engine reports every probe's fate: :meth:`on_silence`
    (True: the silence counts as a try), :meth:`on_answer`; it sends the queued
    ports when :meth:`due` says so and reports each with :meth:`sent`.
    """

    since: float
    assumed: float = ASSUMED_INTERVAL  # the interval believed until answers prove a shorter one
    slack: float = SLACK
    interval: float = field(init=False)  # upper bound on the seconds per token
    free_bound: float = math.inf  # the interval's bound from answer counts alone
    witness_bound: float = math.inf  # the bound from answers after witnesses
    lossy: bool = False  # a proven silence was answered later: witnesses may be lost probes
    proven: set[int] = field(default_factory=set)  # ports with a silence that was proof
    queue: deque[int] = field(default_factory=deque)  # ports whose silence proved nothing
    later: list[tuple[float, int]] = field(default_factory=list)  # (not before, port) retries
    spends: list[float] = field(default_factory=list)  # send times, one per ICMP datagram
    # ... and of silent probes too: an error lost on its way back spent a token unseen.
    potential: list[float] = field(default_factory=list)
    potential_since: float = -math.inf  # ``since`` for that list, once it was cut
    answers: list[float] = field(default_factory=list)  # send times, one per answered probe
    witnesses: deque[float] = field(default_factory=lambda: deque(maxlen=WITNESSES))
    starved: dict[int, float] = field(default_factory=dict)  # port -> its unproven silence
    pending: dict[int, _Pending] = field(default_factory=dict)
    next_train: float = -math.inf
    unproven: int = 0  # silences that proved nothing (probed again)

    def __post_init__(self) -> None:
        self.interval = self.assumed

    @property
    def waiting(self) -> bool:
        """Ports wait here to be probed again (now or later)."""
        return bool(self.queue or self.later)

    @property
    def limited(self) -> bool:
        """A closed port was seen starved: this host does rate-limit its ICMP errors."""
        return bool(self.witnesses) and not self.lossy

    # --- the bucket -------------------------------------------------------------------

    def _refill(self, elapsed: float) -> float:
        return min(float(BURST), max(0.0, elapsed - self.slack) / self.interval)

    def tokens(self, t: float) -> float:
        """Tokens certainly waiting for a probe sent at ``t`` (before it takes one).

        For each moment ``s`` the bucket held at least nothing (``since``, or just
        after the last spend sent by some time), it held ``refill(t - s)`` minus
        the spends after; spends sent up to ``slack`` after ``t`` may have arrived
        first, and ``refill`` allows ``slack`` for arrivals out of order.
        """
        if self.answers:  # the host sends errors: a silent probe's may have been lost
            spends, since = self.potential, max(self.since, self.potential_since)
        else:
            spends, since = self.spends, self.since
        upto = bisect_right(spends, t + self.slack)
        best = self._refill(t - since) - upto
        for i in range(max(0, upto - BURST - 1), upto):
            moment = spends[i]
            best = max(best, self._refill(t - moment) - (upto - bisect_right(spends, moment)))
        return max(0.0, best)

    def proves(self, t: float) -> bool:
        """Does silence to a probe sent at ``t`` prove the port sends no ICMP error?"""
        return self.tokens(t) >= 1.0

    # --- what happened to a probe -----------------------------------------------------

    def on_silence(self, idx: int, t: float) -> bool:
        """Probe ``idx`` sent at ``t`` got no answer: True if that counts as a silent try.

        Otherwise the port joins the queue and is probed again.
        """
        self.pending.pop(idx, None)
        proof = self.proves(t)
        insort(self.potential, t)
        self._forget_old()
        if proof:
            self.starved.pop(idx, None)
            self.proven.add(idx)
            return True
        self.starved[idx] = t
        self.queue.append(idx)
        self.unproven += 1
        return False

    def on_answer(self, idx: int, t: float, weight: int = 1, *, icmp: bool) -> bool:
        """Probe ``idx`` (``weight`` datagrams, sent at ``t``) was answered.

        ``icmp``: by an ICMP error, which spent a token. Returns True when the
        port's earlier silences were starvation, not loss (so not a loss signal).
        """
        self.pending.pop(idx, None)
        starved_at = self.starved.pop(idx, None)
        if idx in self.proven:  # its silence was proof, yet it answers: a probe was lost
            self.proven.discard(idx)
            if not self.lossy:
                self.lossy = True
                self._settle_interval()
        if not icmp:
            return False
        insort(self.answers, t)
        for _ in range(weight):
            insort(self.spends, t)  # every datagram may have drawn an error (upper bound)
            insort(self.potential, t)
        if starved_at is not None:
            self.witnesses.append(starved_at)  # a closed port was silent: the bucket was empty
        self._calibrate(t)
        self._forget_old()
        return starved_at is not None

    def forget(self, idx: int) -> None:
        """Probe ``idx`` left the engine's books some other way (a send error, our own drop)."""
        self.pending.pop(idx, None)

    # --- calibration ------------------------------------------------------------------

    def _calibrate(self, t: float) -> None:
        """Tighten the interval's upper bound with the windows ending at the answer ``t``."""
        answers = self.answers
        j = bisect_right(answers, t) - 1
        last = answers[j]
        for extra in _EXTRA:  # BURST + extra answers in [answers[i], last]
            i = j - BURST - extra + 1
            if i < 0:
                break
            self.free_bound = min(self.free_bound, (last - answers[i] + self.slack) / extra)
        for witness in self.witnesses:  # n answers sent after an empty bucket
            n = j - bisect_right(answers, witness + self.slack) + 1
            if n >= 2:
                bound = (last - witness + self.slack) / (n - 1)
                self.witness_bound = min(self.witness_bound, bound)
        self._settle_interval()

    def _settle_interval(self) -> None:
        witnessed = math.inf if self.lossy else self.witness_bound
        self.interval = max(MIN_INTERVAL, min(self.assumed, self.free_bound, witnessed))

    def _forget_old(self) -> None:
        """Keep memory bounded: the bucket held at least nothing after a dropped answer."""
        if len(self.spends) > KEPT_SPENDS:
            cut = len(self.spends) - KEPT_SPENDS // 2
            self.since = max(self.since, self.spends[cut - 1])
            del self.spends[:cut]
        if len(self.potential) > KEPT_SPENDS:
            cut = len(self.potential) - KEPT_SPENDS // 2
            self.potential_since = max(self.potential_since, self.potential[cut - 1])
            del self.potential[:cut]
        if len(self.answers) > KEPT_SPENDS:
            del self.answers[: len(self.answers) - KEPT_SPENDS // 2]

    # --- scheduling the queue ---------------------------------------------------------

    def retry_later(self, idx: int, t: float) -> bool:
        """Port ``idx``'s silence at ``t`` was proof: True if its next try waits here.

        While no error has come back, silences are not counted as possible
        spends (a host that drops everything must not be paced), so one error
        lost on its way back could prove a whole batch silent: the next try
        waits an interval, for a token that did not go to that batch.
        """
        if self.answers:
            return False
        heapq.heappush(self.later, (t + self.interval + self.slack, idx))
        return True

    def due(self, now: float) -> int:
        """How many queued ports to probe now (the engine skips decided ones)."""
        while self.later and self.later[0][0] <= now:
            self.queue.append(heapq.heappop(self.later)[1])
        if not self.queue:
            return 0
        room = self.tokens(now) - sum(p.weight for p in self.pending.values())
        if room >= 1.0:
            self.next_train = now + self.interval / TRAIN_SPLIT
            if not self.answers:
                return len(self.queue)  # no port here answers with ICMP: none can starve
            return min(len(self.queue), int(room))  # each probe may take a token
        # Saturated while answers flow; once they stop, pause so the bucket refills.
        flowing = bool(self.answers) and self.answers[-1] >= now - TRAIN_PATIENCE * self.interval
        if flowing and now >= self.next_train:
            # Saturated: a probe per quarter interval takes each token as it refills
            # (the engine may look less often than that: the slots since count).
            spacing = self.interval / TRAIN_SPLIT
            missed = min(now - self.next_train, TRAIN_CATCH_UP * spacing)  # inf: a first train
            slots = 1 + (int(missed / spacing) if self.next_train > -math.inf else 0)
            self.next_train = max(self.next_train + slots * spacing, now)
            return min(slots, len(self.queue))
        return 0

    def sent(self, idx: int, t: float, weight: int = 1) -> None:
        """A queued port was probed at ``t`` with ``weight`` datagrams."""
        self.pending[idx] = _Pending(weight)
