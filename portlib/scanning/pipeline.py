"""What one scan does, in order: discovery, the engines' runs, then service detection.

The Scanner (``scanner.py``) owns the stream and the report; this module runs
the work a ``ScanPlan`` describes and says which hosts timed out. Every engine
run gets the same targets (one ``ScanWork`` per method) and its own ``emit``
from the scan's ``Tally``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portlib.errors import ScanError
from portlib.model import HostState, IPAddress, PortResult, Protocol, ScanMethod
from portlib.scanning.channel import Channel
from portlib.scanning.contract import ScanEngine, ScanWork
from portlib.scanning.discovery import discover
from portlib.scanning.options import METHOD_PROTOCOL, DiscoveryMode
from portlib.scanning.order import ProbeOrder
from portlib.scanning.report import HostStatus
from portlib.scanning.tally import Tally
from portlib.scanning.timing import TimingProfile

if TYPE_CHECKING:
    from portlib.scanning.versions.detect import DetectionOptions

QUEUE_SIZE = 1024  # verdicts buffered ahead of a slow consumer; engines wait beyond it


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """A scan's checked options: what to probe, how, and what to do afterwards."""

    port_methods: tuple[ScanMethod, ...]
    ports: dict[Protocol, tuple[int, ...]]
    timing: TimingProfile
    seed: int
    shard: tuple[int, int] | None
    sequential: bool
    discovery: DiscoveryMode
    host_timeout: float | None
    detection: DetectionOptions | None
    interface: str | None = None

    @property
    def ports_per_host(self) -> int:
        return sum(len(p) for p in self.ports.values())

    def works(self, hosts: tuple[IPAddress, ...]) -> list[ScanWork]:
        """One engine run's work per method, over ``hosts``."""
        return [
            ScanWork(
                hosts=hosts,
                ports=self.ports[METHOD_PROTOCOL[method]],
                protocol=METHOD_PROTOCOL[method],
                timing=self.timing,
                seed=self.seed,
                shard=self.shard,
                sequential=self.sequential,
                interface=self.interface,
            )
            for method in self.port_methods
        ]


async def run_plan(
    plan: ScanPlan,
    addresses: Sequence[IPAddress],
    engines: Sequence[ScanEngine],
    tally: Tally,
    channel: Channel[PortResult],
    statuses: dict[IPAddress, HostStatus],
) -> frozenset[IPAddress]:
    """Scan ``addresses`` as ``plan`` says, filling ``statuses`` and ``tally``.

    Returns the hosts whose host timeout passed before all their ports were decided.
    """
    tally.report_progress()  # (0, 0): discovery under way, the total is not known yet
    found = await discover(
        addresses, plan.timing, mode=plan.discovery, seed=plan.seed, interface=plan.interface
    )
    statuses.update(found)
    up = tuple(a for a in addresses if statuses[a].state is HostState.UP)
    if not plan.port_methods or not up:
        return frozenset()
    # Sharded: the space is every target, so all machines split it alike (the
    # Scanner's module doc); the verdicts on hosts found down are dropped.
    hosts = tuple(addresses) if plan.shard else up
    tally.dropped = frozenset(hosts) - frozenset(up)
    works = plan.works(hosts)
    tally.total = sum(_work_size(w) for w in works)
    tally.report_progress()
    from portlib.services import service_names

    runs = [
        engine.run(work, tally.emitter(service_names(work.protocol), channel))
        for engine, work in zip(engines, works, strict=True)
    ]
    started = time.monotonic()
    timed_out = await _port_scan(runs, plan, hosts, tally)
    if plan.detection is not None:
        left = (
            None if plan.host_timeout is None else plan.host_timeout - (time.monotonic() - started)
        )
        await _detect(channel, tally.results, plan.detection, left, timed_out)
    return timed_out


async def _port_scan(
    runs: list[Coroutine[Any, Any, None]],
    plan: ScanPlan,
    hosts: tuple[IPAddress, ...],
    tally: Tally,
) -> frozenset[IPAddress]:
    """The engines' runs; at ``host_timeout`` they stop, and unfinished hosts time out.

    Hosts are probed together (their probes interleave), so their clocks start
    together, when the port scan does.
    """
    try:
        async with asyncio.timeout(plan.host_timeout):
            await _run_all(runs)
    except TimeoutError:
        expected = plan.ports_per_host
        return frozenset(h for h in hosts if tally.decided_on(h) < expected)
    return frozenset()


async def _run_all(coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first error cancels the others and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from errors.exceptions[0].__cause__


async def _detect(
    channel: Channel[PortResult],
    record: list[PortResult],
    options: DetectionOptions,
    time_left: float | None,
    timed_out: frozenset[IPAddress],
) -> None:
    """``-sV`` on the open ports the port scan held back, within what the host timeout left."""
    from portlib.scanning.versions.stage import detect_held

    if time_left is not None:
        left = max(0.0, time_left)
        cap = options.host_timeout
        options = dataclasses.replace(options, host_timeout=left if cap is None else min(cap, left))
    await detect_held(channel, record, options, timed_out)


def detection_options(versions: bool, intensity: int) -> DetectionOptions | None:
    """``versions``/``version_intensity`` checked; None when the scan detects nothing."""
    if not isinstance(versions, bool):
        raise ScanError(f"versions must be True or False, not {versions!r}")
    if not versions:
        return None
    from portlib.scanning.versions.detect import DetectionOptions

    return DetectionOptions(intensity=intensity)


def scan_channel(detection: DetectionOptions | None) -> Channel[PortResult]:
    """The channel a scan streams through: with ``-sV``, open verdicts wait for detection."""
    if detection is None:
        return Channel(QUEUE_SIZE)
    from portlib.scanning.versions.stage import OpenHeldChannel

    return OpenHeldChannel(QUEUE_SIZE)


def _work_size(work: ScanWork) -> int:
    size = len(work.hosts) * len(work.ports)
    if work.shard is None:
        return size
    return ProbeOrder(size, seed=work.seed, shard=work.shard).count
