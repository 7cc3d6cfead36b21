"""``portlib scan``: nmap's port scan, with the flags nmap users already type.

The handler is three steps, so more output formats can plug in later:
``scanner_from_args`` (validate everything, before any packet), ``run_scan``
(stream the results; ``on_result`` sees each verdict as it is decided, ``on_host``
each host as it finishes), and the outputs (:class:`~portlib.cli.outputs.ScanOutputs`:
the table or JSON on stdout and every ``-o`` file, written host by host and each
closed properly however the scan ends). The scan keeps no hosts itself: everything
that reads them (``-R``, ``--open``, ``-vv``'s totals) works host by host, so
memory does not grow with the target count. Targets may come before, after and
between the flags, as nmap takes them (``portlib scan 127.0.0.1 -p 8000 ::1``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from portlib.cli.progress import Progress, ProgressLine

if TYPE_CHECKING:
    from portlib.cli import outputs as out
    from portlib.cli.outputs import ScanOutputs
    from portlib.errors import OutputError
    from portlib.model import HostResult, PortResult, ScanReport
    from portlib.scanning import Scanner
    from portlib.targets import TargetSet

ResultHook = Callable[["PortResult"], object]
HostHook = Callable[["HostResult"], object]
StartHook = Callable[["Scanner"], object]

# Signals that end a scan as Ctrl-C does: a partial report, every output written.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
EXIT_INTERRUPTED = 130  # 128 + SIGINT
_TCP_METHODS = frozenset({"connect", "syn", "ack"})
_PREFIX = re.compile(r"(?:^|,)\s*([A-Za-z]):")  # a -p protocol prefix (T:, U:)


def register(subparsers: Any) -> None:
    from portlib.cli.scan_flags import build

    build(subparsers).set_defaults(handler=handle)


def methods_from_args(args: argparse.Namespace) -> list[str]:
    from portlib.cli.scan_flags import VERSIONS

    methods = [m for m in args.methods or () if m != VERSIONS]
    return list(dict.fromkeys(methods or ["connect"]))


def ports_from_args(args: argparse.Namespace, methods: list[str]) -> object:
    """The ``ports`` argument for Scanner: a spec, a PortList for --top-ports, or None."""
    if args.top_ports is None:
        return args.ports
    from portlib.portspec import PortList
    from portlib.services import top_ports

    tcp = top_ports(args.top_ports, "tcp") if set(methods) & _TCP_METHODS else ()
    udp = top_ports(args.top_ports, "udp") if "udp" in methods else ()
    return PortList(tcp=tuple(tcp), udp=tuple(udp))


def check_flags(args: argparse.Namespace, methods: list[str], warn: TextIO) -> None:
    """What nmap refuses or warns about, before anything is resolved or sent."""
    from portlib.errors import ScanError

    if "list" in methods and len(methods) > 1:
        others = " ".join(f"-s{m[0].upper()}" for m in methods if m != "list")
        raise ScanError(f"-sL lists targets and sends nothing; it cannot go with {others}")
    if set(methods) & {"ping", "list"} and (args.ports is not None or args.top_ports):
        flag = "-sn" if "ping" in methods else "-sL"
        given = "-p" if args.ports is not None else "--top-ports/-F"
        raise ScanError(f"{flag} scans no ports, so {given} cannot go with it")
    if args.ports is None or set(methods) & {"ping", "list"}:
        return
    from portlib.portspec import parse_ports

    ports = parse_ports(args.ports)
    tcp_scan = bool(set(methods) & _TCP_METHODS)
    if tcp_scan and not ports.tcp:
        raise ScanError(
            f"-p {args.ports} gives no TCP ports for the TCP scan"
            + (" (add -sU to scan its UDP ports)" if "udp" not in methods else "")
        )
    if "udp" in methods and not ports.udp:
        raise ScanError(f"-p {args.ports} gives no UDP ports for the UDP scan (-sU)")
    prefixes = {letter.upper() for letter in _PREFIX.findall(args.ports)}
    if "U" in prefixes and "udp" not in methods:
        print(
            f"portlib: warning: -p {args.ports} includes UDP ports (U:) but no UDP scan (-sU)"
            " was asked for; they are not scanned",
            file=warn,
        )
    if "T" in prefixes and not tcp_scan:
        print(
            f"portlib: warning: -p {args.ports} includes TCP ports (T:) but only a UDP scan"
            " was asked for; they are not scanned",
            file=warn,
        )


async def targets_from_args(args: argparse.Namespace) -> TargetSet:
    from portlib.errors import TargetSpecError
    from portlib.targets import parse_targets_async

    if not args.targets and args.input_file is None:
        raise TargetSpecError("no targets given: name hosts or use -iL FILE")
    return await parse_targets_async(
        " ".join(args.targets),
        args.exclude,
        input_file=args.input_file,
        exclude_file=args.excludefile,
        family=args.family,
    )


def scanner_from_args(
    args: argparse.Namespace,
    targets: Any,
    on_progress: Callable[[int, int], object] | None,
    on_host: HostHook | None = None,
) -> Scanner:
    """A Scanner for these flags; every bad flag raises a PortlibError here. With
    ``on_host`` the hosts go there as they finish and the report keeps none."""
    from portlib.cli.scan_flags import VERSIONS
    from portlib.cli.scan_timing import timing_from_args
    from portlib.scanning import Scanner

    methods = methods_from_args(args)
    return Scanner(
        targets,
        ports_from_args(args, methods),  # type: ignore[arg-type]
        method=methods,
        timing=timing_from_args(args),
        timeout=args.timeout,
        retries=args.retries,
        rate=args.rate,
        min_rate=args.min_rate,
        discovery=not args.no_ping,
        seed=args.seed,
        shard=args.shard,
        sequential=args.sequential,
        host_timeout=args.host_timeout,
        interface=args.interface,
        on_progress=on_progress,
        args=tuple(sys.argv),
        versions=VERSIONS in (args.methods or ()),
        version_intensity=7 if args.version_intensity is None else args.version_intensity,
        fold=not args.all_ports,
        on_host=on_host,
        keep_hosts=on_host is None,
    )


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[list[int]]:
    """Inside the block SIGTERM and SIGHUP act as Ctrl-C (SIGINT), so ``timeout 60
    portlib scan ...`` keeps what was found. Yields the list of signals received."""
    received: list[int] = []

    def as_interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        signal.raise_signal(signal.SIGINT)  # asyncio's runner turns it into a clean stop

    previous = {number: signal.signal(number, as_interrupt) for number in STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


async def _stream(
    scanner: Scanner, on_result: ResultHook | None, on_start: StartHook | None
) -> None:
    async with scanner as results:
        if on_start is not None:
            on_start(scanner)  # before any host can finish: the scan task has not run yet
        async for result in results:
            if on_result is not None:
                on_result(result)


def run_scan(
    args: argparse.Namespace,
    *,
    on_result: ResultHook | None = None,
    on_host: HostHook | None = None,
    on_start: StartHook | None = None,
    progress: Progress | None = None,
    stats: TextIO | None = None,
) -> tuple[ScanReport, int | None]:
    """Run the scan the flags describe; returns the report and the signal that stopped it
    (None when it finished). ``on_start`` sees the Scanner once it runs, ``on_host``
    each finished host; ``stats`` receives the ``--stats-every`` lines."""
    import asyncio  # here, not at the top: every other subcommand starts faster without it

    from portlib.errors import PortlibError

    holder: list[Scanner] = []

    async def main() -> None:
        targets = await targets_from_args(args)
        scanner = scanner_from_args(args, targets, progress, on_host)
        holder.append(scanner)
        ticker = None
        if args.stats_every is not None and progress is not None and stats is not None:
            ticker = asyncio.create_task(_print_status(args, progress, stats))
        try:
            await _stream(scanner, on_result, on_start)
        finally:
            if ticker is not None:
                ticker.cancel()

    with stop_signals_interrupt() as received:
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            if not holder:
                raise  # interrupted before the scan began: nothing to report
            try:
                report = holder[0].report()
            except PortlibError:
                raise KeyboardInterrupt from None  # the Scanner had not started yet
            return report, received[0] if received else signal.SIGINT
        finally:
            if progress is not None:
                progress.clear()
    return holder[0].report(), None


async def _print_status(args: argparse.Namespace, progress: Progress, out: TextIO) -> None:
    import asyncio

    methods = methods_from_args(args)
    while True:
        await asyncio.sleep(args.stats_every)
        out.write(progress.status(methods))
        out.flush()


def _verbose_hook(args: argparse.Namespace, out: TextIO) -> ResultHook | None:
    """``-v``: each open port as it is found, as nmap prints them."""
    if not args.verbose:
        return None
    from portlib.model import PortState

    def show(result: PortResult) -> None:
        if result.state is PortState.OPEN:
            out.write(f"Discovered open port {result.port}/{result.protocol} on {result.host}\n")
            out.flush()

    return show


def _both(first: ResultHook | None, second: ResultHook | None) -> ResultHook | None:
    if first is None or second is None:
        return first or second

    def call(result: PortResult) -> None:
        first(result)
        second(result)

    return call


def handle(args: argparse.Namespace) -> int:
    from portlib.cli import EXIT_OK, EXIT_USAGE
    from portlib.cli import outputs as out

    methods = methods_from_args(args)
    check_flags(args, methods, sys.stderr)
    out.check_outputs(args)  # a bad -oX path fails before any packet
    table_on_stdout = not out.writes_stdout(args) and not args.json
    chatter = sys.stdout if table_on_stdout else sys.stderr
    if table_on_stdout:
        from portlib.output.normal import banner_line

        sys.stdout.write(banner_line(_dt.datetime.now().astimezone()) + "\n")
        sys.stdout.flush()
    if "list" in methods:
        written, stopped = _write_list(list_targets(args), args), None
    else:
        written, stopped = _scan_and_write(args, methods, chatter)
    for failure in written.failures:
        print(f"portlib: error: {failure}", file=sys.stderr)
    if written.broken_pipe:
        raise BrokenPipeError  # the dispatcher ends quietly: the reader left
    if written.failures:
        return EXIT_USAGE
    return EXIT_OK if stopped is None else 128 + stopped


def _scan_and_write(
    args: argparse.Namespace, methods: list[str], chatter: TextIO
) -> tuple[out.Written, int | None]:
    """The scan, every output written host by host as it runs and closed in a
    ``finally``: after Ctrl-C, SIGTERM or an error the files are complete."""
    from portlib.cli.outputs import ScanOutputs, jsonl_hook, writes_stdout

    line = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    progress = Progress(line)
    outputs = ScanOutputs(
        args, sys.stdout, table=not writes_stdout(args), before_write=progress.clear
    )
    hook = _both(jsonl_hook(args), _verbose_hook(args, chatter))
    started = time.monotonic()
    report: ScanReport | None = None
    stopped: int | None = None
    try:
        report, stopped = run_scan(
            args,
            on_result=hook,
            on_host=outputs.host,
            on_start=outputs.start,
            progress=progress,
            stats=sys.stderr,
        )
    finally:
        finished = outputs.finish(report, wait=report is not None and stopped is None)
    if args.verbose >= 2 and finished is not None:
        _print_totals(outputs, finished, methods, time.monotonic() - started, chatter)
    return outputs.written, stopped


def _write_list(report: ScanReport, args: argparse.Namespace) -> out.Written:
    """``-sL``: the target list on stdout (unless an output takes it) and in every file."""
    from portlib.cli import outputs as out
    from portlib.errors import OutputError
    from portlib.output.normal import render_list

    if args.reverse_dns:
        from portlib.cli.reversedns import with_reverse_names

        report = with_reverse_names(report)
    failures: list[OutputError] = []
    broken_pipe = False
    if not out.writes_stdout(args):
        try:
            if args.json:
                from portlib.output.formats import render

                sys.stdout.write(render(report, "json", open_only=args.open))
            else:
                sys.stdout.write(render_list(report, banner=False))
            sys.stdout.flush()
        except BrokenPipeError:
            broken_pipe = True
        except OSError as exc:
            failures.append(OutputError(f"cannot write to stdout: {exc.strerror or exc}"))
    texts = {"normal": render_list(report)}
    written = out.write_outputs(report, args, sys.stdout, texts)  # type: ignore[arg-type]
    written.failures[:0] = failures
    written.broken_pipe = written.broken_pipe or broken_pipe
    return written


def list_targets(args: argparse.Namespace) -> ScanReport:
    """``-sL``: the targets as a report of hosts never probed (state unknown)."""
    import asyncio

    from portlib.model import HostResult, HostState, Reason, ScanMethod, ScanReport

    started = _dt.datetime.now(_dt.UTC)
    clock = time.monotonic()
    targets = asyncio.run(targets_from_args(args))
    hosts = tuple(
        HostResult(t.address, t.hostname, HostState.UNKNOWN, Reason.USER_SET) for t in targets
    )
    elapsed = time.monotonic() - clock
    return ScanReport(hosts, ScanMethod.PING, started, elapsed, (), args=tuple(sys.argv))


def _print_totals(
    outputs: ScanOutputs, report: ScanReport, methods: list[str], seconds: float, out: TextIO
) -> None:
    """``-vv``: what the scan did, in one line (counted host by host as they finished)."""
    from portlib.cli.progress import PHASE_NAMES

    totals = outputs.totals
    phase = " and ".join(PHASE_NAMES.get(m, m) for m in methods)
    rate = f" ({report.probes_sent / seconds:.0f}/s)" if seconds > 0 else ""
    out.write(
        f"Completed {phase} of {totals.hosts} hosts in {seconds:.2f}s: {totals.verdicts}"
        f" verdicts, {totals.open} open, {report.probes_sent} probes sent{rate}\n"
    )
