"""nmap's fold rule (portlib.folding) and the model's expansion of folded ports."""

from __future__ import annotations

import random
from ipaddress import ip_address

from hypothesis import given
from hypothesis import strategies as st

from portlib.folding import IGNORE_ABOVE, fold_ports
from portlib.model import (
    FoldedPorts,
    FoldedReason,
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    Reason,
)
from portlib.portspec import ranges_of

HOST = ip_address("192.0.2.7")
REASON_OF = {
    PortState.OPEN: Reason.SYN_ACK,
    PortState.CLOSED: Reason.RESET,
    PortState.FILTERED: Reason.NO_RESPONSE,
    PortState.OPEN_FILTERED: Reason.NO_RESPONSE,
}


def verdict(port: int, state: PortState, protocol: Protocol = Protocol.TCP) -> PortResult:
    return PortResult(HOST, port, protocol, state, REASON_OF[state])


def host_of(ports: list[PortResult]) -> HostResult:
    shown, folded = fold_ports(ports)
    return HostResult(HOST, None, HostState.UP, Reason.USER_SET, shown, extra_ports=folded)


def test_port_ranges_are_runs() -> None:
    assert ranges_of([]) == ()
    assert ranges_of([7]) == ((7, 7),)
    assert ranges_of([3, 1, 2, 9, 10, 65535]) == ((1, 3), (9, 10), (65535, 65535))


def test_open_is_never_folded_and_small_states_stay_listed() -> None:
    ports = [verdict(n, PortState.OPEN) for n in range(1, 40)]
    ports += [verdict(n, PortState.FILTERED) for n in range(100, 100 + IGNORE_ABOVE)]
    shown, folded = fold_ports(ports)
    assert shown == tuple(ports) and folded == ()


def test_a_state_over_the_limit_folds_by_reason_and_protocol() -> None:
    ports = [verdict(n, PortState.CLOSED) for n in range(1, 1001) if n not in (22, 80)]
    ports.append(PortResult(HOST, 53, Protocol.UDP, PortState.CLOSED, Reason.PORT_UNREACH))
    ports.remove(verdict(53, PortState.CLOSED))
    ports += [verdict(22, PortState.OPEN), verdict(80, PortState.FILTERED)]
    shown, folded = fold_ports(ports)
    assert [(p.port, p.state) for p in shown] == [(22, PortState.OPEN), (80, PortState.FILTERED)]
    (closed,) = folded
    assert closed.state is PortState.CLOSED and closed.count == 998
    tcp, udp = closed.reasons  # the commonest group first
    assert (tcp.reason, tcp.protocol) == (Reason.RESET, Protocol.TCP)
    assert tcp.ranges == ((1, 21), (23, 52), (54, 79), (81, 1000))
    assert (udp.reason, udp.protocol, udp.ranges) == (
        Reason.PORT_UNREACH,
        Protocol.UDP,
        ((53, 53),),
    )


def test_shared_folds_are_one_object() -> None:
    shared: dict[object, object] = {}
    first = fold_ports([verdict(n, PortState.CLOSED) for n in range(1, 101)], shared=shared)[1]
    again = fold_ports([verdict(n, PortState.CLOSED) for n in range(100, 0, -1)], shared=shared)[1]
    assert first == again and first[0] is again[0]


def test_already_folded_states_count_and_merge() -> None:
    before = FoldedPorts(PortState.CLOSED, (FoldedReason(Reason.RESET, Protocol.TCP, ((1, 30),)),))
    shown, folded = fold_ports(
        [verdict(31, PortState.CLOSED), verdict(32, PortState.OPEN)], [before]
    )
    assert [p.port for p in shown] == [32]
    assert folded[0].reasons[0].ranges == ((1, 31),)


@given(st.lists(st.sampled_from(list(REASON_OF)), min_size=0, max_size=300), st.randoms())
def test_fold_then_expand_gives_every_verdict_back(
    states: list[PortState], rng: random.Random
) -> None:
    numbers = rng.sample(range(1, 65536), len(states))
    protocols = [rng.choice((Protocol.TCP, Protocol.UDP)) for _ in states]
    ports = [verdict(n, s, p) for n, s, p in zip(numbers, states, protocols, strict=True)]
    host = host_of(ports)
    expected = sorted(ports, key=lambda p: (p.port, p.protocol is not Protocol.TCP))
    assert host.all_ports() == expected
    counts: dict[PortState, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    assert host.state_counts() == counts
    for folded in host.extra_ports:
        assert folded.state is not PortState.OPEN and folded.count > IGNORE_ABOVE
    listed: dict[PortState, int] = {}
    for port in host.ports:
        listed[port.state] = listed.get(port.state, 0) + 1
    assert all(n <= IGNORE_ABOVE or s is PortState.OPEN for s, n in listed.items())
