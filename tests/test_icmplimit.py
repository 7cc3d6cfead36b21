"""The ICMP rate-limit model, against a simulated Linux token bucket on a fake clock.

``Target`` is Linux's per-peer limit (``inet_peer_xrlim_allow``): one token per
interval, at most 6, an error only when a token is there. ``scan`` drives
``IcmpLimit`` the way the raw engine does (a blast, timeouts, retries, the
queue). No real time passes: every number below is simulated seconds.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.scanning.raw.icmplimit import ASSUMED_INTERVAL, BURST, KEPT_SPENDS, IcmpLimit

CLOSED, SILENT = "closed", "open|filtered"


@dataclass
class Target:
    """A Linux host: ``closed`` ports answer with ICMP while the bucket has a token."""

    interval: float  # icmp_ratelimit in seconds; 0: no limit
    tokens: float  # at time 0, in tokens
    closed: frozenset[int]
    last: float = 0.0
    errors: list[float] = field(default_factory=list)  # arrival times of the errors sent

    def arrive(self, port: int, now: float) -> bool:
        if port not in self.closed:
            return False
        if self.interval == 0:
            self.errors.append(now)
            return True
        level = min(BURST, self.tokens + (now - self.last) / self.interval)
        self.last = now
        if level >= 1.0 - 1e-12:
            self.tokens = level - 1.0
            self.errors.append(now)
            return True
        self.tokens = level
        return False


@dataclass
class LossyTarget(Target):
    """Loses ``loss`` of the probes on the way in and of the errors on the way out."""

    loss: float = 0.1
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def arrive(self, port: int, now: float) -> bool:
        if self.rng.random() < self.loss:
            return False
        return super().arrive(port, now) and self.rng.random() >= self.loss


@dataclass
class Outcome:
    states: dict[int, str]
    elapsed: float
    limit: IcmpLimit
    false_proofs: list[int]  # closed ports whose silence the model called proof
    sends: int


def scan(
    target: Target,
    ports: list[int],
    *,
    rtt: float = 0.001,
    timeout: float = 0.1,
    tries: int = 2,
    start: float = 0.0,
    give_up: float = 300.0,
) -> Outcome:
    """The raw engine's UDP loop in miniature, one outstanding probe per port."""
    limit = IcmpLimit(since=start)
    events: list[tuple[float, int, str, int, float]] = []  # (time, seq, kind, port, sent)
    seq = 0
    latest: dict[int, float] = {}
    silences: dict[int, int] = dict.fromkeys(ports, 0)
    states: dict[int, str] = {}
    false_proofs: list[int] = []
    sends = 0

    def send(port: int, now: float) -> None:
        nonlocal seq, sends
        sends += 1
        latest[port] = now
        answered = target.arrive(port, now + rtt / 2)
        seq += 1
        if answered:
            heapq.heappush(events, (now + rtt, seq, "answer", port, now))
        else:
            heapq.heappush(events, (now + timeout, seq, "expire", port, now))

    now = start
    for i, port in enumerate(ports):  # the blast, 10 µs apart
        send(port, start + i * 1e-5)
    while len(states) < len(ports):
        assert now < start + give_up, f"not done after {give_up} s: {states}"
        while events and events[0][0] <= now:
            _, _, kind, port, sent = heapq.heappop(events)
            if port in states or latest[port] != sent:
                continue
            if kind == "answer":
                limit.on_answer(port, sent, icmp=True)
                states[port] = CLOSED
            elif limit.on_silence(port, sent):
                if port in target.closed:
                    false_proofs.append(port)
                silences[port] += 1
                if silences[port] >= tries:
                    states[port] = SILENT
                elif not limit.retry_later(port, sent):
                    send(port, now)
        for _ in range(limit.due(now) if limit.waiting else 0):  # as the engine asks
            port = limit.queue.popleft()
            if port in states:
                continue
            send(port, now)
            limit.sent(port, now)
        now += 0.005
    return Outcome(states, now - start, limit, false_proofs, sends)


def expected(closed: set[int], ports: list[int]) -> dict[int, str]:
    return {p: CLOSED if p in closed else SILENT for p in ports}


PORTS = list(range(1, 24))
CLOSED_20 = set(range(1, 21))  # ports 21-23: silent (open or dropped)


def test_full_bucket_default_limit_exact_near_the_refill_floor() -> None:
    out = scan(Target(1.0, BURST, frozenset(CLOSED_20)), PORTS)
    assert out.states == expected(CLOSED_20, PORTS)
    assert not out.false_proofs
    # 6 errors free, then one per second for the other 14; then each of the 6
    # silent tries (3 ports, 2 tries) needs a token of its own to prove anything.
    assert 14.0 + 6.0 <= out.elapsed <= 14.0 + 6.0 + 4.0
    assert out.limit.limited and 0.99 <= out.limit.interval <= ASSUMED_INTERVAL


def test_empty_bucket_default_limit_exact() -> None:
    out = scan(Target(1.0, 0.0, frozenset(CLOSED_20)), PORTS)
    assert out.states == expected(CLOSED_20, PORTS)
    assert not out.false_proofs
    assert 20.0 + 6.0 <= out.elapsed <= 20.0 + 6.0 + 4.0  # one token per second from the start


def test_faster_limit_is_calibrated_and_scanned_about_four_times_faster() -> None:
    slow = scan(Target(1.0, 0.0, frozenset(CLOSED_20)), PORTS)
    fast = scan(Target(0.25, 0.0, frozenset(CLOSED_20)), PORTS)
    assert fast.states == expected(CLOSED_20, PORTS)
    assert not fast.false_proofs
    assert 0.25 <= fast.limit.interval <= 0.3
    assert fast.elapsed <= 0.35 * slow.elapsed


def test_no_limit_is_quick_and_not_called_limited() -> None:
    out = scan(Target(0.0, 0.0, frozenset(CLOSED_20)), PORTS)
    assert out.states == expected(CLOSED_20, PORTS)
    assert out.elapsed <= 1.5 and not out.limit.limited
    assert out.limit.interval < 0.01  # 20 errors at once: no 1/s limit can send that


def test_a_host_that_drops_everything_finishes_quickly_without_pacing() -> None:
    target = Target(1.0, 0.0, frozenset())
    out = scan(target, list(range(1, 101)))
    assert out.states == expected(set(), list(range(1, 101)))
    # The blast proves nothing (the bucket may be empty), a token later one round
    # does, and the retry waits another (a lost error could have fooled that round).
    assert out.elapsed <= 2 * ASSUMED_INTERVAL + 0.5
    assert out.sends == 200 + 100  # blast, one round, the retry: no train
    assert not out.limit.limited


def test_mostly_dropped_host_with_a_limit_is_exact() -> None:
    closed = {5, 20, 35}
    ports = list(range(1, 41))
    out = scan(Target(1.0, 0.0, frozenset(closed)), ports)
    assert out.states == expected(closed, ports)
    assert not out.false_proofs


def test_multi_datagram_probes_spend_as_many_tokens() -> None:
    limit = IcmpLimit(since=0.0)
    limit.on_answer(1, 10.0, weight=2, icmp=True)
    assert limit.spends == [10.0, 10.0]
    assert limit.tokens(10.001) == BURST - 2  # both may have drawn an error


def test_tokens_lower_bound_refills_from_the_last_answer() -> None:
    limit = IcmpLimit(since=0.0)
    assert limit.tokens(0.5) < 1 and not limit.proves(0.5)
    assert limit.proves(1.02)  # a second (plus slack) after we knew nothing
    for t in (1.1, 1.2, 1.3):
        limit.on_answer(int(t * 10), t, icmp=True)
    assert not limit.proves(1.35)
    assert limit.proves(1.3 + 1.0 + 0.011)
    assert limit.tokens(100.0) == BURST


def test_memory_stays_bounded_and_a_long_blast_does_not_delay_proof() -> None:
    limit = IcmpLimit(since=0.0)
    for i in range(3 * KEPT_SPENDS):  # 0.12 s of silent blast, nothing proven yet
        assert not limit.on_silence(i, i * 1e-5)
    assert len(limit.potential) <= KEPT_SPENDS and len(limit.queue) == 3 * KEPT_SPENDS
    assert limit.proves(1.02)  # no error ever came back: the refill since 0 counts


def test_calibration_without_a_witness_needs_more_than_the_burst() -> None:
    limit = IcmpLimit(since=0.0)
    for i in range(BURST):
        limit.on_answer(i, 0.0, icmp=True)
    assert limit.interval == ASSUMED_INTERVAL  # six at once: any interval fits
    for i in range(1, 5):
        limit.on_answer(100 + i, 0.25 * i, icmp=True)
    # 10 answers within 1 s: at most 6 free, so 4 refills took at most 1 s.
    assert limit.interval <= (1.0 + limit.slack) / 4 + 1e-9


def test_calibration_after_a_witness() -> None:
    limit = IcmpLimit(since=0.0)
    limit.queue.clear()
    assert not limit.on_silence(7, 0.0)  # unproven: the bucket may be empty
    assert list(limit.queue) == [7]
    limit.on_answer(1, 0.5, icmp=True)
    limit.on_answer(2, 1.0, icmp=True)
    assert limit.on_answer(7, 1.5, icmp=True)  # port 7 was starved at 0.0: a witness
    assert limit.limited
    # 3 answers sent after an empty bucket within 1.5 s: 2 refills took < 1.5 s.
    assert limit.interval <= (1.5 + limit.slack) / 2


def test_loss_retracts_what_witnesses_proved() -> None:
    limit = IcmpLimit(since=0.0)
    assert not limit.on_silence(7, 0.0)
    for i, t in enumerate((0.1, 0.2, 0.3)):
        limit.on_answer(i, t, icmp=True)
    limit.on_answer(7, 0.4, icmp=True)  # "starved" at 0.0: or was that probe lost?
    assert limit.limited and limit.interval <= 0.21
    assert limit.on_silence(9, 5.0)  # proof: nothing answered for seconds
    limit.on_answer(9, 5.5, icmp=True)  # ... yet port 9 answers: this network loses probes
    assert limit.lossy and not limit.limited
    assert limit.interval == ASSUMED_INTERVAL  # back to what answer counts alone allow


def test_ten_percent_loss_each_way_still_exact_with_three_tries() -> None:
    # A lost error spent a token we never saw: silences after it must not pass
    # for proof (silent probes count as possible spends once errors flow).
    for seed in range(8):
        for interval, tokens in ((1.0, BURST), (1.0, 0.0), (0.25, 0.0)):
            rng = random.Random(seed)
            target = LossyTarget(interval, tokens, frozenset(CLOSED_20), rng=rng)
            out = scan(target, PORTS, tries=3)
            assert out.states == expected(CLOSED_20, PORTS), (seed, interval, tokens)


@settings(max_examples=40, deadline=None)
@given(
    interval=st.sampled_from([0.05, 0.1, 0.25, 0.5, 1.0]),
    tokens=st.floats(0.0, BURST),
    closed=st.sets(st.integers(1, 16), max_size=12),
    rtt=st.sampled_from([0.0002, 0.002, 0.02]),
    offset=st.floats(0.0, 1000.0),
)
def test_any_bucket_state_gives_exact_results(
    interval: float, tokens: float, closed: set[int], rtt: float, offset: float
) -> None:
    ports = list(range(1, 17))
    target = Target(interval, tokens, frozenset(closed), last=offset)
    out = scan(target, ports, rtt=rtt, timeout=max(0.1, 4 * rtt), start=offset)
    assert not out.false_proofs
    assert out.states == expected(closed, ports)
    assert out.limit.interval >= min(interval, ASSUMED_INTERVAL) - 1e-9  # an upper bound
