"""The Scanner: targets and ports in, a stream of PortResults out, a ScanReport at the end.

    >>> async with Scanner("localhost", "22,80") as results:   # doctest: +SKIP
    ...     async for r in results:
    ...         print(r.port, r.state)
    >>> report = scan("localhost", "22,80")                    # doctest: +SKIP

The Scanner owns everything around the probes: it validates the options,
resolves targets, runs host discovery, starts one engine per method (looked
up in ``ENGINES``, imported on first use so scapy loads only for raw
methods), names services, streams verdicts through a bounded queue and builds
the report. Engines only probe (see ``portlib.scanning.contract``).

Decisions:

- Cancellation: leaving the ``async with`` block early, or cancelling the task
  that iterates, cancels the scan; engines close their sockets before the
  Scanner's ``__aexit__`` returns. ``scan_async`` re-raises ``CancelledError``
  (so ``asyncio.timeout`` and task groups work as everywhere in asyncio); the
  partial report is then ``scanner.report()`` of a Scanner you hold.
  The blocking ``scan`` turns Ctrl-C into the partial report with
  ``interrupted=True``.
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
import importlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from portlib.errors import PortlibError, PortSpecError, PrivilegeError, ScanError, TargetSpecError
from portlib.model import (
    HostState,
    IPAddress,
    PortResult,
    Protocol,
    ScanMethod,
    ScanReport,
)
from portlib.scanning.channel import Channel, EndOfStream
from portlib.scanning.contract import ScanEngine, ScanWork
from portlib.scanning.discovery import DISCOVERY_MODES, DiscoveryMode, discover, has_raw_privilege
from portlib.scanning.report import HostStatus, build_report
from portlib.scanning.timing import TimingProfile, preset

if TYPE_CHECKING:
    from portlib.targets import PortList, TargetSet

# method -> "module:Class" of its engine; imported only when a scan uses it.
ENGINES: dict[ScanMethod, str] = {
    ScanMethod.CONNECT: "portlib.scanning.connect.engine:ConnectEngine",
    ScanMethod.SYN: "portlib.scanning.raw.engine:RawEngine",
    ScanMethod.ACK: "portlib.scanning.raw.engine:RawEngine",
    ScanMethod.UDP: "portlib.scanning.raw.engine:RawEngine",
}
METHOD_PROTOCOL: dict[ScanMethod, Protocol] = {
    ScanMethod.CONNECT: Protocol.TCP,
    ScanMethod.SYN: Protocol.TCP,
    ScanMethod.ACK: Protocol.TCP,
    ScanMethod.UDP: Protocol.UDP,
}
RAW_METHODS = frozenset({ScanMethod.SYN, ScanMethod.ACK, ScanMethod.UDP})
DEFAULT_TOP_PORTS = 1000
QUEUE_SIZE = 1024  # verdicts buffered ahead of a slow consumer; engines wait beyond it

ProgressCallback = Callable[[int, int], object]


def parse_methods(method: ScanMethod | str | Sequence[ScanMethod | str]) -> tuple[ScanMethod, ...]:
    """Validate ``method``: one TCP method (connect/syn/ack), optionally plus udp; or ping alone.

    The TCP method comes first, as nmap's ``-sS -sU`` scans TCP then UDP.
    """
    items = [method] if isinstance(method, str) else list(method)
    if not items:
        raise ScanError("no scan method given: use connect, syn, ack, udp or ping")
    methods: list[ScanMethod] = []
    for item in items:
        try:
            value = ScanMethod(str(item).lower())
        except ValueError:
            names = ", ".join(m.value for m in ScanMethod)
            raise ScanError(f"unknown scan method {item!r}: use one of {names}") from None
        if value not in methods:
            methods.append(value)
    if ScanMethod.PING in methods and len(methods) > 1:
        raise ScanError("method 'ping' (-sn) scans no ports and cannot be combined with others")
    tcp = [m for m in methods if METHOD_PROTOCOL.get(m) is Protocol.TCP]
    if len(tcp) > 1:
        raise ScanError(
            f"only one TCP method per scan, not {' and '.join(m.value for m in tcp)} "
            "(add 'udp' to scan UDP as well)"
        )
    return tuple(
        sorted(methods, key=lambda m: METHOD_PROTOCOL.get(m, Protocol.TCP) != Protocol.TCP)
    )


def resolve_timing(
    timing: int | TimingProfile,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
) -> TimingProfile:
    """The -T preset (or a given profile) with the user's overrides applied."""
    if isinstance(timing, TimingProfile):
        profile = timing
    elif isinstance(timing, int) and not isinstance(timing, bool):
        profile = preset(timing)
    else:
        raise ScanError(f"timing must be a level 0 to 5 or a TimingProfile, not {timing!r}")
    for name, value in (("timeout", timeout), ("rate", rate)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ScanError(f"{name} must be a number, not {value!r}")
    for name, value in (("retries", retries), ("concurrency", concurrency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ScanError(f"{name} must be an integer, not {value!r}")
    return profile.with_overrides(
        timeout=timeout, retries=retries, rate=rate, concurrency=concurrency
    )


def resolve_ports(
    ports: str | Iterable[int] | PortList | None, protocols: Sequence[Protocol]
) -> dict[Protocol, tuple[int, ...]]:
    """The ports to probe per protocol; None means nmap's default, the top 1000 of each."""
    from portlib.targets import PortList, parse_ports

    wanted: dict[Protocol, tuple[int, ...]] = {}
    if ports is None:
        from portlib.services import top_ports

        return {p: tuple(top_ports(DEFAULT_TOP_PORTS, p.value)) for p in protocols}
    if isinstance(ports, str):
        ports = parse_ports(ports)
    if isinstance(ports, PortList):
        by_protocol = {Protocol.TCP: tuple(ports.tcp), Protocol.UDP: tuple(ports.udp)}
        for protocol in protocols:
            wanted[protocol] = by_protocol[protocol]
    else:
        numbers: list[int] = []
        try:
            items = list(ports)
        except TypeError:
            raise PortSpecError(
                f"ports must be a spec string, a list of integers or a PortList, not {ports!r}"
            ) from None
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 65535:
                raise PortSpecError(f"bad port {item!r}: ports are integers 0-65535")
            if item not in numbers:
                numbers.append(item)
        wanted = dict.fromkeys(protocols, tuple(numbers))
    for protocol in protocols:
        if not wanted[protocol]:
            prefix = "U:" if protocol is Protocol.UDP else "T:"
            raise PortSpecError(
                f"no {protocol.value.upper()} ports to scan in {ports!r} "
                f"(give some, for example {prefix}53)"
            )
    return wanted


def _resolve_shard(shard: tuple[int, int] | str | None) -> tuple[int, int] | None:
    from portlib.scanning.order import ProbeOrder, parse_shard

    if shard is None:
        return None
    if isinstance(shard, str):
        return parse_shard(shard)
    return ProbeOrder(0, seed=0, shard=shard).shard  # validates (i, n)


def _resolve_discovery(discovery: bool | str) -> DiscoveryMode:
    if discovery is True:
        return "auto"
    if discovery is False:
        return "none"
    for mode in DISCOVERY_MODES:
        if discovery == mode:
            return mode
    raise ScanError(
        f"discovery must be True, False or one of {', '.join(DISCOVERY_MODES)}, not {discovery!r}"
    )


def load_engine(method: ScanMethod) -> ScanEngine:
    """Import and build the engine for ``method`` (from ``ENGINES``)."""
    module_name, _, class_name = ENGINES[method].partition(":")
    try:
        engine_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ScanError(f"the {method.value} scan engine is not available: {exc}") from exc
    engine: ScanEngine = engine_class(method)
    return engine


async def _run_all(coroutines: Sequence[Awaitable[None]]) -> None:
    """Run concurrently; the first error cancels the others and is raised as itself."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Scanner:
    """A scan as an async stream of PortResults; see the module doc for the decisions.

    ``targets``: a spec string (``"192.0.2.0/28, localhost"``), a list of specs or
    addresses, or a ``TargetSet``. ``ports``: a spec (``"22,80,1000-2000"``,
    ``"T:80,U:53"``), a list of ints, a ``PortList``, or None for the top 1000.
    ``method``: ``"connect"`` (default, no privileges), ``"syn"``, ``"ack"``,
    ``"udp"``, a list of one TCP method plus ``"udp"``, or ``"ping"`` (discovery
    only). ``timing``: 0-5 like ``-T``, or a ``TimingProfile``; ``timeout``,
    ``retries``, ``rate`` (probes/s), ``concurrency`` override it.
    ``discovery``: True (auto: raw pings when privileged, else connect to 80/443),
    False (``-Pn``: every host up), or ``"connect"``/``"raw"`` to force one.
    ``seed`` fixes the probe order; ``shard`` is ``(i, n)`` 0-based or ``"I/N"``
    1-based. ``on_progress(done, total)`` is called once with ``(0, 0)`` when
    discovery starts, then after every verdict. ``args`` (the command line, if
    any) is copied into the report.

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
        targets: str | Sequence[str | IPAddress] | TargetSet,
        ports: str | Iterable[int] | PortList | None = None,
        *,
        method: ScanMethod | str | Sequence[ScanMethod | str] = "connect",
        timing: int | TimingProfile = 3,
        timeout: float | None = None,
        retries: int | None = None,
        rate: float | None = None,
        concurrency: int | None = None,
        discovery: bool | str = True,
        seed: int | None = None,
        shard: tuple[int, int] | str | None = None,
        exclude: str | None = None,
        on_progress: ProgressCallback | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self._methods = parse_methods(method)
        self._port_methods = tuple(m for m in self._methods if m is not ScanMethod.PING)
        self._protocols = tuple(METHOD_PROTOCOL[m] for m in self._port_methods)
        self._timing = resolve_timing(
            timing, timeout=timeout, retries=retries, rate=rate, concurrency=concurrency
        )
        self._ports = resolve_ports(ports, self._protocols) if self._protocols else {}
        self._shard = _resolve_shard(shard)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ScanError(f"seed must be an integer, not {seed!r}")
        if seed is not None and not 0 <= seed < 2**64:
            raise ScanError(f"seed must be in 0 .. 2**64-1, not {seed}")
        self._seed = seed if seed is not None else (0 if self._shard else secrets.randbits(63))
        self._discovery = _resolve_discovery(discovery)
        if on_progress is not None and not callable(on_progress):
            raise ScanError(f"on_progress must be callable, not {on_progress!r}")
        self._targets_arg = targets
        self._exclude = exclude
        self._on_progress = on_progress
        self._args = tuple(args)
        self._check_target_type(targets)
        # Filled while scanning:
        self._target_list: list[tuple[IPAddress, str | None]] = []
        self._statuses: dict[IPAddress, HostStatus] = {}
        self._results: list[PortResult] = []
        self._dropped_hosts: frozenset[IPAddress] = frozenset()
        self._channel: Channel[PortResult] | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._started: _dt.datetime | None = None
        self._t0 = 0.0
        self._elapsed: float | None = None
        self._finished = False  # the consumer saw the end of the stream
        self._completed = False  # the scan decided everything it set out to
        self._done = 0
        self._total = 0
        self._engines: list[ScanEngine] = []

    # -- options as built -------------------------------------------------
    @property
    def methods(self) -> tuple[ScanMethod, ...]:
        return self._methods

    @property
    def timing(self) -> TimingProfile:
        return self._timing

    @property
    def ports(self) -> dict[Protocol, tuple[int, ...]]:
        """The ports each protocol will probe, in the given order."""
        return dict(self._ports)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def shard(self) -> tuple[int, int] | None:
        return self._shard

    @property
    def progress(self) -> tuple[int, int]:
        """(verdicts so far, verdicts expected); total is 0 until discovery ends."""
        return (self._done, self._total)

    @property
    def host_statuses(self) -> dict[IPAddress, HostStatus]:
        """Discovery's verdict per host so far."""
        return dict(self._statuses)

    @staticmethod
    def _check_target_type(targets: object) -> None:
        from portlib.targets import TargetSet

        if isinstance(targets, str | TargetSet):
            return
        if isinstance(targets, Sequence) and all(
            isinstance(t, str | IPv4Address | IPv6Address) for t in targets
        ):
            return
        raise TargetSpecError(
            f"targets must be a spec string, a list of specs or addresses, or a TargetSet, "
            f"not {targets!r}"
        )

    async def _resolve_targets(self) -> list[tuple[IPAddress, str | None]]:
        from portlib.targets import TargetSet, parse_targets_async

        targets = self._targets_arg
        if isinstance(targets, TargetSet):
            if self._exclude is not None:
                raise ScanError("pass exclude to parse_targets, not with a parsed TargetSet")
            target_set = targets
        else:
            spec = targets if isinstance(targets, str) else " ".join(str(t) for t in targets)
            target_set = await parse_targets_async(spec, self._exclude)
        return [(t.address, t.hostname) for t in target_set]

    # -- the stream -------------------------------------------------------
    async def __aenter__(self) -> Scanner:
        if self._task is not None:
            raise ScanError("a Scanner runs once; make a new one to scan again")
        self._target_list = await self._resolve_targets()
        if not self._target_list:
            raise TargetSpecError("no targets left to scan (all excluded?)")
        raw = {m for m in self._port_methods if m in RAW_METHODS}
        if raw and not has_raw_privilege():
            names = ", ".join(sorted(m.value for m in raw))
            raise PrivilegeError(
                f"method {names} needs CAP_NET_RAW (run as root, or grant the capability); "
                "method='connect' (portlib scan -sT) needs no privileges"
            )
        self._engines = [load_engine(m) for m in self._port_methods]
        self._channel = Channel(QUEUE_SIZE)
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
        return build_report(
            self._target_list,
            self._statuses,
            self._results,
            method=self._methods[0],
            protocols=self._protocols,
            started=self._started,
            elapsed=elapsed,
            ports_per_host=sum(len(p) for p in self._ports.values()),
            args=self._args,
            interrupted=not completed,
            probes_sent=sum(int(getattr(e, "probes_sent", 0) or 0) for e in self._engines),
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
        self._stop_clock()
        self._channel.close()

    async def _scan(self) -> None:
        addresses = [address for address, _ in self._target_list]
        self._report_progress()  # (0, 0): discovery under way, the total is not known yet
        statuses = await discover(addresses, self._timing, mode=self._discovery, seed=self._seed)
        self._statuses.update(statuses)
        up = tuple(a for a in addresses if self._statuses[a].state is HostState.UP)
        if not self._port_methods or not up:
            return
        # Sharded: the space is every target, so all machines split it alike (module doc).
        hosts = tuple(addresses) if self._shard else up
        self._dropped_hosts = frozenset(hosts) - frozenset(up)
        works = [
            ScanWork(
                hosts=hosts,
                ports=self._ports[METHOD_PROTOCOL[method]],
                protocol=METHOD_PROTOCOL[method],
                timing=self._timing,
                seed=self._seed,
                shard=self._shard,
            )
            for method in self._port_methods
        ]
        self._total = sum(self._work_size(w) for w in works)
        self._report_progress()
        runs = [
            e.run(w, self._emitter(w.protocol)) for e, w in zip(self._engines, works, strict=True)
        ]
        await _run_all(runs)

    def _work_size(self, work: ScanWork) -> int:
        size = len(work.hosts) * len(work.ports)
        if work.shard is None:
            return size
        from portlib.scanning.order import ProbeOrder

        return ProbeOrder(size, seed=work.seed, shard=work.shard).count

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._done, self._total)

    def _emitter(self, protocol: Protocol) -> _Emitter:
        """The ``emit`` for one engine run: dedupe, name the service, record, hand over."""
        from portlib.services import service_names

        assert self._channel is not None
        return _Emitter(self, service_names(protocol), self._channel)


class _Emitter:
    """Where one engine run's verdicts go: called per verdict, or ``many`` per batch.

    Per verdict cost matters on a 65535-port scan, so the hot path keeps its
    state in locals (the registry's port->name mapping, no enum hashing), and
    keeps the engine's result object when there is no name to add. Every
    verdict of a batch is recorded before the hand-over may wait, so a scan
    cancelled there still reports them.
    """

    __slots__ = ("_channel", "_names", "_scanner", "_seen", "_seen_by_id")

    def __init__(
        self, scanner: Scanner, names: Mapping[int, str], channel: Channel[PortResult]
    ) -> None:
        self._scanner = scanner
        self._names = names
        self._channel = channel
        # Ports decided so far, per host. The host's set is found by the address
        # object's identity first: engines pass the same object for every port
        # of a host, and hashing an ip_address runs Python code per call.
        self._seen: dict[IPAddress, set[int]] = {}
        self._seen_by_id: dict[int, tuple[IPAddress, set[int]]] = {}

    async def __call__(self, result: PortResult) -> None:
        await self.many((result,))

    async def many(self, batch: Sequence[PortResult]) -> None:
        scanner = self._scanner
        names = self._names
        seen = self._seen
        seen_by_id = self._seen_by_id
        dropped = scanner._dropped_hosts
        progress = scanner._on_progress
        record = scanner._results.append
        put = self._channel.put
        room = True
        for result in batch:
            host = result.host
            entry = seen_by_id.get(id(host))
            if entry is None or entry[0] is not host:
                entry = (host, seen.setdefault(host, set()))
                seen_by_id[id(host)] = entry  # the tuple keeps ``host`` (and its id) alive
            ports = entry[1]
            before = len(ports)
            ports.add(result.port)
            if len(ports) == before:
                continue  # an engine's late duplicate: each (host, port) is decided once
            scanner._done += 1
            if progress is not None:
                progress(scanner._done, scanner._total)
            if dropped and host in dropped:
                continue
            if result.service is None:
                name = names.get(result.port)
                if name is not None:  # most of a -p- scan has no name: keep the object
                    result = PortResult(
                        host,
                        result.port,
                        result.protocol,
                        result.state,
                        result.reason,
                        result.rtt,
                        name,
                    )
            record(result)
            room = put(result) and room
        if not room:
            await self._channel.wait_for_room()  # backpressure: the consumer is behind


async def scan_async(
    targets: str | Sequence[str | IPAddress] | TargetSet,
    ports: str | Iterable[int] | PortList | None = None,
    **options: Any,
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


def scan(
    targets: str | Sequence[str | IPAddress] | TargetSet,
    ports: str | Iterable[int] | PortList | None = None,
    **options: Any,
) -> ScanReport:
    """Blocking scan (options as for ``Scanner``); Ctrl-C returns the partial report.

    Inside a running event loop it refuses (``ScanError``): use ``await scan_async``.

    Example:

    >>> import portlib
    >>> report = portlib.scan("localhost", "22,8000-8010")  # doctest: +SKIP
    >>> [(p.port, p.state.value, p.service) for p in report.open_ports()]  # doctest: +SKIP
    [(8000, 'open', 'http-alt')]
    """
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
        if scanner._started is None:
            raise
    return scanner.report()


__all__ = [
    "ENGINES",
    "HostStatus",
    "Scanner",
    "parse_methods",
    "resolve_ports",
    "resolve_timing",
    "scan",
    "scan_async",
]
