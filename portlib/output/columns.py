"""A host's port verdicts as columns, so the outputs walk 65535 verdicts in C, not Python.

A full-range scan gives one host 65535 PortResults, created in the scan's random
order and so scattered in memory: every Python-level pass over them costs a few
milliseconds. :class:`PortColumns` reads each attribute it is asked for once into a tuple
(``map(attrgetter(...))``, one C pass each); everything after that (counting,
masks, reordering) runs on those compact tuples with ``compress``/``map``.

:func:`remembered` keeps what was derived from a host (its columns, its summary)
while a :func:`sharing` block is open: one report written as normal, grepable and
XML output inside one block computes them once, and nothing outlives the block.
HostResult is frozen, so what was derived stays true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property, partial
from operator import attrgetter, itemgetter
from typing import TypeVar, cast

from portlib.folding import count_members
from portlib.model import HostResult, PortResult, PortState, Protocol, Reason

T = TypeVar("T")

_PORT = attrgetter("port")
_PROTOCOL = attrgetter("protocol")
_STATE = attrgetter("state")
_REASON = attrgetter("reason")

MEMO_FROM = 256
"""Hosts with fewer ports are cheap to recompute; only larger ones are remembered."""


class PortColumns:
    """``ports`` and, index for index, each one's number, protocol, state and reason.

    Each column is read (one C pass over the ports) the first time it is asked
    for, so an output that needs only the states pays for the states alone.
    """

    def __init__(self, ports: Iterable[PortResult]) -> None:
        self.ports = tuple(ports)

    def __len__(self) -> int:
        return len(self.ports)

    @cached_property
    def numbers(self) -> tuple[int, ...]:
        return tuple(map(_PORT, self.ports))

    @cached_property
    def protocols(self) -> tuple[Protocol, ...]:
        return tuple(map(_PROTOCOL, self.ports))

    @cached_property
    def states(self) -> tuple[PortState, ...]:
        return tuple(map(_STATE, self.ports))

    @cached_property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(map(_REASON, self.ports))

    def one_protocol(self) -> bool:
        """Whether every row has the same protocol (true when there are no rows)."""
        column = self.protocols
        return not column or column.count(column[0]) == len(column)

    def ascending(self) -> bool:
        """Whether the port numbers never go down (sorting plain ints is cheap)."""
        return list(self.numbers) == sorted(self.numbers)

    def state_counts(self) -> dict[PortState, int]:
        """How many rows are in each state."""
        return count_members(self.states)


def take(column: Sequence[T], order: Sequence[int]) -> tuple[T, ...]:
    """``column``'s entries at the indexes ``order``, in that order (one C call)."""
    if len(order) < 2:  # itemgetter of one index returns the item, not a tuple
        return tuple(column[i] for i in order)
    return cast(tuple[T, ...], itemgetter(*order)(column))


# ------------------------------------------------------------------ scoped memo

MEMO_HOSTS = 8
"""At most this many hosts are remembered at once (the most recently used ones), so
rendering a report of many large hosts does not hold derived data for all of them."""

# id(host) -> (the host, what was derived from it by name), oldest first. Holding the
# host itself keeps its id from being reused while the entry lives; the memo lives only
# inside ``sharing()``, so nothing outlives the rendering that needed it. A context
# variable gives every thread (and task) its own memo.
_Memo = dict[int, tuple[HostResult, dict[str, object]]]
_SCOPE: ContextVar[_Memo | None] = ContextVar("portlib_output_memo", default=None)


@contextmanager
def sharing() -> Iterator[None]:
    """Within this block, what the outputs derive from a host is computed once.

    Every renderer opens one, so a report written in one format walks each host's
    verdicts once; write several formats inside one block to share the work
    between them. Blocks nest (the outermost one holds the memo).
    """
    if _SCOPE.get() is not None:
        yield
        return
    token = _SCOPE.set({})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def remembered(host: HostResult, name: str, compute: Callable[[], T]) -> T:
    """``compute()``, remembered under ``name`` for ``host`` inside :func:`sharing`
    (among the :data:`MEMO_HOSTS` most recently used). Small hosts are not remembered.

    ``compute`` must depend on nothing but ``host`` (which is frozen).
    """
    memo = _SCOPE.get()
    if memo is None or len(host.ports) < MEMO_FROM:
        return compute()
    key = id(host)
    entry = memo.pop(key, None)
    if entry is None or entry[0] is not host:
        entry = (host, {})
    memo[key] = entry  # now the most recently used
    while len(memo) > MEMO_HOSTS:
        memo.pop(next(iter(memo)))
    values = entry[1]
    if name not in values:
        values[name] = compute()
    return cast(T, values[name])


def remembered_hosts() -> list[HostResult]:
    """The hosts the current :func:`sharing` block remembers, oldest first (for tests)."""
    memo = _SCOPE.get()
    return [] if memo is None else [host for host, _ in memo.values()]


def columns_of(host: HostResult) -> PortColumns:
    """``host.ports`` as columns, in the host's order; computed once per host."""
    return remembered(host, "columns", partial(PortColumns, host.ports))
