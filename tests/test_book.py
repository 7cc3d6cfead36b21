"""The pure per-probe book: resend, bench or give up, driven by plain numbers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.scanning.book import CONFIRMERS, SILENT_SCAN_HORIZON, Decision, RetryBook, Review


def test_silence_is_resent_while_the_budget_allows() -> None:
    book = RetryBook.for_retries(10)
    book.on_first_try_answers(1000)  # a clean network: one retransmission is the budget
    assert book.retry.tries_allowed == 2
    assert book.on_silence(7, 1) is Decision.RESEND
    assert not book.bench


def test_at_a_budget_that_may_grow_the_probe_waits_on_the_bench() -> None:
    book = RetryBook.for_retries(10)
    book.on_first_try_answers(1000)
    assert book.on_silence(7, 2) is Decision.BENCH
    assert book.bench == {7: 2}
    # Nothing raised the budget: not final, the probe stays; final, it is given up.
    assert book.review(False, 1.0) == Review([], [])
    assert book.review(True, 1.0) == Review([], [7])
    assert not book.bench


def test_answers_showing_loss_raise_the_budget_and_free_the_bench() -> None:
    book = RetryBook.for_retries(10)
    book.on_first_try_answers(1000)
    for index in range(3):
        assert book.on_silence(index, 2) is Decision.BENCH
    for index in range(100, 140):  # answers that needed retransmissions: loss
        book.on_answer(index, 2)
    assert book.retry.tries_allowed > 2
    resend, give_up = book.review(False, 1.0)
    assert resend == [(0, 2), (1, 2), (2, 2)] and give_up == []
    assert not book.bench


def test_without_room_to_grow_silence_is_given_up_at_once() -> None:
    book = RetryBook.for_retries(1)  # a budget of 2 tries is already the most
    assert book.on_silence(3, 1) is Decision.RESEND
    assert book.on_silence(3, 2) is Decision.GIVE_UP
    assert not book.bench


def test_a_scan_that_heard_nothing_is_confirmed_before_it_is_given_up() -> None:
    book = RetryBook.for_retries(10)
    book.on_send(0.0)
    for index in range(6):
        assert book.on_silence(index, 2) is Decision.BENCH  # the no-evidence budget
    early = book.review(True, SILENT_SCAN_HORIZON - 1)
    assert early == Review([(i, 2) for i in range(CONFIRMERS)], [])
    assert sorted(book.bench) == list(range(CONFIRMERS, 6))
    late = book.review(True, SILENT_SCAN_HORIZON)
    assert late == Review([], list(range(CONFIRMERS, 6)))


def test_confirmers_stop_at_the_retry_cap() -> None:
    book = RetryBook.for_retries(2)
    book.on_send(0.0)
    assert book.on_silence(1, 2) is Decision.BENCH
    assert book.review(True, 0.5) == Review([(1, 2)], [])  # a third try is allowed
    assert book.on_silence(1, 3) is Decision.BENCH
    # Still within the horizon, but a confirmer may not pass the user's retry cap.
    assert book.review(True, 1.0) == Review([], [1])


def test_a_late_answer_takes_a_probe_off_the_bench() -> None:
    book = RetryBook.for_retries(10)
    book.on_first_try_answers(1000)
    assert book.on_silence(5, 2) is Decision.BENCH
    book.on_answer(5, 2)  # a raw engine's reply can still arrive
    assert not book.bench
    assert book.review(True, 1.0) == Review([], [])


# A model engine around the book: probes are in flight (with their tries), queued
# to resend, on the bench, or decided. Events come from hypothesis.
# "loss": a probe outside the model needed retransmissions, which raises the budget.
_KINDS = ["silence"] * 6 + ["answer", "loss"] + ["review"] * 2 + ["tick"]
_event = st.tuples(st.sampled_from(_KINDS), st.integers(0, 63))


@settings(max_examples=300, deadline=None)
@given(
    probes=st.integers(1, 20),
    max_retries=st.integers(0, 10),
    first_answers=st.one_of(st.just(0), st.integers(0, 2000)),  # 0: a silent scan so far
    events=st.lists(_event, min_size=30, max_size=300),
)
def test_every_probe_is_decided_exactly_once(
    probes: int, max_retries: int, first_answers: int, events: list[tuple[str, int]]
) -> None:
    book = RetryBook.for_retries(max_retries)
    book.on_first_try_answers(first_answers)
    now = 0.0
    book.on_send(now)
    flying: dict[int, int] = dict.fromkeys(range(probes), 0)  # index -> silent sends so far
    resend: list[tuple[int, int]] = []
    benched: set[int] = set()  # what the book must still hold
    decided: dict[int, str] = {}

    def decide(index: int, how: str) -> None:
        assert index not in decided, f"probe {index} decided twice"
        decided[index] = how

    def take(review: Review) -> None:
        leaving = [i for i, _ in review.resend] + review.give_up
        assert len(set(leaving)) == len(leaving), "a probe left the bench twice"
        assert set(leaving) <= benched, "left the bench without being on it"
        benched.difference_update(leaving)
        for index, tries in review.resend:
            assert index not in decided and index not in flying
            resend.append((index, tries))
        for index in review.give_up:
            decide(index, "silent")
        assert set(book.bench) == benched

    def silence(index: int) -> None:
        tries = flying.pop(index) + 1
        decision = book.on_silence(index, tries)
        if decision is Decision.BENCH:
            benched.add(index)
        assert set(book.bench) == benched
        if decision is Decision.RESEND:
            resend.append((index, tries))
        elif decision is Decision.GIVE_UP:
            decide(index, "silent")

    def send_queued() -> None:
        for index, tries in resend:
            assert index not in flying and index not in decided
            flying[index] = tries
        resend.clear()

    for kind, pick in events:
        send_queued()
        if kind == "tick":
            now += pick / 8
        elif kind == "loss":
            book.on_answer(1000 + pick, pick % 4)
        elif kind == "review":
            take(book.review(not flying and not resend, now))
        elif flying:
            index = sorted(flying)[pick % len(flying)]
            if kind == "silence":
                silence(index)
            else:
                book.on_answer(index, flying.pop(index))
                decide(index, "answer")
    # Then nothing answers any more: the engine's end game must finish.
    for _ in range(10 * probes * (max_retries + 2) + 10):
        send_queued()
        for index in sorted(flying):
            silence(index)
        if not flying and not resend and not book.bench:
            break
        if not flying and not resend:
            now += 1.0
            take(book.review(True, now))
    assert sorted(decided) == list(range(probes))
    assert not book.bench
