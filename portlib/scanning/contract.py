"""Pure: the contract between the Scanner and its probing engines (connect, raw).

The Scanner owns everything around the probes: parsing targets and ports,
host discovery, the result stream and the report. An engine only probes: it
takes a ``ScanWork`` and calls ``emit`` once per (host, port) with the verdict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from portlib.model import IPAddress, PortResult, Protocol
from portlib.scanning.timing import LearnedTiming, TimingProfile

Emit = Callable[[PortResult], Awaitable[None]]
"""Hands one verdict to the Scanner; awaiting it is the backpressure."""

EmitMany = Callable[[Sequence[PortResult]], Awaitable[None]]
"""Hands several verdicts at once (an engine that decides replies in batches)."""


def emit_many(emit: Emit) -> EmitMany:
    """The batch form of ``emit``: its own ``many`` attribute if it has one.

    The Scanner's emitter has one, which saves a coroutine per verdict on a
    -p- scan; any other callable is simply called once per verdict.
    """
    many: EmitMany | None = getattr(emit, "many", None)
    if many is not None:
        return many

    async def each(results: Sequence[PortResult]) -> None:
        for result in results:
            await emit(result)

    return each


@dataclass(frozen=True, slots=True)
class ScanWork:
    """What one engine run probes: every port of ``ports`` on every host of ``hosts``.

    ``seed`` fixes the randomized probe order; ``shard=(i, n)`` keeps only this
    shard's share of the host x port space; ``sequential`` probes in index order
    instead (see ``portlib.scanning.order``).
    """

    hosts: tuple[IPAddress, ...]
    ports: tuple[int, ...]
    protocol: Protocol
    timing: TimingProfile
    seed: int
    shard: tuple[int, int] | None = None
    sequential: bool = False
    interface: str | None = None  # send through this interface only (nmap's -e)
    learned: LearnedTiming | None = None  # earlier runs' timing, updated by this one


class ScanEngine(TypingProtocol):
    """An engine decides every (host, port) of the work exactly once.

    ``run`` returns when all are decided. Cancelling it must close every socket
    it opened before the ``CancelledError`` propagates. Errors it raises are
    ``PortlibError``s (``PrivilegeError`` when it lacks ``CAP_NET_RAW``).
    ``probes_sent`` counts the probes of every run so far (retries included);
    the report carries the sum over a scan's engines.
    """

    @property
    def probes_sent(self) -> int: ...

    async def run(self, work: ScanWork, emit: Emit) -> None: ...
