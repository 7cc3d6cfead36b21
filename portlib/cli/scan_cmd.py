"""``portlib scan``: nmap's port scan, with the flags nmap users already type.

The handler is three steps, so more output formats can plug in later:
``scanner_from_args`` (validate everything, before any packet), ``run_scan``
(stream the results; ``on_result`` sees each verdict as it is decided), and the
outputs (the table or JSON on stdout, then every ``-o`` file, each written
whatever became of the others). Targets may come before, after and between the
flags, as nmap takes them (``portlib scan 127.0.0.1 -p 8000 ::1``).
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
    from portlib.errors import OutputError
    from portlib.model import PortResult, ScanReport
    from portlib.scanning import Scanner
    from portlib.targets import TargetSet

ResultHook = Callable[["PortResult"], object]

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
    args: argparse.Namespace, targets: Any, on_progress: Callable[[int, int], object] | None
) -> Scanner:
    """A Scanner for these flags; every bad flag raises a PortlibError here."""
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
        fold=False,  # until the writers read folded hosts
        args=tuple(sys.argv),
        versions=VERSIONS in (args.methods or ()),
        version_intensity=7 if args.version_intensity is None else args.version_intensity,
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


async def _stream(scanner: Scanner, on_result: ResultHook | None) -> None:
    async with scanner as results:
        async for result in results:
            if on_result is not None:
                on_result(result)


def run_scan(
    args: argparse.Namespace,
    *,
    on_result: ResultHook | None = None,
    progress: Progress | None = None,
    stats: TextIO | None = None,
) -> tuple[ScanReport, int | None]:
    """Run the scan the flags describe; returns the report and the signal that stopped it
    (None when it finished). ``stats`` receives the ``--stats-every`` lines."""
    import asyncio  # here, not at the top: every other subcommand starts faster without it

    from portlib.errors import PortlibError

    holder: list[Scanner] = []

    async def main() -> None:
        targets = await targets_from_args(args)
        scanner = scanner_from_args(args, targets, progress)
        holder.append(scanner)
        ticker = None
        if args.stats_every is not None and progress is not None and stats is not None:
            ticker = asyncio.create_task(_print_status(args, progress, stats))
        try:
            await _stream(scanner, on_result)
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


def print_report(report: ScanReport, args: argparse.Namespace, stdout: TextIO) -> None:
    """Render the report as the flags ask (the table, without the banner the scan
    started with, or --json) on ``stdout``."""
    from portlib.output.formats import render

    if args.json:
        stdout.write(render(report, "json", open_only=args.open))
        return
    from portlib.output.normal import render_normal

    stdout.write(render_normal(report, open_only=args.open, reason=args.reason, banner=False))
    stdout.flush()


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
        report, stopped = list_targets(args), None
    else:
        line = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
        hook = _both(out.jsonl_hook(args), _verbose_hook(args, chatter))
        started = time.monotonic()
        report, stopped = run_scan(args, on_result=hook, progress=Progress(line), stats=sys.stderr)
        if args.verbose >= 2:
            _print_totals(report, methods, time.monotonic() - started, chatter)
    if args.reverse_dns:
        from portlib.cli.reversedns import with_reverse_names

        report = with_reverse_names(report)
    failures, broken_pipe = _write_everything(report, args, methods, table_on_stdout)
    for failure in failures:
        print(f"portlib: error: {failure}", file=sys.stderr)
    if broken_pipe:
        raise BrokenPipeError  # the dispatcher ends quietly: the reader left
    if failures:
        return EXIT_USAGE
    return EXIT_OK if stopped is None else 128 + stopped


def _write_everything(
    report: ScanReport, args: argparse.Namespace, methods: list[str], table_on_stdout: bool
) -> tuple[list[OutputError], bool]:
    """The table (or JSON) on stdout and every -o file, each whatever became of the
    others; returns the failures and whether stdout's reader left."""
    from portlib.cli import outputs as out
    from portlib.errors import OutputError

    failures: list[OutputError] = []
    broken_pipe = False
    texts = {}
    if "list" in methods:
        from portlib.output.normal import render_list

        texts["normal"] = render_list(report)
    if not out.writes_stdout(args):
        try:
            if "list" in methods and not args.json:
                sys.stdout.write(render_list(report, banner=False))
                sys.stdout.flush()
            else:
                print_report(report, args, sys.stdout)
        except BrokenPipeError:
            broken_pipe = True
        except OSError as exc:
            failures.append(OutputError(f"cannot write to stdout: {exc.strerror or exc}"))
    written = out.write_outputs(report, args, sys.stdout, texts)  # type: ignore[arg-type]
    return failures + written.failures, broken_pipe or written.broken_pipe


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


def _print_totals(report: ScanReport, methods: list[str], seconds: float, out: TextIO) -> None:
    """``-vv``: what the scan did, in one line."""
    from portlib.cli.progress import PHASE_NAMES

    verdicts = sum(len(h.ports) for h in report.hosts)
    phase = " and ".join(PHASE_NAMES.get(m, m) for m in methods)
    rate = f" ({report.probes_sent / seconds:.0f}/s)" if seconds > 0 else ""
    out.write(
        f"Completed {phase} of {len(report.hosts)} hosts in {seconds:.2f}s: {verdicts} verdicts,"
        f" {len(report.open_ports())} open, {report.probes_sent} probes sent{rate}\n"
    )
