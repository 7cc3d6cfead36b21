"""What one scan does, host group by host group: discovery, the engines' runs,
service detection, then the group's hosts are finished.

The Scanner (``scanner.py``) owns the stream and the report; this module runs
the work a ``ScanPlan`` describes (``ScanRun``). Every engine run of a group
gets the same hosts (one ``ScanWork`` per method) and its own ``emit`` from the
scan's ``Tally``. Groups (``groups.py``) keep memory to one group's verdicts and
let the first probe leave before the whole target list is read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portlib.errors import ScanError
from portlib.model import HostResult, HostState, IPAddress, PortResult
from portlib.scanning.channel import Channel
from portlib.scanning.contract import ScanEngine, ScanWork
from portlib.scanning.discovery import discover, discovery_timing
from portlib.scanning.groups import group_size, host_groups
from portlib.scanning.options import ScanPlan
from portlib.scanning.order import ProbeOrder
from portlib.scanning.report import HostStatus, build_hosts
from portlib.scanning.tally import Tally
from portlib.scanning.timing import LearnedTiming, RttEstimator

if TYPE_CHECKING:
    from portlib.scanning.versions.detect import DetectionOptions

QUEUE_SIZE = 1024  # verdicts buffered ahead of a slow consumer; engines wait beyond it
DISCOVERY_AHEAD = 3  # groups whose discovery may run at once, the current one included


@dataclass(slots=True)
class _Group:
    """One host group on its way through the scan."""

    targets: list[tuple[IPAddress, str | None]]
    statuses: dict[IPAddress, HostStatus] = field(default_factory=dict)
    timed_out: frozenset[IPAddress] = frozenset()


class ScanRun:
    """A scan's run over its host groups (``groups``), each group in turn:
    discovery (the next groups' runs during this group's port scan), one engine
    run per method, ``-sV``, then the group's hosts, folded, go to ``finish``
    and their verdicts are let go.

    ``finish_current`` hands over the group in progress as it stands, for a
    scan that ends early (cancelled, interrupted): nothing decided is lost.
    """

    def __init__(
        self,
        plan: ScanPlan,
        engines: Sequence[ScanEngine],
        tally: Tally,
        channel: Channel[PortResult],
        finish: Callable[[list[HostResult]], None],
        target_count: int,
        *,
        group_hosts: int | None = None,
        first_group: int = 0,
        on_group: Callable[[int, list[HostResult]], None] | None = None,
    ) -> None:
        self.plan = plan
        self.engines = engines
        self.tally = tally
        self.channel = channel
        self.finish = finish
        self.current: _Group | None = None
        self.group_hosts = group_hosts or group_size(plan.ports_per_host)
        self.first_group = first_group  # groups before it were done by an earlier run
        self.on_group = on_group  # (index, hosts) of each group finished in full
        self._unreached = target_count - first_group * self.group_hosts
        self._discovery_rtt = RttEstimator.for_profile(discovery_timing(plan.timing))
        self._learned = {m: LearnedTiming.for_profile(plan.timing) for m in plan.port_methods}
        self._known_work = 0  # verdicts expected of the groups reached

    async def run(self, targets: Iterator[tuple[IPAddress, str | None]]) -> None:
        groups = host_groups(targets, self.group_hosts)
        index = self.first_group
        self.tally.report_progress()  # (0, 0): discovery under way, the total is not known yet
        # The groups whose discovery has started, in order: a few run ahead, so a
        # stretch of silent groups is waited for together, not one after another.
        ahead: deque[tuple[_Group, asyncio.Task[None]]] = deque()
        try:
            while True:
                while len(ahead) < DISCOVERY_AHEAD and (targets_of := next(groups, None)):
                    ahead.append(self._discover(targets_of))
                if not ahead:
                    break
                group, discovery = ahead.popleft()
                self.current = group  # from here on, an interrupt reports this group
                await discovery  # the next groups' go on during this one's port scan
                await self._scan(group)
                hosts = self._finish(group)
                if self.on_group is not None:
                    self.on_group(index, hosts)
                index += 1
        finally:
            for _, discovery in ahead:
                discovery.cancel()
            if ahead:
                await asyncio.wait([discovery for _, discovery in ahead])

    def finish_current(self) -> None:
        if self.current is not None:
            self._finish(self.current)

    def _discover(
        self, targets: list[tuple[IPAddress, str | None]]
    ) -> tuple[_Group, asyncio.Task[None]]:
        """The group of ``targets`` and its discovery, started."""
        group = _Group(targets)
        return group, asyncio.create_task(self._discovered(group))

    async def _discovered(self, group: _Group) -> None:
        plan = self.plan
        addresses = [address for address, _ in group.targets]
        found = await discover(
            addresses,
            plan.timing,
            mode=plan.discovery,
            seed=plan.seed,
            interface=plan.interface,
            rtt=self._discovery_rtt,
        )
        group.statuses.update(found)

    async def _scan(self, group: _Group) -> None:
        plan, tally = self.plan, self.tally
        addresses = [address for address, _ in group.targets]
        up = tuple(a for a in addresses if group.statuses[a].state is HostState.UP)
        self._unreached -= len(addresses)
        if not plan.port_methods or not up:
            self._update_total()
            return
        # Sharded: the space is every target, so all machines split it alike (the
        # Scanner's module doc); the verdicts on hosts found down are dropped.
        hosts = tuple(addresses) if plan.shard else up
        tally.start_group(dropped=frozenset(hosts) - frozenset(up))
        works = plan.works(hosts, self._learned)
        self._known_work += sum(_work_size(w) for w in works)
        self._update_total()
        from portlib.services import service_names

        runs = [
            engine.run(work, tally.emitter(service_names(work.protocol), self.channel))
            for engine, work in zip(self.engines, works, strict=True)
        ]
        started = time.monotonic()
        group.timed_out = await _port_scan(runs, plan, hosts, tally)
        if plan.detection is not None:
            spent = time.monotonic() - started
            left = None if plan.host_timeout is None else plan.host_timeout - spent
            await _detect(self.channel, tally.results, plan.detection, left, group.timed_out)

    def _update_total(self) -> None:
        """Expected verdicts: those of the groups reached, and a share of the ports of
        every host not reached yet (a guess: discovery may find them down)."""
        shards = self.plan.shard[1] if self.plan.shard else 1
        guess = self._unreached * self.plan.ports_per_host // shards
        self.tally.total = self._known_work + guess
        self.tally.report_progress()

    def _finish(self, group: _Group) -> list[HostResult]:
        self.current = None
        hosts = build_hosts(
            group.targets,
            group.statuses,
            self.tally.results,
            protocols=self.plan.protocols,
            timed_out=group.timed_out,
            fold=self.plan.fold,
            shared={},
        )
        self.tally.results = []
        self.finish(hosts)
        return hosts


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
