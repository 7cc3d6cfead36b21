"""The record codec of the connect engine's worker pipes: round trips, any split, trailers."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from portlib.model import PortState, Reason
from portlib.scanning.connect.core import Counts
from portlib.scanning.connect.ledger import Decided
from portlib.scanning.connect.workers import RecordCodec

_decided = st.tuples(
    st.integers(0, 2**64 - 1),
    st.sampled_from(list(PortState)),
    st.sampled_from(list(Reason)),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False)),
)
_counts = st.builds(Counts, st.integers(0, 2**40), st.integers(0, 2**20), st.integers(0, 2**20))


def _feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[Decided], list[Counts], list[str]]:
    codec = RecordCodec()
    decided: list[Decided] = []
    done: list[Counts] = []
    failures: list[str] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        out = codec.feed(data[start:end])
        decided += out.decided
        if out.done is not None:
            done.append(out.done)
        if out.failure is not None:
            failures.append(out.failure)
    return decided, done, failures


@given(st.lists(_decided, max_size=200))
def test_results_round_trip(decided: list[Decided]) -> None:
    out = RecordCodec().feed(RecordCodec.results(decided))
    assert out.decided == decided
    assert out.done is None and out.failure is None


_trailer = st.one_of(_counts, st.text(min_size=1))  # done with its counts, or failed


@given(st.lists(_decided, max_size=100), _trailer, st.lists(st.integers(0, 10**6), max_size=30))
def test_any_split_of_the_stream_decodes_the_same(
    decided: list[Decided], trailer: Counts | str, cuts: list[int]
) -> None:
    end = RecordCodec.failed(trailer) if isinstance(trailer, str) else RecordCodec.done(trailer)
    got, done, failures = _feed_in_pieces(RecordCodec.results(decided) + end, cuts)
    assert got == decided
    assert done == ([] if isinstance(trailer, str) else [trailer])
    assert failures == ([trailer] if isinstance(trailer, str) else [])


def test_a_partial_record_waits_for_the_rest() -> None:
    one = RecordCodec.results([(7, PortState.OPEN, Reason.SYN_ACK, 0.25)])
    codec = RecordCodec()
    assert codec.feed(one[:5]).decided == []
    assert codec.feed(one[5:-1]).decided == []
    assert codec.feed(one[-1:]).decided == [(7, PortState.OPEN, Reason.SYN_ACK, 0.25)]
    trailer = RecordCodec.done(Counts(3, 1, 2))
    header = RecordCodec.RECORD.size
    assert codec.feed(trailer[: header + 1]).done is None  # the counts' text is cut
    assert codec.feed(trailer[header + 1 :]).done == Counts(3, 1, 2)


def test_no_rtt_is_not_a_zero_rtt() -> None:
    data = RecordCodec.results(
        [
            (1, PortState.FILTERED, Reason.NO_RESPONSE, None),
            (2, PortState.CLOSED, Reason.RESET, 0.0),
        ]
    )
    (_, _, _, none), (_, _, _, zero) = RecordCodec().feed(data).decided
    assert none is None
    assert zero == 0.0 and not math.isnan(zero)
