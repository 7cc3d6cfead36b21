"""The Scanner: targets and ports in, a stream of PortResults out, a ScanReport at the end.

    >>> async with Scanner("localhost", "22,80") as results:   # doctest: +SKIP
    ...     async for r in results:
    ...         print(r.port, r.state)
    >>> report = scan("localhost", "22,80")                    # doctest: +SKIP

The Scanner owns the stream's lifecycle: it checks the options (``options``)
into a ``ScanPlan``, resolves targets, builds one engine per method, runs the
plan (``pipeline``: discovery, the engines, ``-sV``) behind a bounded channel
(``tally`` dedupes, names and records the verdicts) and builds the report.
Engines only probe (``contract``).

Decisions:

- Cancellation: leaving the ``async with`` block early, or cancelling the task
  that iterates, cancels the scan; engines close their sockets before the
  Scanner's ``__aexit__`` returns. ``scan_async`` re-raises ``CancelledError``
  (so ``asyncio.timeout`` and task groups work as everywhere in asyncio); the
  partial report is then ``scanner.report()`` of a Scanner you hold.
  The blocking ``scan`` turns Ctrl-C into the partial report with
  ``interrupted=True``, unless ``interrupt="raise"`` or the previous call
  already ended that way moments ago (a user pressing Ctrl-C again means stop).
- Host groups: targets are read lazily, a group at a time (``groups.py``);
  memory follows the group, and a finished group's hosts are folded, handed
  to ``on_host`` and (unless ``keep_hosts=False``) kept for the report. An
  interrupted scan reports the hosts it reached: those of finished groups and
  of the group in progress, with what they have; hosts never reached are left
  out (of a /0, the report holds what was scanned, not four billion unknowns).
- Shards: the probe space a shard splits is the target list *as given* times
  the ports, fixed before discovery, so every machine computes the same
  partition whatever its own discovery saw. Each machine still runs
  discovery; hosts it finds down are reported down and the verdicts of its
  probes to them are dropped. (Splitting only the live hosts would make the
  partition depend on each machine's view of the network: a probe could fall
  into no shard or into two.) Without a ``seed``, sharded scans use seed 0 so
  that the shards agree.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias, Unpack

from portlib.errors import PortlibError, ScanError, TargetSpecError
from portlib.model import HostResult, IPAddress, PortResult, Protocol, ScanMethod, ScanReport
from portlib.scanning import privilege
from portlib.scanning.channel import Channel, EndOfStream
from portlib.scanning.checkpoint import ScanCheckpoints, resumed_seed
from portlib.scanning.contract import ScanEngine
from portlib.scanning.engines import ENGINES
from portlib.scanning.interfaces import check_interface
from portlib.scanning.options import (
    METHOD_PROTOCOL,
    RAW_METHODS,
    HostCallback,
    ProgressCallback,
    SavedScan,
    ScanOptions,
    ScanPlan,
    check_callback,
    check_file_name,
    check_flag,
    check_targets,
    parse_methods,
    resolve_discovery,
    resolve_host_timeout,
    resolve_ports,
    resolve_seed,
    resolve_shard,
    resolve_timing,
)
from portlib.scanning.pipeline import (
    QUEUE_SIZE,
    ScanRun,
    detection_options,
    scan_channel,
)
from portlib.scanning.report import HostStatus
from portlib.scanning.tally import Tally
from portlib.scanning.timing import TimingProfile

if TYPE_CHECKING:
    from portlib.portspec import PortList
    from portlib.targets import TargetSet

REPEATED_INTERRUPT_S = 5.0  # a Ctrl-C this soon after one that ended a scan() stops the caller

Targets: TypeAlias = "str | Sequence[str | IPAddress] | TargetSet"
Ports: TypeAlias = "str | Iterable[int] | PortList | None"


async def resolve_targets(targets: Targets, exclude: str | None) -> TargetSet:
    """The targets as a (lazy) TargetSet, names resolved without blocking the loop."""
    from portlib.targets import parse_targets_async

    given = parsed_or_spec(targets, exclude)
    return given if not isinstance(given, str) else await parse_targets_async(given, exclude)


def parsed_or_spec(targets: Targets, exclude: str | None) -> TargetSet | str:
    """``targets`` as given: a TargetSet already parsed, or the spec to parse."""
    from portlib.targets import TargetSet

    if isinstance(targets, TargetSet):
        if exclude is not None:
            raise ScanError("pass exclude to parse_targets, not with a parsed TargetSet")
        return targets
    return targets if isinstance(targets, str) else " ".join(str(t) for t in targets)


class _BuiltOptions:
    """A Scanner's options as checked and resolved (read-only)."""

    _methods: tuple[ScanMethod, ...]
    _plan: ScanPlan

    @property
    def methods(self) -> tuple[ScanMethod, ...]:
        return self._methods

    @property
    def timing(self) -> TimingProfile:
        return self._plan.timing

    @property
    def ports(self) -> dict[Protocol, tuple[int, ...]]:
        """The ports each protocol will probe, in the given order."""
        return dict(self._plan.ports)

    @property
    def seed(self) -> int:
        return self._plan.seed

    @property
    def shard(self) -> tuple[int, int] | None:
        return self._plan.shard

    @property
    def host_timeout(self) -> float | None:
        """Seconds a host may take before it is given up (None: no limit)."""
        return self._plan.host_timeout


class Scanner(_BuiltOptions):
    """A scan as an async stream of PortResults; see the module doc for the decisions.

    ``targets``: a spec string (``"192.0.2.0/28, localhost"``), a list of specs or
    addresses, or a ``TargetSet``. ``ports``: a spec (``"22,80,1000-2000"``,
    ``"T:80,U:53"``), a list of ints, a ``PortList``, or None for the top 1000.
    The keyword options (method, timing, discovery, shards, ``on_host``, ``fold``,
    checkpoints...) are described once, at ``portlib.scanning.options.ScanOptions``.

    Every bad option raises a ``PortlibError`` from the constructor (targets: from
    ``async with``), before any probe is sent.

    Example (leaving the loop early stops the scan)::

        import asyncio
        import portlib

        async def first_open() -> None:
            async with portlib.Scanner("127.0.0.1", "1-10000") as results:
                async for r in results:
                    if r.state == "open":
                        print(r.port, r.service)  # 8000 http-alt
                        break
            print(results.report().interrupted)  # True

        asyncio.run(first_open())
    """

    def __init__(
        self,
        targets: Targets,
        ports: Ports = None,
        *,
        method: ScanMethod | str | Sequence[ScanMethod | str] = "connect",
        timing: int | TimingProfile = 3,
        timeout: float | None = None,
        retries: int | None = None,
        rate: float | None = None,
        min_rate: float | None = None,
        concurrency: int | None = None,
        discovery: bool | str = True,
        seed: int | None = None,
        shard: tuple[int, int] | str | None = None,
        sequential: bool = False,
        host_timeout: float | None = None,
        interface: str | None = None,
        exclude: str | None = None,
        on_progress: ProgressCallback | None = None,
        on_host: HostCallback | None = None,
        keep_hosts: bool = True,
        fold: bool = True,
        checkpoint: str | None = None,
        resume: SavedScan | None = None,
        args: Sequence[str] = (),
        versions: bool = False,
        version_intensity: int = 7,
    ) -> None:
        self._methods = parse_methods(method)
        port_methods = tuple(m for m in self._methods if m is not ScanMethod.PING)
        protocols = tuple(METHOD_PROTOCOL[m] for m in port_methods)
        resolved_shard = resolve_shard(shard)
        self._plan = ScanPlan(
            port_methods=port_methods,
            ports=resolve_ports(ports, protocols) if protocols else {},
            timing=resolve_timing(
                timing,
                timeout=timeout,
                retries=retries,
                rate=rate,
                concurrency=concurrency,
                min_rate=min_rate,
            ),
            seed=resolve_seed(resumed_seed(seed, resume), resolved_shard, secrets.randbits(63)),
            shard=resolved_shard,
            sequential=check_flag("sequential", sequential),
            discovery=resolve_discovery(discovery),
            host_timeout=resolve_host_timeout(host_timeout, resolved_shard),
            detection=detection_options(versions, version_intensity),
            interface=check_interface(interface),
            fold=check_flag("fold", fold),
        )
        check_callback("on_progress", on_progress)
        check_callback("on_host", on_host)
        self._on_host = on_host
        self._keep_hosts = check_flag("keep_hosts", keep_hosts)
        self._checkpoint, self._resume = check_file_name("checkpoint", checkpoint), resume
        self._checkpoints: ScanCheckpoints | None = None
        self._targets_arg = targets
        self._exclude = exclude
        self._args = tuple(args)
        check_targets(targets)
        # Filled while scanning:
        self._targets: TargetSet | None = None
        self._hosts: list[HostResult] = []  # finished, in target order (if kept)
        self._run: ScanRun | None = None
        self._tally = Tally(on_progress)
        self._channel: Channel[PortResult] | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._started: _dt.datetime | None = None
        self._t0 = 0.0
        self._elapsed: float | None = None
        self._finished = False  # the consumer saw the end of the stream
        self._completed = False  # the scan decided everything it set out to
        self._engines: list[ScanEngine] = []

    @property
    def started(self) -> bool:
        """Whether the scan has started (``async with`` entered)."""
        return self._started is not None

    @property
    def progress(self) -> tuple[int, int]:
        """(verdicts so far, verdicts expected); total is 0 until discovery ends."""
        return (self._tally.done, self._tally.total)

    @property
    def started_at(self) -> _dt.datetime | None:
        """When the scan started (``async with`` entered), None before."""
        return self._started

    @property
    def host_statuses(self) -> dict[IPAddress, HostStatus]:
        """Discovery's verdict per host so far: the finished hosts (when kept) and
        the host group in progress."""
        statuses = {h.address: HostStatus(h.state, h.reason, h.latency) for h in self._hosts}
        current = self._run.current if self._run is not None else None
        if current is not None:
            statuses.update(current.statuses)
        return statuses

    # -- the stream -------------------------------------------------------
    async def __aenter__(self) -> Scanner:
        if self._task is not None:
            raise ScanError("a Scanner runs once; make a new one to scan again")
        self._targets = await resolve_targets(self._targets_arg, self._exclude)
        if not self._targets:
            raise TargetSpecError("no targets left to scan (all excluded?)")
        raw = sorted(m.value for m in self._plan.port_methods if m in RAW_METHODS)
        if raw:
            privilege.require_raw_privilege(f"method {', '.join(raw)}")
        self._engines = [ENGINES[m](m) for m in self._plan.port_methods]
        self._channel = scan_channel(self._plan.detection)
        self._started = _dt.datetime.now(_dt.UTC)
        self._t0 = time.perf_counter()
        self._task = asyncio.create_task(self._produce(), name="portlib-scan")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the scan (if still running) and wait until every socket is closed."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Our own cancel of the scan task; re-raise only if *we* are being cancelled.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self._channel is not None:
            self._channel.close()  # iterating after the block ends at once, never hangs
        self._stop_clock()

    def __aiter__(self) -> AsyncIterator[PortResult]:
        return self

    async def __anext__(self) -> PortResult:
        channel = self._channel
        if channel is None:
            raise ScanError("use the Scanner inside 'async with Scanner(...) as results'")
        if len(channel):
            return channel.get_nowait()
        try:
            return await channel.receive()
        except EndOfStream:
            if self._error is not None and not self._finished:
                self._finished = True
                raise self._error from self._error.__cause__
            self._finished = True
            raise StopAsyncIteration from None

    def _stop_clock(self) -> None:
        if self._elapsed is None and self._started is not None:
            self._elapsed = time.perf_counter() - self._t0

    def report(self) -> ScanReport:
        """The report of what the scan decided; ``interrupted`` unless it ran to the end."""
        if self._started is None:
            raise ScanError("the scan has not started: use 'async with Scanner(...)' first")
        elapsed = self._elapsed if self._elapsed is not None else time.perf_counter() - self._t0
        completed = self._completed and self._error is None
        before = self._checkpoints
        return ScanReport(
            hosts=tuple(self._hosts),
            method=self._methods[0],
            started=self._started if before is None else before.started,
            elapsed=elapsed if before is None else before.elapsed_before + elapsed,
            protocols=self._plan.protocols,
            ports_per_host=self._plan.ports_per_host,
            args=self._args,
            interrupted=not completed,
            probes_sent=sum(e.probes_sent for e in self._engines)
            + (0 if before is None else before.probes_before),
        )

    # -- the producer -----------------------------------------------------
    async def _produce(self) -> None:
        assert self._channel is not None
        try:
            await self._scan()
            self._completed = True
        except PortlibError as exc:
            self._error = exc
        except OSError as exc:
            self._error = ScanError(f"the scan failed: {exc}")
            self._error.__cause__ = exc
        except Exception as exc:  # a bug: hand it to the consumer as itself, never hang it
            self._error = exc
        finally:  # cancelled too: the hosts in progress are finished with what they have
            if self._run is not None:
                self._run.finish_current()
        self._stop_clock()
        self._channel.close()

    async def _scan(self) -> None:
        assert self._channel is not None and self._targets is not None
        checkpoints = None
        if self._checkpoint is not None or self._resume is not None:
            assert self._started is not None
            checkpoints = self._checkpoints = ScanCheckpoints(
                self._checkpoint, self._resume, self._plan, argv=self._args,
                target_count=self._targets.size, started=self._started,
            )  # fmt: skip
            self._finish_hosts(list(checkpoints.saved_hosts))  # what earlier runs found
        self._run = ScanRun(
            self._plan,
            self._engines,
            self._tally,
            self._channel,
            self._finish_hosts,
            self._targets.size,
            group_hosts=None if checkpoints is None else checkpoints.group_hosts,
            first_group=0 if checkpoints is None else checkpoints.first_group,
            on_group=None if checkpoints is None else self._save_group,
        )
        checkpoints = self._checkpoints
        first = 0 if checkpoints is None else checkpoints.first_group * checkpoints.group_hosts
        try:
            await self._run.run((t.address, t.hostname) for t in self._targets.iter_from(first))
        finally:
            if checkpoints is not None:
                checkpoints.close()

    def _save_group(self, index: int, hosts: list[HostResult]) -> None:
        assert self._checkpoints is not None
        self._checkpoints.group_done(index, hosts, self.report())

    def _finish_hosts(self, hosts: list[HostResult]) -> None:
        if self._keep_hosts:
            self._hosts.extend(hosts)
        if self._on_host is not None:
            for host in hosts:
                self._on_host(host)


async def scan_async(
    targets: Targets, ports: Ports = None, **options: Unpack[ScanOptions]
) -> ScanReport:
    """Scan and return the whole report (options as for ``Scanner``).

    Cancelling the awaiting task cancels the scan and re-raises ``CancelledError``,
    as asyncio code expects; hold a ``Scanner`` yourself to keep its partial report.

    Example:

    >>> import portlib
    >>> report = await portlib.scan_async("localhost", [8000])  # doctest: +SKIP
    >>> report.open_ports()[0].port  # doctest: +SKIP
    8000
    """
    async with Scanner(targets, ports, **options) as results:
        async for _ in results:
            pass
    return results.report()


_last_interrupted_return: float | None = None  # when scan() last turned Ctrl-C into a report


def scan(
    targets: Targets,
    ports: Ports = None,
    *,
    interrupt: Literal["report", "raise"] = "report",
    **options: Unpack[ScanOptions],
) -> ScanReport:
    """Blocking scan (options as for ``Scanner``); Ctrl-C returns the partial report.

    With ``interrupt="raise"`` Ctrl-C propagates as ``KeyboardInterrupt``. It
    propagates too when the previous ``scan()`` ended by Ctrl-C less than
    ``REPEATED_INTERRUPT_S`` ago, so a script that loops over scans stops on a
    second Ctrl-C. Inside a running event loop it refuses (``ScanError``): use
    ``await scan_async``.

    Example:

    >>> import portlib
    >>> report = portlib.scan("localhost", "22,8000-8010")  # doctest: +SKIP
    >>> [(p.port, p.state.value, p.service) for p in report.open_ports()]  # doctest: +SKIP
    [(8000, 'open', 'http-alt')]
    """
    global _last_interrupted_return
    if interrupt not in ("report", "raise"):
        raise ScanError(f"interrupt must be 'report' or 'raise', not {interrupt!r}")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ScanError(
            "scan() cannot run inside a running event loop; use 'await portlib.scan_async(...)'"
        )
    scanner = Scanner(targets, ports, **options)

    async def consume() -> None:
        async with scanner as results:
            async for _ in results:
                pass

    try:
        asyncio.run(consume())
    except KeyboardInterrupt:
        previous = _last_interrupted_return
        repeated = previous is not None and time.monotonic() - previous < REPEATED_INTERRUPT_S
        if interrupt == "raise" or repeated or not scanner.started:
            raise
        _last_interrupted_return = time.monotonic()
    return scanner.report()


__all__ = ["ENGINES", "QUEUE_SIZE", "Scanner", "scan", "scan_async"]
