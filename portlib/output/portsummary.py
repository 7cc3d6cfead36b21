"""Pure: how nmap's outputs order ports and fold the uninteresting majority away.

nmap lists every port of a host except those in an "ignored" state: a state
other than ``open`` shared by more than 25 of the host's ports (default
verbosity). Those are summarised instead ("Not shown: 997 closed tcp ports",
``<extraports>``, grepable's ``Ignored State``). The XML, grepable and human
outputs all use this one rule, so they agree on what is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import and_, is_, not_

from portlib.folding import IGNORE_ABOVE, count_members, folded_states, is_one_of
from portlib.folding import PROTOCOL_ORDER as _PROTOCOL_ORDER
from portlib.model import HostResult, PortResult, PortState, Protocol, Reason
from portlib.output.columns import PortColumns, columns_of, remembered, take


@dataclass(frozen=True, slots=True)
class ReasonGroup:
    """Ports of one ignored state that share a protocol and a reason."""

    reason: Reason
    protocol: Protocol
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IgnoredState:
    """One summarised state: how many ports, and why, grouped by reason and protocol."""

    state: PortState
    count: int
    reasons: tuple[ReasonGroup, ...]


@dataclass(frozen=True, slots=True)
class PortSummary:
    """A host's ports split into those listed one by one and the summarised states."""

    shown: tuple[PortResult, ...]
    ignored: tuple[IgnoredState, ...]


def port_order(result: PortResult) -> tuple[int, int]:
    """Sort key: protocol (TCP before UDP), then port number."""
    return (_PROTOCOL_ORDER.get(result.protocol, len(_PROTOCOL_ORDER)), result.port)


@dataclass(frozen=True, slots=True)
class Folding:
    """What every output shows of a host: the ports listed one by one (in
    :func:`port_order`) and the folded states with their counts, most ports first.
    A :class:`PortSummary` without the per-reason detail only XML writes."""

    shown: tuple[PortResult, ...]
    folded: tuple[tuple[PortState, int], ...]


def summarise(ports: Sequence[PortResult], ignore_above: int = IGNORE_ABOVE) -> PortSummary:
    """Split ``ports`` (one host's) into shown ports and ignored states, nmap's way.

    >>> from ipaddress import ip_address
    >>> def closed(n): return PortResult(ip_address("127.0.0.1"), n, Protocol.TCP,
    ...                                   PortState.CLOSED, Reason.CONN_REFUSED)
    >>> s = summarise([closed(n) for n in range(1, 31)])
    >>> (len(s.shown), s.ignored[0].state.value, s.ignored[0].count)
    (0, 'closed', 30)
    """
    columns = PortColumns(ports)
    return _summarise(columns, _fold(columns, ignore_above))


def folding_of(host: HostResult) -> Folding:
    """How ``host``'s ports fold (nmap's default rule), computed once per host."""
    return remembered(host, "folding", partial(_fold, columns_of(host), IGNORE_ABOVE))


def summary_of(host: HostResult) -> PortSummary:
    """``summarise(host.ports)``, computed once per host however many outputs ask."""
    compute = partial(_summarise, columns_of(host), folding_of(host))
    return remembered(host, "summary", compute)


def _fold(columns: PortColumns, ignore_above: int) -> Folding:
    # Of all rows only the states are read; numbers and protocols only of the rows
    # shown, to order them (filtering then a stable sort = the sort then filtering).
    counts = columns.state_counts()
    folded = folded_states(counts, ignore_above)
    if not folded:
        return Folding(_in_port_order(columns), ())
    hidden = is_one_of(columns.states, folded)
    shown = _in_port_order(PortColumns(compress(columns.ports, map(not_, hidden))))
    return Folding(shown, tuple((state, counts[state]) for state in folded))


def _summarise(columns: PortColumns, folding: Folding) -> PortSummary:
    ignored = []
    for state, count in folding.folded:
        rows = list(map(is_, columns.states, repeat(state)))
        groups = _reason_groups(
            tuple(compress(columns.numbers, rows)),
            tuple(compress(columns.protocols, rows)),
            tuple(compress(columns.reasons, rows)),
        )
        ignored.append(IgnoredState(state, count, groups))
    return PortSummary(folding.shown, tuple(ignored))


def _in_port_order(columns: PortColumns) -> tuple[PortResult, ...]:
    """``columns.ports`` stably sorted by :func:`port_order`; themselves when already
    so (a report's hosts keep their ports ascending, so checking first usually pays)."""
    if len(columns) < 2:
        return columns.ports
    numbers = columns.numbers
    by_number = numbers.__getitem__
    if columns.one_protocol():
        if columns.ascending():
            return columns.ports
        return take(columns.ports, sorted(range(len(columns)), key=by_number))
    order: list[int] = []
    for protocol in _PROTOCOL_ORDER:
        rows = list(compress(range(len(columns)), map(is_, columns.protocols, repeat(protocol))))
        ports = list(map(by_number, rows))
        order.extend(rows if ports == sorted(ports) else sorted(rows, key=by_number))
    if len(order) != len(columns):  # a protocol the table does not rank
        return tuple(sorted(columns.ports, key=port_order))
    return take(columns.ports, order)


def _reason_groups(
    numbers: tuple[int, ...], protocols: tuple[Protocol, ...], reasons: tuple[Reason, ...]
) -> tuple[ReasonGroup, ...]:
    """The ports of one state grouped by reason and protocol, each group ascending."""
    reason_counts = count_members(reasons)
    protocol_counts = count_members(protocols)
    if len(reason_counts) == 1 and len(protocol_counts) == 1:
        return (ReasonGroup(reasons[0], protocols[0], tuple(sorted(numbers))),)
    groups = []
    for reason in reason_counts:
        is_reason = list(map(is_, reasons, repeat(reason)))
        for protocol in protocol_counts:
            mask = map(and_, is_reason, map(is_, protocols, repeat(protocol)))
            ports = tuple(sorted(compress(numbers, mask)))
            if ports:
                groups.append(ReasonGroup(reason, protocol, ports))
    # The commonest reason first, as nmap's "Not shown: ... (conn-refused)" names it.
    groups.sort(key=lambda g: (-len(g.ports), _PROTOCOL_ORDER.get(g.protocol, 9), g.reason))
    return tuple(groups)


def port_ranges(spec: str) -> list[tuple[int, int]]:
    """The ``(first, last)`` ranges of a port list, without expanding them (so a reader
    can count what a list would become before building it); ``ValueError`` on anything
    but what :func:`portlib.portspec.compress_ports` writes.

    >>> port_ranges("1-3,80")
    [(1, 3), (80, 80)]
    """
    ranges: list[tuple[int, int]] = []
    if not spec.strip():
        return ranges
    for part in spec.split(","):
        first, sep, last = part.strip().partition("-")
        lo = _port_number(first)
        hi = _port_number(last) if sep else lo
        if hi < lo:
            raise ValueError(f"port range {part!r} runs backwards")
        ranges.append((lo, hi))
    return ranges


def expand_ports(spec: str) -> list[int]:
    """The inverse of ``portspec.compress_ports``; raises ``ValueError`` on anything else.

    >>> expand_ports("1-3,80")
    [1, 2, 3, 80]
    """
    return [n for lo, hi in port_ranges(spec) for n in range(lo, hi + 1)]


def _port_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise ValueError(f"{text[:20]!r} is not a port number (0-65535)")
    return int(text)
