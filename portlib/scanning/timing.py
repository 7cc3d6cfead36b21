"""Pure timing model of a scan: nmap's -T0..-T5 presets and user overrides.

No clocks or sockets here: callers pass times in, so every rule is unit-testable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from portlib.errors import ScanError


@dataclass(frozen=True, slots=True)
class TimingProfile:
    """How patient and how parallel a scan is. Times are in seconds.

    The per-probe timeout starts at ``initial_rtt_timeout`` and then follows the
    measured RTT (srtt + 4 * rttvar), clamped to [min_rtt_timeout, max_rtt_timeout].
    ``max_retries`` counts retransmissions after silence; an answer is never retried.
    ``scan_delay`` is the least gap between probes to one host (T0-T2 serialize).
    ``rate`` caps probes per second for the whole scan (None: no cap);
    ``min_rate`` keeps the scan at least that fast, past what the congestion
    window would allow (nmap's ``--min-rate``; None: the window decides).
    ``max_parallelism`` caps probes in flight (None: sized from resources).
    """

    level: int
    initial_rtt_timeout: float
    min_rtt_timeout: float
    max_rtt_timeout: float
    max_retries: int
    scan_delay: float
    max_scan_delay: float
    min_parallelism: int
    max_parallelism: int | None
    rate: float | None = None
    min_rate: float | None = None

    def with_overrides(
        self,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        rate: float | None = None,
        concurrency: int | None = None,
        min_rate: float | None = None,
    ) -> TimingProfile:
        """This profile with the user's ``--timeout``/``--retries``/``--rate``/concurrency.

        ``timeout`` fixes the per-probe timeout (initial and maximum).
        """
        changes: dict[str, object] = {}
        if timeout is not None:
            if not timeout > 0:
                raise ScanError(f"timeout must be a positive number of seconds, not {timeout!r}")
            changes.update(
                initial_rtt_timeout=timeout,
                max_rtt_timeout=timeout,
                min_rtt_timeout=min(self.min_rtt_timeout, timeout),
            )
        if retries is not None:
            if retries < 0:
                raise ScanError(f"retries must be 0 or more, not {retries!r}")
            changes["max_retries"] = retries
        if rate is not None:
            if not rate > 0:
                raise ScanError(
                    f"rate must be a positive number of probes per second, not {rate!r}"
                )
            changes["rate"] = float(rate)
        if min_rate is not None:
            if not min_rate > 0:
                raise ScanError(
                    f"min_rate must be a positive number of probes per second, not {min_rate!r}"
                )
            changes["min_rate"] = float(min_rate)
        top = changes.get("rate", self.rate)
        low = changes.get("min_rate", self.min_rate)
        if isinstance(top, float) and isinstance(low, float) and low > top:
            raise ScanError(f"min_rate {low:g} is more than rate {top:g} probes per second")
        if concurrency is not None:
            if concurrency < 1:
                raise ScanError(f"concurrency must be 1 or more, not {concurrency!r}")
            changes["max_parallelism"] = concurrency
            changes["min_parallelism"] = min(self.min_parallelism, concurrency)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# nmap's timing templates (nmap.cc, "-T" handling); T3 is nmap's default.
PRESETS: dict[int, TimingProfile] = {
    0: TimingProfile(0, 300.0, 0.1, 300.0, 10, 300.0, 300.0, 1, 1),
    1: TimingProfile(1, 15.0, 0.1, 15.0, 10, 15.0, 15.0, 1, 1),
    2: TimingProfile(2, 1.0, 0.1, 10.0, 10, 0.4, 1.0, 1, 1),
    3: TimingProfile(3, 1.0, 0.1, 10.0, 10, 0.0, 1.0, 1, None),
    4: TimingProfile(4, 0.5, 0.1, 1.25, 6, 0.0, 0.01, 1, None),
    5: TimingProfile(5, 0.25, 0.05, 0.3, 2, 0.0, 0.005, 1, None),
}


def preset(level: int) -> TimingProfile:
    """The -T``level`` profile; 0 (paranoid) to 5 (insane)."""
    try:
        return PRESETS[level]
    except (KeyError, TypeError):
        raise ScanError(f"timing level must be 0 to 5 (-T0..-T5), not {level!r}") from None


# ---------------------------------------------------------------------------
# The adaptive part: RTT estimate, congestion window, rate cap, retries, pacing.
# Every method takes ``now`` (seconds on any monotonic clock) from the caller.
# ---------------------------------------------------------------------------


def _clamp(low: float, high: float, value: float) -> float:
    return max(low, min(high, value))


@dataclass(slots=True)
class RttEstimator:
    """Smoothed RTT and its variance (RFC 6298, as nmap's ``adjust_timeouts2``).

    Before the first sample the timeout is the profile's initial one; after it,
    ``srtt + 4 * rttvar`` clamped to [min_rtt_timeout, max_rtt_timeout].
    """

    initial_timeout: float
    min_timeout: float
    max_timeout: float
    srtt: float | None = None
    rttvar: float = 0.0
    samples: int = 0

    @classmethod
    def for_profile(cls, profile: TimingProfile) -> RttEstimator:
        return cls(profile.initial_rtt_timeout, profile.min_rtt_timeout, profile.max_rtt_timeout)

    def observe(self, rtt: float) -> None:
        """Feed one measured round trip (only from a first try: Karn's rule)."""
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.samples += 1

    def retry_timeout(self, tries: int) -> float:
        """Timeout for a probe sent for the ``tries``-th time before (0: first send).

        Before the first sample, silence may be the path still being set up (a
        lost neighbour discovery or ARP exchange, retried once a second), not
        the port: each retransmission waits twice as long as the one before
        (RFC 6298, 5.5), so the tries span that time. Once RTTs are measured,
        they rule.
        """
        if not tries or self.srtt is not None:
            return self.timeout
        return min(self.max_timeout, self.initial_timeout * (1 << min(tries, 16)))

    @property
    def timeout(self) -> float:
        if self.srtt is None:
            return self.initial_timeout
        return _clamp(self.min_timeout, self.max_timeout, self.srtt + 4 * self.rttvar)


@dataclass(slots=True)
class CongestionWindow:
    """How many probes may be in flight: nmap's ultra_scan window.

    Slow start (+1 per answer) below ``ssthresh``, then congestion avoidance
    (+1/cwnd per answer). A drop halves the window and sets ``ssthresh`` from
    the probes then in flight, at most once per ``drop_holdoff`` (one burst of
    losses is one congestion event). ``cap`` is the resource ceiling (file
    descriptors, ephemeral ports) and can only shrink when resources run out.
    """

    low: int
    high: int
    cwnd: float = 10.0
    ssthresh: float = 75.0
    cap: int = 1 << 30
    drop_divisor: float = 2.0
    last_drop: float = float("-inf")
    drops: int = 0

    @classmethod
    def for_profile(cls, profile: TimingProfile, resource_cap: int) -> CongestionWindow:
        high = profile.max_parallelism if profile.max_parallelism is not None else resource_cap
        high = max(1, min(high, resource_cap))
        low = max(1, min(profile.min_parallelism, high))
        divisor = 2.0 if profile.level < 4 else 1.5
        return cls(
            low, high, cwnd=float(_clamp(low, high, 10)), cap=resource_cap, drop_divisor=divisor
        )

    @property
    def limit(self) -> int:
        """Probes allowed in flight now."""
        return max(1, min(int(self.cwnd), self.high, self.cap))

    def available(self, in_flight: int) -> int:
        return max(0, self.limit - in_flight)

    def on_answer(self, count: int = 1) -> None:
        """``count`` answers arrived (in closed form: engines report them in batches)."""
        if count <= 0 or self.cwnd >= self.high:
            return
        if self.cwnd < self.ssthresh:
            step = min(float(count), self.ssthresh - self.cwnd)
            self.cwnd += step
            count -= int(step)
        if count > 0 and self.cwnd >= self.ssthresh:
            # +1/cwnd per answer: after n answers cwnd^2 grows by about 2n.
            self.cwnd = (
                math.sqrt(self.cwnd * self.cwnd + 2.0 * count)
                if count > 1
                else (self.cwnd + 1.0 / self.cwnd)
            )
        self.cwnd = min(self.cwnd, float(self.high))

    def on_drop(self, now: float, in_flight: int, holdoff: float) -> bool:
        """A probe was lost (a retransmission got the answer). True if the window shrank."""
        if now - self.last_drop < holdoff:
            return False
        self.last_drop = now
        self.drops += 1
        self.ssthresh = max(in_flight / self.drop_divisor, 2.0)
        self.cwnd = max(float(self.low), self.cwnd / self.drop_divisor)
        return True

    def shrink_cap(self, in_flight: int) -> int:
        """Resources ran out with ``in_flight`` probes open: never ask for that many again."""
        self.cap = max(1, min(self.cap, in_flight * 3 // 4))
        self.cwnd = min(self.cwnd, float(self.cap))
        return self.cap


@dataclass(slots=True)
class RateLimiter:
    """Token bucket for the optional probes-per-second cap (``--rate``).

    ``delay(now)`` is 0.0 when a probe may go now (and takes its token), else
    the seconds to wait. The bucket holds at most ``burst`` tokens.
    """

    rate: float
    burst: float = 1.0
    tokens: float = 1.0
    updated: float | None = None

    @classmethod
    def per_second(cls, rate: float) -> RateLimiter:
        if not rate > 0:
            raise ScanError(f"rate must be a positive number of probes per second, not {rate!r}")
        burst = max(1.0, rate / 100)  # 10 ms worth: smooth, yet no timer per probe
        return cls(rate, burst, burst)

    def delay(self, now: float) -> float:
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = max(now, self.updated or now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class RateFloor:
    """``--min-rate``: how many sends a scan owes beyond its window to keep the rate.

    ``owed(now, sent)`` is what the scan should have sent by ``now`` at ``rate``
    probes per second since ``start``, less what it has sent (never negative).
    """

    rate: float
    start: float

    def owed(self, now: float, sent: int) -> int:
        return max(0, int(self.rate * (now - self.start)) - sent)


@dataclass(slots=True)
class RetryPolicy:
    """How many tries a silent probe gets: enough for the loss actually seen.

    Retransmit only after silence, never after an answer. Like nmap's
    ``allowedTryno``, a clean network earns one retransmission; with loss the
    budget grows until a port that answers would be missed with probability
    below ``miss_probability``. Loss is estimated from answered probes: how many
    tries each needed (Laplace-smoothed, so a small sample stays careful).
    Silent ports are not loss evidence: a firewall's DROPs cost no extra tries.
    """

    max_retries: int
    miss_probability: float = 1e-4
    tries_sent: int = 0  # tries spent on probes that got an answer
    tries_lost: int = 0  # of those, tries that went unanswered
    max_successful_try: int = 0  # highest try number (0 = first) that got an answer

    def on_first_try_answers(self, count: int) -> None:
        """``count`` probes were answered at their first send (the common case, batched)."""
        self.tries_sent += count

    def on_answer(self, try_number: int) -> None:
        """An answer came to try ``try_number`` (0 for the first send)."""
        self.tries_sent += try_number + 1
        self.tries_lost += try_number
        self.max_successful_try = max(self.max_successful_try, try_number)

    @property
    def loss(self) -> float:
        """Estimated chance that one try goes unanswered although the port would answer."""
        return (self.tries_lost + 1) / (self.tries_sent + 2)

    @property
    def tries_allowed(self) -> int:
        """Total sends a silent probe gets before it is called filtered.

        With no answer at all yet there is no evidence of loss, only of silence
        (a firewalled host): one retransmission, as nmap starts with.
        """
        if self.tries_sent == 0:
            return max(1, min(self.max_retries + 1, 2))
        # Plan for the loss rate we cannot rule out (about two standard errors up),
        # not the point estimate: a small, lucky sample must not cut the budget.
        p = self.loss
        upper = min(0.95, p + 2 * math.sqrt(p * (1 - p) / (self.tries_sent + 2)))
        needed = math.ceil(math.log(self.miss_probability) / math.log(upper))
        tries = max(needed, self.max_successful_try + 2)
        return max(1, min(self.max_retries + 1, tries))

    def should_retry(self, tries_done: int) -> bool:
        """After ``tries_done`` silent sends: send again?"""
        return tries_done < self.tries_allowed

    @property
    def may_grow(self) -> bool:
        """Could later answers raise the budget? Then a probe at it is not yet filtered.

        Like nmap's probe bench: a probe that used up a budget computed from
        little evidence waits; it is sent again if answers show loss, and called
        filtered only when no answer can come any more (the scan is otherwise done).
        """
        return self.tries_allowed < self.max_retries + 1


@dataclass(slots=True)
class ScanDelay:
    """Least gap between probes to one host: the profile's ``scan_delay`` (T0-T2 serialize).

    The connect engine keeps to it. ICMP rate limits are handled by the raw
    engine's own model (``icmplimit``), which paces a limited host at the rate
    its token bucket refills instead of doubling a delay as nmap does.
    """

    current: float

    @classmethod
    def for_profile(cls, profile: TimingProfile) -> ScanDelay:
        return cls(profile.scan_delay)


@dataclass(slots=True)
class HostTiming:
    """Per-host timing state: its RTT estimate, pacing, and when it may be probed next."""

    rtt: RttEstimator
    delay: ScanDelay
    next_send: float = 0.0

    @classmethod
    def for_profile(cls, profile: TimingProfile) -> HostTiming:
        return cls(RttEstimator.for_profile(profile), ScanDelay.for_profile(profile))

    def may_send(self, now: float) -> bool:
        return now >= self.next_send

    def sent(self, now: float) -> None:
        if self.delay.current > 0:
            self.next_send = now + self.delay.current

    def answered(self, rtt: float | None) -> None:
        """One probe to this host got an answer; ``rtt`` only when it was a first try."""
        if rtt is not None:
            self.rtt.observe(rtt)


@dataclass(slots=True)
class LearnedTiming:
    """What one engine run learned of the network, handed to the next run of the same
    scan (the next host group), as nmap keeps its timing across host groups.

    Without it each group would start from the first guesses: a group of silent
    hosts (``-Pn`` over a dead range) would wait the initial timeout for every
    window of probes, where the groups before had measured both the round trip
    and how many probes the path takes at once.
    """

    rtt: RttEstimator
    cwnd: float | None = None  # the congestion window the last run ended with

    @classmethod
    def for_profile(cls, profile: TimingProfile) -> LearnedTiming:
        return cls(RttEstimator.for_profile(profile))
