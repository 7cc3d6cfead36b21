"""One scan as shards on a Dask cluster: each shard a task running the ordinary scanner.

Needs the optional extra (``pip install 'portlib[dask]'``) on the machine that submits
and on every worker; ``import portlib`` never loads Dask.

    from dask.distributed import Client
    import portlib.distributed

    with Client("tcp://192.0.2.1:8786") as client:
        report = portlib.distributed.scan("198.18.0.0/22", "22,80,443", client=client)
    print(len(report.open_ports()))

Decisions:

- The partition is the scanner's own ``shard=(i, n)`` split of the target x port
  space with one seed for every shard, so the shards are disjoint and cover the
  whole space exactly (``portlib.scanning.order``). Targets are resolved once, here,
  so that every worker splits the same list.
- A shard is one Dask task. A worker lost mid-shard (killed, its machine gone) loses
  that task's result, and Dask runs the task again on another worker (up to the
  scheduler's ``allowed-failures``): the shard is scanned again from its start, so
  the merged report has each verdict exactly once. The target then receives the
  lost attempt's probes twice; nothing else is sent twice.
- Raw methods need ``CAP_NET_RAW`` on the workers, asked of every worker before any
  task is submitted: a missing privilege is a :class:`~portlib.errors.PrivilegeError`
  naming the workers, not a task that fails (or waits) somewhere later. With
  ``discovery`` left to choose (``True``), the workers all ping the same way: raw
  when every one of them may, connect otherwise.
- Workers must run the same portlib version as the caller: another version may split
  the space differently.
- Ctrl-C returns the partial report, as ``portlib.scan`` does: Dask cannot cancel a
  running task, so a Dask Event asks every shard to stop (each polls it), and each
  hands in what it decided (``interrupted``); shards not started yet return at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

from portlib.errors import PrivilegeError, ScanError, TargetSpecError
from portlib.model import ScanMethod, ScanReport
from portlib.version import __version__

if TYPE_CHECKING:
    from distributed import Client

    from portlib.scanning.options import ScanOptions
    from portlib.scanning.scanner import Ports, Scanner, Targets
    from portlib.targets import TargetSet

INSTALL_HINT = "pip install 'portlib[dask]'"
STOP_POLL_S = 0.5  # how often a shard asks whether it should stop
STOP_WAIT_S = 30.0  # how long stopped shards get to hand in what they decided
WAIT_POLL_S = 0.05  # how often the caller looks whether the shards are done
# option -> (the one value it may have here, why): what a distributed scan sets itself,
# or what cannot cross to a worker.
_NOT_HERE: dict[str, tuple[object, str]] = {
    "shard": (None, "a distributed scan makes the shards itself (give shards=N)"),
    "on_progress": (None, "a callback cannot run on the workers; the report arrives when "
                    "all shards are done"),
    "on_host": (None, "a callback cannot run on the workers; the hosts arrive when all "
                "shards are done"),
    "keep_hosts": (True, "the shards' hosts are what the merged report is made of"),
}  # fmt: skip


def require_dask() -> None:
    """Raise a clear :class:`ScanError` unless Dask's distributed scheduler can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ScanError(
            f"distributed scans need Dask ({exc}); install it with: {INSTALL_HINT}"
        ) from None


def scan(
    targets: Targets,
    ports: Ports = None,
    *,
    client: Client,
    shards: int | None = None,
    **options: Unpack[ScanOptions],
) -> ScanReport:
    """Scan ``targets`` x ``ports`` as ``shards`` Dask tasks on ``client``'s cluster; the
    merged report equals what ``portlib.scan`` with the same options would report.

    ``shards`` defaults to the number of worker threads (one shard each). ``options``
    are those of :func:`portlib.scan`, except ``shard``, the callbacks (``on_progress``,
    ``on_host``) and ``keep_hosts=False``; ``seed`` fixes the probe order of every shard
    (a random one is chosen when not given). Every bad option raises here, before any
    task is submitted. Ctrl-C returns what the shards decided, ``interrupted``.

    Example:

    >>> from dask.distributed import Client  # doctest: +SKIP
    >>> import portlib.distributed
    >>> with Client("tcp://192.0.2.1:8786") as client:  # doctest: +SKIP
    ...     report = portlib.distributed.scan("198.18.0.0/24", [22, 80], client=client,
    ...                                       method="syn", discovery=False)
    >>> len(report.hosts), len(report.open_ports())  # doctest: +SKIP
    (256, 256)
    """
    require_dask()
    from distributed import Client as DaskClient

    if not isinstance(client, DaskClient):
        raise ScanError(f"client must be a dask.distributed.Client, not {client!r}")
    given: Mapping[str, object] = options
    for name, (allowed, why) in _NOT_HERE.items():
        if given.get(name, allowed) != allowed:
            raise ScanError(f"{name}={given[name]!r} cannot go to a distributed scan: {why}")
    if shards is not None and (
        isinstance(shards, bool) or not isinstance(shards, int) or shards < 1
    ):
        raise ScanError(f"shards must be a whole number of at least 1, not {shards!r}")
    target_set = _resolve_targets(targets, options.pop("exclude", None))
    seed = options.pop("seed", None)
    if seed is None:
        seed = secrets.randbits(63)
    _check_options(target_set, ports, seed, options)
    facts = _worker_facts(client)
    count = shards if shards is not None else _thread_count(client, facts)
    if options.get("discovery", True) is True and not all(f.raw_privilege for f in facts.values()):
        # Pinged alike by every shard: "auto" would pick raw pings on some workers only.
        options["discovery"] = "connect"
    _check_privilege(options, facts)
    return _run_shards(client, target_set, ports, count, seed, dict(options))


@dataclass(frozen=True, slots=True)
class WorkerFacts:
    """What :func:`scan` asks each worker before submitting: is it fit to run a shard?"""

    version: str  # of portlib there
    raw_privilege: bool  # may it send raw packets (CAP_NET_RAW)
    name: str  # the worker's --name, "" when it has none of its own


def worker_facts(dask_worker: Any = None) -> WorkerFacts:
    """Run on each worker by :func:`scan`; Dask passes the worker itself as ``dask_worker``."""
    from portlib.scanning.privilege import has_raw_privilege

    name = getattr(dask_worker, "name", None)
    return WorkerFacts(__version__, has_raw_privilege(), "" if name is None else str(name))


def _worker_facts(client: Client) -> dict[str, WorkerFacts]:
    """The facts of every worker, by address; refuses workers that cannot run a shard."""
    try:
        facts: dict[str, WorkerFacts] = client.run(worker_facts)
    except (ImportError, AttributeError) as exc:
        raise ScanError(f"the Dask workers cannot run portlib ({exc}): install it on each") from exc
    except OSError as exc:
        raise ScanError(f"the Dask scheduler cannot be reached: {exc}") from exc
    if not facts:
        raise ScanError(f"the Dask cluster at {_address(client)} has no workers")
    others = [f"{_named(w, f)} (portlib {f.version})" for w, f in facts.items()
              if f.version != __version__]  # fmt: skip
    if others:
        raise ScanError(
            f"Dask workers run another portlib version than this one ({__version__}): "
            f"{', '.join(sorted(others))}; shards of different versions may not fit together"
        )
    return facts


def _named(address: str, facts: WorkerFacts) -> str:
    """A worker as people know it: its address, and its name when it has its own."""
    return f"{address} ({facts.name})" if facts.name and facts.name != address else address


def _address(client: Client) -> str:
    return str(getattr(client.scheduler, "address", "the scheduler"))


def _thread_count(client: Client, facts: Mapping[str, WorkerFacts]) -> int:
    """The worker threads of the cluster: the default number of shards, one each."""
    cluster: Any = client  # distributed leaves nthreads untyped
    threads: dict[str, int] = cluster.nthreads()
    return max(1, sum(threads.get(worker, 1) for worker in facts))


def _resolve_targets(targets: Targets, exclude: str | None) -> TargetSet:
    """The targets, names resolved once here so that every worker splits the same list."""
    from portlib.scanning.options import check_targets
    from portlib.scanning.scanner import parsed_or_spec
    from portlib.targets import parse_targets

    check_targets(targets)
    given = parsed_or_spec(targets, exclude)
    resolved = given if not isinstance(given, str) else parse_targets(given, exclude)
    if not resolved:
        raise TargetSpecError("no targets left to scan (all excluded?)")
    return resolved


def _check_options(targets: TargetSet, ports: Ports, seed: int, options: Mapping[str, Any]) -> None:
    """Every option checked as a shard will take it (the Scanner checks; it sends nothing)."""
    from portlib.scanning.options import parse_methods
    from portlib.scanning.scanner import Scanner

    Scanner(targets, ports, shard=(0, 1), seed=seed, **options)
    if ScanMethod.PING in parse_methods(options.get("method", "connect")):
        raise ScanError(
            "a ping scan (method 'ping', -sn) has no ports to split into shards: every "
            "shard would ping every host; run it with portlib.scan"
        )


def _check_privilege(options: Mapping[str, Any], facts: Mapping[str, WorkerFacts]) -> None:
    """A PrivilegeError naming the workers that lack CAP_NET_RAW, when the scan needs it."""
    from portlib.scanning.options import RAW_METHODS, parse_methods

    needs = sorted(m.value for m in parse_methods(options.get("method", "connect")))
    needs = [f"method {m}" for m in needs if ScanMethod(m) in RAW_METHODS]
    if options.get("discovery") == "raw":
        needs.append("discovery='raw'")
    lacking = sorted(_named(w, f) for w, f in facts.items() if not f.raw_privilege)
    if needs and lacking:
        raise PrivilegeError(
            f"{' and '.join(needs)} needs CAP_NET_RAW on every Dask worker, and "
            f"{len(lacking)} of {len(facts)} lack it: {', '.join(lacking)} (run the workers "
            "as root or grant them the capability, or use method='connect')"
        )


def _run_shards(
    client: Client,
    targets: TargetSet,
    ports: Ports,
    count: int,
    seed: int,
    options: dict[str, Any],
) -> ScanReport:
    from distributed import KilledWorker

    from portlib.merging import merge_reports

    token = secrets.token_hex(4)
    stop = f"portlib-stop-{token}"  # the Dask Event that asks the shards to stop
    futures = []
    for index in range(count):
        key = f"portlib-shard-{index + 1}of{count}-{token}"
        shard = (index, count)
        futures.append(
            client.submit(
                scan_shard, targets, ports, shard, seed, options, stop, key=key, pure=False
            )
        )
    cluster: Any = client  # distributed leaves gather and cancel untyped
    try:
        try:
            _wait(futures, None)  # Ctrl-C lands here, not inside Dask's own waiting
        except KeyboardInterrupt:
            reports = _stop_shards(client, futures, stop)
        else:
            reports = cluster.gather(futures)  # a shard's error (or KilledWorker) raises
    except KilledWorker as exc:
        raise ScanError(
            f"a shard was lost with every worker that ran it ({exc}); "
            "the scheduler's allowed-failures limit was reached"
        ) from None
    finally:
        cluster.cancel(futures)  # whatever is left does not start; done ones are freed
    return merge_reports(*reports, fold=options.get("fold", True))


def _stop_shards(client: Client, futures: list[Any], stop: str) -> list[ScanReport]:
    """Ctrl-C: ask every shard to stop and take what each decided (``interrupted``).

    Shards not started yet return at once with nothing decided. A second Ctrl-C, or
    no shard handing in anything within :data:`STOP_WAIT_S`, raises KeyboardInterrupt.
    """
    _untyped_distributed().Event(stop, client=client).set()
    _wait(futures, time.monotonic() + STOP_WAIT_S)  # those not done by then are left out
    done = [f for f in futures if f.status == "finished"]
    if not done:
        raise KeyboardInterrupt
    cluster: Any = client  # distributed leaves gather untyped
    reports: list[ScanReport] = cluster.gather(done)
    return reports


def _wait(futures: list[Any], deadline: float | None) -> None:
    """Until every future is done, one has failed, or ``deadline`` (monotonic) passes."""
    while not all(f.done() for f in futures):
        if any(f.status == "error" for f in futures):
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(WAIT_POLL_S)


def scan_shard(
    targets: TargetSet,
    ports: Ports,
    shard: tuple[int, int],
    seed: int,
    options: Mapping[str, Any],
    stop: str,
) -> ScanReport:
    """One Dask task: the ordinary Scanner over shard ``(i, n)`` of the probe space, until
    it is done or the Dask Event named ``stop`` is set (then what it decided so far)."""
    import asyncio

    event = _untyped_distributed().Event(stop)
    return asyncio.run(_scan_until(event, targets, ports, shard, seed, options))


async def _scan_until(
    stop: Any,
    targets: TargetSet,
    ports: Ports,
    shard: tuple[int, int],
    seed: int,
    options: Mapping[str, Any],
) -> ScanReport:
    import asyncio
    import contextlib
    import threading

    from portlib.scanning.scanner import Scanner

    scanner = Scanner(targets, ports, shard=shard, seed=seed, **options)
    if await asyncio.to_thread(stop.is_set):  # stopped before this shard began
        return _not_started(scanner)
    finished = threading.Event()
    async with scanner as results:
        drain = asyncio.ensure_future(_drain(results))
        watch = asyncio.ensure_future(asyncio.to_thread(_wait_for, stop, finished))
        try:
            await asyncio.wait({drain, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.set()
            if not drain.done():  # asked to stop: leaving the block stops the scan
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
            await watch
        if not drain.cancelled():
            drain.result()  # the scan's own error, as portlib.scan would raise it
    return scanner.report()


def _not_started(scanner: Scanner) -> ScanReport:
    """The report of a shard stopped before it began: no host reached, nothing sent."""
    import datetime as _dt

    return ScanReport(
        hosts=(),
        method=scanner.methods[0],
        started=_dt.datetime.now(_dt.UTC),
        elapsed=0.0,
        protocols=tuple(scanner.ports),
        ports_per_host=sum(len(numbers) for numbers in scanner.ports.values()),
        interrupted=True,
    )


def _untyped_distributed() -> Any:
    """Dask's distributed module; its Event and wait are untyped."""
    import distributed

    return distributed


async def _drain(results: Any) -> None:
    async for _ in results:
        pass


def _wait_for(stop: Any, finished: Any) -> bool:
    """In a thread: whether ``stop`` (a Dask Event) was set before ``finished`` was."""
    while not finished.is_set():
        if stop.wait(timeout=STOP_POLL_S):
            return True
    return False


__all__ = ["INSTALL_HINT", "WorkerFacts", "require_dask", "scan", "scan_shard", "worker_facts"]
