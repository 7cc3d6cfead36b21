"""Pure: what every nmap-style output shows of a host's ports, by nmap's fold rule.

A host from a scan comes already folded (``HostResult.extra_ports``); one built by
hand, read from an old file or scanned with ``fold=False`` may list every port.
Either way the outputs apply :func:`portlib.folding.fold_ports` to what is still
listed, merged with what was folded before, so the XML, grepable and human
outputs agree on what is shown and every folded state is one
:class:`~portlib.model.FoldedPorts` (state, reasons, port ranges).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import is_

from portlib.folding import IGNORE_ABOVE, fold_ports
from portlib.folding import PROTOCOL_ORDER as _PROTOCOL_ORDER
from portlib.model import FoldedPorts, HostResult, PortResult, PortState
from portlib.output.columns import PortColumns, remembered, take


@dataclass(frozen=True, slots=True)
class PortSummary:
    """A host's ports split into those listed one by one (in :func:`port_order`) and
    the folded states (most ports first)."""

    shown: tuple[PortResult, ...]
    folded: tuple[FoldedPorts, ...]

    def folded_count(self) -> int:
        return sum(f.count for f in self.folded)


def port_order(result: PortResult) -> tuple[int, int]:
    """Sort key: protocol (TCP before UDP), then port number."""
    return (_PROTOCOL_ORDER.get(result.protocol, len(_PROTOCOL_ORDER)), result.port)


def summarise(
    ports: Sequence[PortResult],
    extra: Sequence[FoldedPorts] = (),
    ignore_above: int = IGNORE_ABOVE,
) -> PortSummary:
    """Split ``ports`` (one host's, with the states it has folded already) into shown
    ports and folded states, nmap's way.

    >>> from ipaddress import ip_address
    >>> from portlib.model import Reason
    >>> def closed(n): return PortResult(ip_address("127.0.0.1"), n, Protocol.TCP,
    ...                                   PortState.CLOSED, Reason.CONN_REFUSED)
    >>> s = summarise([closed(n) for n in range(1, 31)])
    >>> (len(s.shown), s.folded[0].state.value, s.folded[0].count)
    (0, 'closed', 30)
    """
    shown, folded = fold_ports(ports, extra, ignore_above=ignore_above)
    return PortSummary(_in_port_order(PortColumns(shown)), folded)


def summary_of(host: HostResult, *, all_ports: bool = False) -> PortSummary:
    """``summarise`` of ``host``, computed once per host however many outputs ask;
    with ``all_ports`` every port listed, the folded ones expanded (``--all-ports``)."""
    if all_ports:
        if not host.extra_ports:
            compute = partial(_listed_as_is, host.ports)
        else:
            compute = partial(_listed_as_is, host.all_ports())
        return remembered(host, "every port", compute)
    return remembered(host, "summary", partial(summarise, host.ports, host.extra_ports))


def _listed_as_is(ports: Sequence[PortResult]) -> PortSummary:
    return PortSummary(_in_port_order(PortColumns(ports)), ())


def host_has_state(host: HostResult, states: Iterable[PortState]) -> bool:
    """Whether any of ``host``'s ports, listed or folded, is in one of ``states``."""
    wanted = frozenset(states)
    if any(f.state in wanted for f in host.extra_ports):
        return True
    return not wanted.isdisjoint(PortColumns(host.ports).states)


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


def spec_ranges(spec: str) -> list[tuple[int, int]]:
    """The ``(first, last)`` ranges of a port list, without expanding them (so a reader
    can count what a list would become before building it); ``ValueError`` on anything
    but what :func:`portlib.portspec.ranges_text` writes.

    >>> spec_ranges("1-3,80")
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
    return [n for lo, hi in spec_ranges(spec) for n in range(lo, hi + 1)]


def _port_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise ValueError(f"{text[:20]!r} is not a port number (0-65535)")
    return int(text)
