"""The record codec of the connect engine's worker pipes: round trips, any split, trailers."""

from __future__ import annotations

import itertools
import math
from ipaddress import ip_address

from hypothesis import given
from hypothesis import strategies as st

from portlib.model import PortResult, PortState, Protocol, Reason
from portlib.scanning.connect.core import Counts, port_results
from portlib.scanning.connect.ledger import Decided
from portlib.scanning.connect.workers import RecordCodec
from portlib.scanning.contract import ScanWork
from portlib.scanning.timing import preset

HOSTS = (ip_address("192.0.2.1"), ip_address("2001:db8::1"), ip_address("198.51.100.7"))
PORTS = (1, 22, 80, 443, 8080, 65535)
WORK = ScanWork(HOSTS, PORTS, Protocol.TCP, preset(4), seed=1)

_decided = st.tuples(
    st.integers(0, len(HOSTS) * len(PORTS) - 1),
    st.sampled_from(list(PortState)),
    st.sampled_from(list(Reason)),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False)),
)
_counts = st.builds(Counts, st.integers(0, 2**40), st.integers(0, 2**20), st.integers(0, 2**20))


def _feed_in_pieces(
    data: bytes, cuts: list[int]
) -> tuple[list[PortResult], list[Counts], list[str]]:
    codec = RecordCodec(WORK)
    decided: list[PortResult] = []
    done: list[Counts] = []
    failures: list[str] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        out = codec.feed(data[start:end])
        decided += out.results
        if out.done is not None:
            done.append(out.done)
        if out.failure is not None:
            failures.append(out.failure)
    return decided, done, failures


@given(st.lists(_decided, max_size=200))
def test_results_round_trip(decided: list[Decided]) -> None:
    out = RecordCodec(WORK).feed(RecordCodec.results(decided))
    assert out.results == port_results(WORK, decided)
    assert out.done is None and out.failure is None


_trailer = st.one_of(_counts, st.text(min_size=1))  # done with its counts, or failed


@given(st.lists(_decided, max_size=100), _trailer, st.lists(st.integers(0, 10**6), max_size=30))
def test_any_split_of_the_stream_decodes_the_same(
    decided: list[Decided], trailer: Counts | str, cuts: list[int]
) -> None:
    end = RecordCodec.failed(trailer) if isinstance(trailer, str) else RecordCodec.done(trailer)
    got, done, failures = _feed_in_pieces(RecordCodec.results(decided) + end, cuts)
    assert got == port_results(WORK, decided)
    assert done == ([] if isinstance(trailer, str) else [trailer])
    assert failures == ([trailer] if isinstance(trailer, str) else [])


def test_a_partial_record_waits_for_the_rest() -> None:
    seven = (7, PortState.OPEN, Reason.SYN_ACK, 0.25)  # host 1, port 2: [2001:db8::1]:80
    one = RecordCodec.results([seven])
    codec = RecordCodec(WORK)
    assert codec.feed(one[:5]).results == []
    assert codec.feed(one[5:-1]).results == []
    (result,) = codec.feed(one[-1:]).results
    assert (result.host, result.port, result.state, result.reason, result.rtt) == (
        HOSTS[1],
        80,
        PortState.OPEN,
        Reason.SYN_ACK,
        0.25,
    )
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
    none, zero = (r.rtt for r in RecordCodec(WORK).feed(data).results)
    assert none is None
    assert zero == 0.0 and not math.isnan(zero)
