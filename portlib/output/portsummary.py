"""Pure: how nmap's outputs order ports and fold the uninteresting majority away.

nmap lists every port of a host except those in an "ignored" state: a state
other than ``open`` shared by more than 25 of the host's ports (default
verbosity). Those are summarised instead ("Not shown: 997 closed tcp ports",
``<extraports>``, grepable's ``Ignored State``). The XML, grepable and human
outputs all use this one rule, so they agree on what is shown.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import and_, is_, not_

from portlib.model import HostResult, PortResult, PortState, Protocol, Reason
from portlib.output.columns import (
    PortColumns,
    columns_of,
    count_members,
    is_one_of,
    remembered,
)

IGNORE_ABOVE = 25
"""A non-open state with more ports than this (per host) is summarised, as nmap does."""

# nmap walks a host's ports protocol by protocol (TCP, then UDP), each ascending.
_PROTOCOL_ORDER: dict[Protocol, int] = {Protocol.TCP: 0, Protocol.UDP: 1, Protocol.RAW: 2}


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


def summarise(ports: Sequence[PortResult], ignore_above: int = IGNORE_ABOVE) -> PortSummary:
    """Split ``ports`` (one host's) into shown ports and ignored states, nmap's way.

    >>> from ipaddress import ip_address
    >>> def closed(n): return PortResult(ip_address("127.0.0.1"), n, Protocol.TCP,
    ...                                   PortState.CLOSED, Reason.CONN_REFUSED)
    >>> s = summarise([closed(n) for n in range(1, 31)])
    >>> (len(s.shown), s.ignored[0].state.value, s.ignored[0].count)
    (0, 'closed', 30)
    """
    return _summarise(PortColumns.of(ports), ignore_above)


def summary_of(host: HostResult) -> PortSummary:
    """``summarise(host.ports)``, computed once per host however many outputs ask."""
    return remembered(host, "summary", partial(_summarise, columns_of(host), IGNORE_ABOVE))


def ignored_states(
    counts: dict[PortState, int], ignore_above: int = IGNORE_ABOVE
) -> list[PortState]:
    """The states a host's ports are folded in, from its :meth:`PortColumns.state_counts`."""
    return [s for s, n in counts.items() if s is not PortState.OPEN and n > ignore_above]


def in_port_order(ports: Sequence[PortResult]) -> tuple[PortResult, ...]:
    """``ports`` stably sorted by :func:`port_order`."""
    return _ordered(PortColumns.of(ports)).ports


def _summarise(columns: PortColumns, ignore_above: int) -> PortSummary:
    ordered = _ordered(columns)
    counts = ordered.state_counts()
    folded = ignored_states(counts, ignore_above)
    if not folded:
        return PortSummary(ordered.ports, ())
    hidden = is_one_of(ordered.states, folded)
    shown = tuple(compress(ordered.ports, map(not_, hidden)))
    ignored = []
    for state in folded:
        of_state = hidden if len(folded) == 1 else list(map(is_, ordered.states, repeat(state)))
        groups = _reason_groups(
            tuple(compress(ordered.numbers, of_state)),
            tuple(compress(ordered.protocols, of_state)),
            tuple(compress(ordered.reasons, of_state)),
        )
        ignored.append(IgnoredState(state, counts[state], groups))
    ignored.sort(key=lambda s: (-s.count, s.state))
    return PortSummary(shown, tuple(ignored))


def _ordered(columns: PortColumns) -> PortColumns:
    """The rows stably sorted by :func:`port_order`; ``columns`` itself when already so
    (a report's hosts keep their ports ascending, so checking first usually pays)."""
    numbers = columns.numbers
    by_number = numbers.__getitem__
    if columns.one_protocol():
        if columns.ascending():
            return columns
        return columns.take(sorted(range(len(columns)), key=by_number))
    order: list[int] = []
    for protocol in _PROTOCOL_ORDER:
        rows = list(compress(range(len(columns)), map(is_, columns.protocols, repeat(protocol))))
        ports = list(map(by_number, rows))
        order.extend(rows if ports == sorted(ports) else sorted(rows, key=by_number))
    if len(order) != len(columns):  # a protocol the table does not rank
        rank = [_PROTOCOL_ORDER.get(p, len(_PROTOCOL_ORDER)) for p in columns.protocols]
        order = sorted(range(len(columns)), key=lambda i: (rank[i], numbers[i]))
    return columns.take(order)


def _reason_groups(
    numbers: tuple[int, ...], protocols: tuple[Protocol, ...], reasons: tuple[Reason, ...]
) -> tuple[ReasonGroup, ...]:
    """The ports of one state (columns in port order) grouped by reason and protocol."""
    reason_counts = count_members(reasons)
    protocol_counts = count_members(protocols)
    if len(reason_counts) == 1 and len(protocol_counts) == 1:
        return (ReasonGroup(reasons[0], protocols[0], numbers),)
    groups = []
    for reason in reason_counts:
        is_reason = list(map(is_, reasons, repeat(reason)))
        for protocol in protocol_counts:
            mask = map(and_, is_reason, map(is_, protocols, repeat(protocol)))
            ports = tuple(compress(numbers, mask))
            if ports:
                groups.append(ReasonGroup(reason, protocol, ports))
    # The commonest reason first, as nmap's "Not shown: ... (conn-refused)" names it.
    groups.sort(key=lambda g: (-len(g.ports), _PROTOCOL_ORDER.get(g.protocol, 9), g.reason))
    return tuple(groups)


def compress_ports(ports: Iterable[int]) -> str:
    """Ports as nmap writes lists of them: ascending, runs folded into ranges.

    >>> compress_ports([80, 1, 2, 3, 1080, 443, 2])
    '1-3,80,443,1080'
    """
    nums = sorted(set(ports))
    parts: list[str] = []
    first = 0
    while first < len(nums):
        # In an ascending list of distinct ints nums[i] - i never decreases, and a run
        # is where it stays the same: find the run's end by bisection, so a full range
        # with a few holes costs a few dozen steps, not one per port.
        offset = nums[first] - first
        run = partial(bisect_right, range(len(nums)), 0, first, len(nums))
        last = run(key=lambda i: nums[i] - i - offset) - 1
        parts.append(str(nums[first]) if first == last else f"{nums[first]}-{nums[last]}")
        first = last + 1
    return ",".join(parts)


def expand_ports(spec: str) -> list[int]:
    """The inverse of :func:`compress_ports`; raises ``ValueError`` on anything else.

    >>> expand_ports("1-3,80")
    [1, 2, 3, 80]
    """
    ports: list[int] = []
    if not spec.strip():
        return ports
    for part in spec.split(","):
        first, sep, last = part.strip().partition("-")
        lo = _port_number(first)
        hi = _port_number(last) if sep else lo
        if hi < lo:
            raise ValueError(f"port range {part!r} runs backwards")
        ports.extend(range(lo, hi + 1))
    return ports


def _port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return int(text)
