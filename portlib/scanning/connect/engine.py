"""``ConnectEngine``: sizes a connect scan, runs it here or over worker processes."""

from __future__ import annotations

import asyncio
import os
import resource
from ipaddress import IPv4Address, IPv6Address

from portlib.errors import ParseError, ScanError
from portlib.model import Protocol, ScanMethod
from portlib.ports import port_ranges
from portlib.scanning.connect.core import ConnectCore, Counts, port_results
from portlib.scanning.connect.workers import WorkerPool
from portlib.scanning.contract import Emit, ScanWork
from portlib.scanning.wakeup import Wakeup

_FD_HEADROOM = 32  # descriptors left for the rest of the process (and the scanner)
_DEFAULT_EPHEMERAL = range(32768, 61000)  # the kernel's default ip_local_port_range
_WORKER_MIN_PROBES = 10_000  # fewer probes are done sooner than workers start
_MAX_WORKERS = 8


def descriptor_budget() -> int:
    """How many sockets this process may open for probes: RLIMIT_NOFILE minus what is used."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    headroom = max(_FD_HEADROOM, soft // 16)
    return max(4, soft - in_use - headroom)


def ephemeral_port_count() -> int:
    """Size of the kernel's ephemeral port range (in-flight probes must stay well below)."""
    try:
        return len(port_ranges().ephemeral)
    except ParseError:
        return len(_DEFAULT_EPHEMERAL)


class ConnectEngine:
    """TCP connect scan engine (``-sT``): needs no privileges.

    ``max_sockets`` lowers the socket budget read from ``RLIMIT_NOFILE`` and the
    ephemeral port range. ``workers``: processes that probe (None: one per CPU
    for scans of 10,000 probes or more that are not paced by ``rate`` or a scan
    delay, else 1; 1 keeps everything in this process).
    """

    def __init__(
        self,
        method: ScanMethod = ScanMethod.CONNECT,
        *,
        max_sockets: int | None = None,
        workers: int | None = None,
    ) -> None:
        if method is not ScanMethod.CONNECT:
            raise ScanError(f"ConnectEngine does connect scans only, not {method}")
        if workers is not None and workers < 1:
            raise ScanError(f"workers must be 1 or more, not {workers!r}")
        self.method = method
        self.max_sockets = max_sockets
        self.workers = workers
        self.probes_sent = 0
        self.self_connects = 0  # connections to ourselves caught (and called closed)
        self.resource_stalls = 0  # probes put back because a local resource ran out

    def resource_cap(self, share: int = 1) -> int:
        """Sockets one process may hold in flight; ``share`` processes split the ports."""
        cap = min(descriptor_budget(), ephemeral_port_count() // (2 * share))
        if self.max_sockets is not None:
            cap = min(cap, max(1, self.max_sockets // share))
        return max(1, cap)

    def worker_count(self, work: ScanWork) -> int:
        if self.workers is not None:
            return self.workers
        profile = work.timing
        paced = profile.rate is not None or profile.scan_delay > 0
        probes = len(work.hosts) * len(work.ports)
        if work.shard is not None:
            probes //= work.shard[1]
        if paced or probes < _WORKER_MIN_PROBES:
            return 1
        try:
            cpus = len(os.sched_getaffinity(0))
        except OSError:
            cpus = os.cpu_count() or 1
        workers = max(1, min(cpus, _MAX_WORKERS))
        if profile.max_parallelism is not None and profile.max_parallelism < 2 * workers:
            return 1  # a tight concurrency cap: splitting it buys nothing
        return workers

    async def run(self, work: ScanWork, emit: Emit) -> None:
        if work.protocol is not Protocol.TCP:
            raise ScanError(f"a connect scan probes TCP ports, not {work.protocol}")
        for host in work.hosts:
            if not isinstance(host, IPv4Address | IPv6Address):
                raise ScanError(f"not an IP address: {host!r}")
        if not work.hosts or not work.ports:
            return
        workers = self.worker_count(work)
        if workers == 1 or not await self._run_workers(work, emit, workers):
            await self._run_here(work, emit)

    def _count(self, counts: Counts) -> None:
        self.probes_sent += counts.sent
        self.self_connects += counts.self_connects
        self.resource_stalls += counts.stalls

    async def _run_here(self, work: ScanWork, emit: Emit) -> None:
        """The whole work (or its shard) in this process, on one epoll the loop watches."""
        core = ConnectCore.for_work(work, work.shard, self.resource_cap())
        loop = asyncio.get_running_loop()
        wakeup = Wakeup()
        epoll_fd = core.sockets.epoll.fileno()
        loop.add_reader(epoll_fd, wakeup.wake)
        try:
            while core.remaining > 0:
                decided = core.step()
                if decided:
                    for result in port_results(work, decided):
                        await emit(result)
                delay = core.wait_time()
                if delay is None:
                    await asyncio.sleep(0)  # a full batch went out: let the loop breathe
                elif delay > 0:
                    await wakeup.sleep(delay)
        finally:
            self._count(core.counts())
            loop.remove_reader(epoll_fd)
            core.close()

    async def _run_workers(self, work: ScanWork, emit: Emit, workers: int) -> bool:
        """The work over ``workers`` processes; False if they could not all be started."""
        first, shards = work.shard if work.shard is not None else (0, 1)
        # Shard i of n splits exactly into shards i + n*j of n*k (see portlib.scanning.order).
        sub_shards = [(first + shards * j, shards * workers) for j in range(workers)]
        sub_shards = [s for s in sub_shards if s[0] < len(work.hosts) * len(work.ports)]
        cap = self.resource_cap(len(sub_shards))
        if work.timing.max_parallelism is not None:  # the user's concurrency is for all
            cap = min(cap, max(1, -(-work.timing.max_parallelism // len(sub_shards))))
        pool = WorkerPool(work)
        try:
            if not pool.start(sub_shards, cap):
                return False  # nothing was emitted yet: the caller does it all here
            await pool.drain(emit)
            return True
        finally:
            pool.stop()
            self._count(pool.counts)


__all__ = ["ConnectEngine", "descriptor_budget", "ephemeral_port_count"]
