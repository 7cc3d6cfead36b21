"""The raw engine's probe book: results made by columns are the results ``PortResult`` makes."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.model import PortResult, PortState, Protocol, Reason
from portlib.scanning.book import RetryBook, RetryPolicy
from portlib.scanning.raw.probes import ProbeBook, port_results
from portlib.scanning.raw.replies import FirstTries
from portlib.scanning.timing import CongestionWindow, RttEstimator, preset

ADDRESSES = [ip_address("192.0.2.10"), ip_address("2001:db8::1")]
PORTS = [22, 80, 443, 8080, 65535]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(ADDRESSES),
            st.integers(1, 65535),
            st.sampled_from(list(Protocol)),
            st.sampled_from(list(PortState)),
            st.sampled_from(list(Reason)),
            st.one_of(st.none(), st.floats(0, 10)),
            st.one_of(st.none(), st.sampled_from(["ssh", "http"])),
        ),
        max_size=20,
    )
)
def test_results_by_columns_are_the_constructors(rows: list[tuple[object, ...]]) -> None:
    names = ["host", "port", "protocol", "state", "reason", "rtt", "service"]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    made = port_results(columns, len(rows))
    expected = [PortResult(*row) for row in rows]  # type: ignore[arg-type]
    assert made == expected and [hash(r) for r in made] == [hash(r) for r in expected]
    assert [repr(r) for r in made] == [repr(r) for r in expected]
    without_service = {name: column for name, column in columns.items() if name != "service"}
    assert all(r.service is None for r in port_results(without_service, len(rows)))


def test_results_by_columns_need_every_field_without_a_default() -> None:
    with pytest.raises(TypeError, match="'reason'"):
        port_results({"host": [], "port": [], "protocol": [], "state": []}, 0)


def decide_in_bulk(book: ProbeBook, answers: list[tuple[int, PortState, Reason, float]]) -> None:
    """``answers`` as first tries, decided at once (a fresh window, retry book, estimator)."""
    timing = preset(3)
    batch = FirstTries()
    for answer in answers:
        batch.add(*answer)
    retries = RetryBook(RetryPolicy(timing.max_retries), horizon=0.0)
    window = CongestionWindow.for_profile(timing, 1000)
    book.decide_first_tries(batch, window, retries, RttEstimator.for_profile(timing))


def test_first_tries_decided_in_bulk_give_each_probe_its_result() -> None:
    book = ProbeBook(ADDRESSES, PORTS, Protocol.TCP, to_decide=10)
    for idx in range(10):
        book.sent(idx, 100.0 + idx)
        book.fly(idx)
    decide_in_bulk(
        book,
        [
            (7, PortState.OPEN, Reason.SYN_ACK, 107.5),
            (0, PortState.CLOSED, Reason.RESET, 100.25),
            (9, PortState.CLOSED, Reason.RESET, 110.0),
        ],
    )
    assert book.take_out() == [
        PortResult(ADDRESSES[1], 443, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK, 0.5),
        PortResult(ADDRESSES[0], 22, Protocol.TCP, PortState.CLOSED, Reason.RESET, 0.25),
        PortResult(ADDRESSES[1], 65535, Protocol.TCP, PortState.CLOSED, Reason.RESET, 1.0),
    ]
    assert book.pending == 7 and book.undecided == 7
    assert [book.flying[i] for i in range(10)] == [0, 1, 1, 1, 1, 1, 1, 0, 1, 0]
    decide_in_bulk(book, [])
    assert book.take_out() == [] and book.pending == 7


def test_first_tries_of_a_single_host_scan_name_their_ports() -> None:
    """One host: a probe's index is its port's (the short path), in any port order."""
    ports = [8080, 22, 443]
    book = ProbeBook(ADDRESSES[:1], ports, Protocol.TCP, to_decide=3)
    for idx in range(3):
        book.sent(idx, 50.0)
        book.fly(idx)
    decide_in_bulk(
        book,
        [(2, PortState.CLOSED, Reason.RESET, 50.5), (0, PortState.OPEN, Reason.SYN_ACK, 51.0)],
    )
    assert book.take_out() == [
        PortResult(ADDRESSES[0], 443, Protocol.TCP, PortState.CLOSED, Reason.RESET, 0.5),
        PortResult(ADDRESSES[0], 8080, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK, 1.0),
    ]
    assert book.pending == 1 and book.undecided == 1
