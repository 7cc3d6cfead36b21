"""Pure: nmap's rule for which of a host's ports are listed and which are folded.

nmap lists every port of a host except those in an "ignored" state: a state
other than ``open`` shared by more than 25 of the host's ports (default
verbosity). Those are kept as counts and port ranges instead (``<extraports>``,
"Not shown: 997 closed tcp ports", grepable's ``Ignored State``). A scan folds
each host with this rule when the host is finished, so a host of a big scan
costs a few objects instead of one per port, and every output shows what the
rule decided.

    >>> from ipaddress import ip_address
    >>> from portlib.model import PortResult, PortState, Protocol, Reason
    >>> def port(n, state=PortState.CLOSED):
    ...     return PortResult(ip_address("192.0.2.1"), n, Protocol.TCP, state, Reason.RESET)
    >>> shown, folded = fold_ports([port(n) for n in range(1, 101) if n != 22] + [port(22, "open")])
    >>> [p.port for p in shown], folded[0].state.value, folded[0].reasons[0].ranges
    ([22], 'closed', ((1, 21), (23, 100)))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import compress, repeat
from operator import and_, attrgetter, is_, is_not, not_
from typing import TypeVar

from portlib.model import FoldedPorts, FoldedReason, PortResult, PortState, Protocol, Reason
from portlib.portspec import ranges_of

T = TypeVar("T")

IGNORE_ABOVE = 25
"""A non-open state with more ports than this (per host) is folded, as nmap does."""

PROTOCOL_ORDER: dict[Protocol, int] = {Protocol.TCP: 0, Protocol.UDP: 1, Protocol.RAW: 2}
"""nmap walks a host's ports protocol by protocol (TCP, then UDP), each ascending."""

Shared = dict[object, object]
"""Folds already made, so hosts folded alike share one object (a scan of many
similar hosts then holds each distinct fold once)."""

_PORT = attrgetter("port")
_PROTOCOL = attrgetter("protocol")
_STATE = attrgetter("state")
_REASON = attrgetter("reason")


def folded_states(
    counts: dict[PortState, int], ignore_above: int = IGNORE_ABOVE
) -> list[PortState]:
    """The states a host with these per-state ``counts`` folds, most ports first."""
    folded: list[PortState] = [
        s for s, n in counts.items() if s is not PortState.OPEN and n > ignore_above
    ]
    folded.sort(key=lambda state: (-counts[state], state))
    return folded


def fold_ports(
    ports: Sequence[PortResult],
    extra: Sequence[FoldedPorts] = (),
    *,
    ignore_above: int = IGNORE_ABOVE,
    shared: Shared | None = None,
) -> tuple[tuple[PortResult, ...], tuple[FoldedPorts, ...]]:
    """One host's ``ports`` split into those listed (in their given order) and the
    folded states; ``extra`` holds states the host already has folded, which count
    towards the rule and are merged into the result."""
    states = list(map(_STATE, ports))
    counts = count_members(states)
    for already in extra:
        counts[already.state] = counts.get(already.state, 0) + already.count
    folded = folded_states(counts, ignore_above)
    if not folded:
        return tuple(ports), tuple(extra)
    hidden = is_one_of(states, folded)
    shown = tuple(compress(ports, map(not_, hidden)))
    previous = {f.state: f for f in extra}
    result = []
    for state in folded:
        rows = list(compress(ports, map(is_, states, repeat(state))))
        before = previous.pop(state, None)
        result.append(_fold_state(state, rows, before, shared))
    result.extend(previous.values())  # folded before, though the rule would not now
    return shown, tuple(result)


def _fold_state(
    state: PortState,
    rows: list[PortResult],
    before: FoldedPorts | None,
    shared: Shared | None,
) -> FoldedPorts:
    reasons = list(map(_REASON, rows))
    protocols = list(map(_PROTOCOL, rows))
    numbers = list(map(_PORT, rows))
    groups: dict[tuple[Reason, Protocol], list[int]] = {}
    reason_counts = count_members(reasons)
    protocol_counts = count_members(protocols)
    if len(reason_counts) == 1 and len(protocol_counts) == 1:
        groups[(reasons[0], protocols[0])] = numbers
    else:
        for reason in reason_counts:
            is_reason = list(map(is_, reasons, repeat(reason)))
            for protocol in protocol_counts:
                mask = map(and_, is_reason, map(is_, protocols, repeat(protocol)))
                chosen = list(compress(numbers, mask))
                if chosen:
                    groups[(reason, protocol)] = chosen
    if before is not None:
        for group in before.reasons:
            groups.setdefault((group.reason, group.protocol), []).extend(group.ports())
    made = [
        _shared(shared, FoldedReason(reason, protocol, ranges_of(numbers)))
        for (reason, protocol), numbers in groups.items()
    ]
    # The commonest reason first, as nmap's "Not shown: ... (conn-refused)" names it.
    made.sort(key=lambda g: (-g.count, PROTOCOL_ORDER.get(g.protocol, 9), g.reason))
    return _shared(shared, FoldedPorts(state, tuple(made)))


def _shared(shared: Shared | None, value: T) -> T:
    if shared is None:
        return value
    kept = shared.setdefault(value, value)
    return kept  # type: ignore[return-value]


def count_members(column: Sequence[T]) -> dict[T, int]:
    """How often each value occurs in ``column``: like ``Counter(column)``, but nearly
    free for the usual column where one value (``closed``) fills almost every row."""
    if not column:
        return {}
    common = column[len(column) // 2]
    found = column.count(common)  # identity makes this nearly free
    if found == len(column):
        return {common: found}
    counts = Counter(compress(column, map(is_not, column, repeat(common))))
    counts[common] = found
    return dict(counts)


def is_one_of(column: Sequence[T], wanted: Sequence[T]) -> list[bool]:
    """A mask over ``column``: which entries are one of ``wanted`` (enum members)."""
    if len(wanted) == 1:
        return list(map(is_, column, repeat(wanted[0])))
    return list(map(frozenset(wanted).__contains__, column))
