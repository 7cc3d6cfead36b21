"""The pure timing model, driven by a fake clock (plain numbers passed in)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portlib.errors import ScanError
from portlib.scanning.timing import (
    PRESETS,
    CongestionWindow,
    HostTiming,
    RateFloor,
    RateLimiter,
    RetryPolicy,
    RttEstimator,
    ScanDelay,
    preset,
)


def test_presets_match_nmap_documented_values() -> None:
    # nmap(1), "Timing templates": T4 = --max-rtt-timeout 1250ms --min-rtt-timeout 100ms
    # --initial-rtt-timeout 500ms --max-retries 6, max scan delay 10 ms; T5 = 300/50/250 ms,
    # --max-retries 2, --host-timeout 15m, scan delay 5 ms; T0/T1/T2 wait 300 s/15 s/0.4 s.
    t4, t5 = preset(4), preset(5)
    assert (t4.max_rtt_timeout, t4.min_rtt_timeout, t4.initial_rtt_timeout) == (1.25, 0.1, 0.5)
    assert (t4.max_retries, t4.max_scan_delay) == (6, 0.01)
    assert (t5.max_rtt_timeout, t5.min_rtt_timeout, t5.initial_rtt_timeout) == (0.3, 0.05, 0.25)
    assert (t5.max_retries, t5.max_scan_delay) == (2, 0.005)
    assert [preset(n).scan_delay for n in (0, 1, 2)] == [300.0, 15.0, 0.4]
    assert all(preset(n).max_parallelism == 1 for n in (0, 1, 2))  # serialized
    t3 = preset(3)
    assert (t3.initial_rtt_timeout, t3.min_rtt_timeout, t3.max_rtt_timeout) == (1.0, 0.1, 10.0)
    assert t3.max_retries == 10
    assert sorted(PRESETS) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("level", [-1, 6, "3", None])
def test_bad_level_is_a_scan_error(level: object) -> None:
    with pytest.raises(ScanError, match=r"-T0\.\.-T5"):
        preset(level)  # type: ignore[arg-type]


def test_rtt_estimator_follows_rfc6298() -> None:
    est = RttEstimator(initial_timeout=1.0, min_timeout=0.1, max_timeout=10.0)
    assert est.timeout == 1.0  # no sample yet
    est.observe(0.2)
    assert est.srtt == pytest.approx(0.2) and est.rttvar == pytest.approx(0.1)
    assert est.timeout == pytest.approx(0.2 + 4 * 0.1)
    est.observe(0.4)
    assert est.rttvar == pytest.approx(0.75 * 0.1 + 0.25 * 0.2)
    assert est.srtt == pytest.approx(0.875 * 0.2 + 0.125 * 0.4)
    assert est.timeout == pytest.approx(est.srtt + 4 * est.rttvar)


def test_rtt_timeout_is_clamped_both_ways() -> None:
    est = RttEstimator.for_profile(preset(4))
    est.observe(0.0001)
    assert est.timeout == 0.1  # min_rtt_timeout
    slow = RttEstimator.for_profile(preset(4))
    slow.observe(5.0)
    assert slow.timeout == 1.25  # max_rtt_timeout


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=50))
def test_rtt_timeout_always_within_bounds(samples: list[float]) -> None:
    est = RttEstimator(0.5, 0.05, 2.0)
    for s in samples:
        est.observe(s)
        assert 0.05 <= est.timeout <= 2.0


def test_window_slow_start_then_congestion_avoidance() -> None:
    w = CongestionWindow(low=1, high=1000, cwnd=10, ssthresh=12)
    w.on_answer(2)
    assert w.cwnd == 12  # +1 per answer below ssthresh
    w.on_answer()
    assert w.cwnd == pytest.approx(12 + 1 / 12)  # then +1/cwnd
    assert w.limit == 12


def test_window_halves_on_drop_once_per_holdoff() -> None:
    w = CongestionWindow(low=2, high=1000, cwnd=100)
    assert w.on_drop(now=10.0, in_flight=80, holdoff=1.0)
    assert w.cwnd == 50 and w.ssthresh == 40
    assert not w.on_drop(now=10.5, in_flight=50, holdoff=1.0)  # same burst
    assert w.cwnd == 50
    assert w.on_drop(now=11.5, in_flight=50, holdoff=1.0)
    assert w.cwnd == 25
    for t in range(20):
        w.on_drop(now=20.0 + 2 * t, in_flight=1, holdoff=1.0)
    assert w.cwnd == 2 and w.ssthresh == 2  # never below low


def test_window_respects_bounds_and_resource_cap() -> None:
    w = CongestionWindow.for_profile(preset(3), resource_cap=200)
    assert (w.low, w.high, w.limit) == (1, 200, 10)
    w.on_answer(30_000)
    assert w.limit == 200
    assert w.available(150) == 50
    assert w.shrink_cap(in_flight=100) == 75
    assert w.limit == 75 and w.available(80) == 0
    assert CongestionWindow.for_profile(preset(2), resource_cap=200).limit == 1
    user = CongestionWindow.for_profile(preset(3).with_overrides(concurrency=5), 200)
    user.on_answer(100)
    assert user.limit == 5


def test_rate_limiter_spaces_probes() -> None:
    r = RateLimiter.per_second(10)  # burst 1
    assert r.delay(0.0) == 0.0
    assert r.delay(0.0) == pytest.approx(0.1)
    assert r.delay(0.05) == pytest.approx(0.05)
    assert r.delay(0.1) == 0.0
    r = RateLimiter.per_second(10)
    sent, now = 0, 0.0
    while now < 10.0:  # a fake clock that only moves when told to wait
        wait = r.delay(now)
        if wait == 0:
            sent += 1
        now += max(wait, 0.001)
    assert 99 <= sent <= 102


def test_rate_limiter_burst_and_validation() -> None:
    r = RateLimiter.per_second(1000)  # bursts of 10
    assert [r.delay(0.0) for _ in range(10)] == [0.0] * 10
    assert r.delay(0.0) > 0
    with pytest.raises(ScanError):
        RateLimiter.per_second(0)


def test_retry_budget_follows_observed_loss() -> None:
    policy = RetryPolicy(max_retries=10)
    assert policy.tries_allowed == 2  # nothing answered yet: no loss seen, one retransmission
    for _ in range(3):
        policy.on_answer(0)
    assert policy.tries_allowed >= 5  # a few answers are thin evidence: stay careful
    for _ in range(10_000):
        policy.on_answer(0)
    assert policy.tries_allowed == 2  # clean network: one retransmission, as nmap
    assert policy.should_retry(1) and not policy.should_retry(2)
    lossy = RetryPolicy(max_retries=10)
    for i in range(10_000):  # about 19% of tries lost (10% each way)
        lossy.on_answer(1 if i % 5 == 0 else 0)
    assert 0.15 < lossy.loss < 0.2
    assert lossy.tries_allowed >= 6
    assert lossy.loss**lossy.tries_allowed < 1e-4


def test_retry_budget_is_careful_with_a_small_lucky_sample() -> None:
    # 15 ports answered at once on a link that really loses 19% per round trip:
    # the budget must still cover that loss rate.
    policy = RetryPolicy(max_retries=10)
    for _ in range(15):
        policy.on_answer(0)
    assert 0.19**policy.tries_allowed < 1e-4


def test_retry_budget_capped_by_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    policy.on_answer(5)
    assert policy.tries_allowed == 3
    assert RetryPolicy(max_retries=0).tries_allowed == 1


@given(st.lists(st.integers(min_value=0, max_value=12), max_size=200), st.integers(0, 10))
def test_retry_budget_bounds(answers: list[int], retries: int) -> None:
    policy = RetryPolicy(max_retries=retries)
    for a in answers:
        policy.on_answer(a)
    assert 1 <= policy.tries_allowed <= retries + 1
    assert math.isfinite(policy.loss) and 0 < policy.loss < 1


def test_scan_delay_follows_the_profile() -> None:
    assert ScanDelay.for_profile(preset(4)).current == 0
    assert ScanDelay.for_profile(preset(2)).current == 0.4


def test_host_timing_paces_and_learns_rtts() -> None:
    h = HostTiming.for_profile(preset(2))
    assert h.may_send(0.0)
    h.sent(0.0)
    assert not h.may_send(0.3) and h.may_send(0.4)
    h.answered(0.05)
    assert h.rtt.samples == 1
    h.sent(1.0)
    h.answered(None)  # a retry's answer says nothing about the RTT (Karn)
    assert h.rtt.samples == 1


def test_retries_before_any_sample_back_the_timeout_off() -> None:
    rtt = RttEstimator.for_profile(preset(4))  # initial 0.5 s, maximum 1.25 s
    assert [rtt.retry_timeout(n) for n in range(4)] == [0.5, 1.0, 1.25, 1.25]
    rtt3 = RttEstimator.for_profile(preset(3))  # initial 1 s, maximum 10 s
    assert [rtt3.retry_timeout(n) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert rtt3.retry_timeout(200) == 10.0
    rtt.observe(0.001)  # measured RTTs rule from now on
    assert [rtt.retry_timeout(n) for n in range(3)] == [0.1, 0.1, 0.1]


def test_budget_from_no_evidence_may_still_grow() -> None:
    policy = RetryPolicy(max_retries=6)
    assert policy.tries_allowed == 2 and policy.may_grow  # nothing answered yet
    policy.on_first_try_answers(10)
    for _ in range(3):
        policy.on_answer(2)  # answers needed retries: loss
    assert policy.tries_allowed == 7 and not policy.may_grow
    assert not RetryPolicy(max_retries=0).may_grow


def test_rate_floor_owes_what_the_minimum_rate_has_earned() -> None:
    floor = RateFloor(1000.0, start=10.0)
    assert floor.owed(10.0, 0) == 0
    assert floor.owed(10.5, 200) == 300  # 500 earned, 200 sent
    assert floor.owed(10.5, 900) == 0  # ahead of the rate: nothing owed


def test_min_rate_is_checked_against_rate() -> None:
    assert preset(3).with_overrides(min_rate=50).min_rate == 50.0
    with pytest.raises(ScanError, match="min_rate 500 is more than rate 100"):
        preset(3).with_overrides(rate=100, min_rate=500)
    with pytest.raises(ScanError, match="min_rate must be a positive"):
        preset(3).with_overrides(min_rate=0)
