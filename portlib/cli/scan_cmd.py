"""``portlib scan``: nmap's port scan, with the flags nmap users already type.

The handler is three steps, so more output formats can plug in later:
``scanner_from_args`` (validate everything, before any packet), ``run_scan``
(stream the results; ``on_result`` sees each verdict as it is decided), and
``print_report`` (render the finished or partial report on stdout).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from portlib.cli.argtypes import positive_number, whole_number_at_least

if TYPE_CHECKING:
    from portlib.model import PortResult, ScanReport
    from portlib.scanning import Scanner

EPILOG = """\
examples:
  portlib scan localhost                      top 1000 TCP ports (connect scan)
  portlib scan -p22,80,8000-8100 192.0.2.10
  portlib scan -p- -T4 192.0.2.0/28           all 65535 ports, aggressive timing
  portlib scan -sS -sU --top-ports 100 192.0.2.10    SYN and UDP (root)
  portlib scan -sn 192.0.2.0/28               which hosts are up (no port scan)
  portlib scan -sV -p22,80,443 192.0.2.10     what runs on the open ports, which version
  portlib scan -Pn --open --json localhost    skip discovery; JSON of open ports
  portlib scan --shard 1/4 --seed 7 -iL targets.txt  the first quarter of a split scan
  portlib scan -oA scans/today localhost      also write scans/today.xml, .gnmap, .nmap
  portlib scan --jsonl -p- localhost | jq -c 'select(.state == "open")'   stream verdicts
"""

# -sX letter -> scan method, as nmap spells them.
SCAN_LETTERS: dict[str, str] = {"T": "connect", "S": "syn", "A": "ack", "U": "udp", "n": "ping"}
TIMING_NAMES: dict[str, int] = {
    "paranoid": 0,
    "sneaky": 1,
    "polite": 2,
    "normal": 3,
    "aggressive": 4,
    "insane": 5,
}
PROGRESS_INTERVAL = 0.2  # seconds between progress-line redraws

ResultHook = Callable[["PortResult"], object]


def _timing_level(text: str) -> int:
    value = TIMING_NAMES.get(text.lower())
    if value is None and text.isdigit() and int(text) in range(6):
        value = int(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"timing must be 0-5 or a name ({', '.join(TIMING_NAMES)})"
        )
    return value


VERSIONS = "versions"  # -sV: not a scan method, detection after the port scan
VERSION_LIGHT, VERSION_ALL = 2, 9  # nmap's --version-light and --version-all intensities


def _scan_letter(text: str) -> str:
    if text == "V":
        return VERSIONS
    if text not in SCAN_LETTERS:
        letters = ", ".join(f"-s{k}" for k in SCAN_LETTERS)
        raise argparse.ArgumentTypeError(f"unknown scan type -s{text} (use {letters})")
    return SCAN_LETTERS[text]


_positive_int = whole_number_at_least(1)
_non_negative_int = whole_number_at_least(0)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan hosts for open ports (like nmap)",
        description="Scan TCP/UDP ports of hosts, with nmap's flags. Default: connect scan "
        "of the top 1000 TCP ports of each host found up.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="hosts, addresses, CIDR (192.0.2.0/28), ranges (192.0.2.1-20)",
    )
    ports = parser.add_mutually_exclusive_group()
    ports.add_argument(
        "-p",
        dest="ports",
        metavar="SPEC",
        help="ports: 22,80,1000-2000, T:80,U:53, http, - (all: -p-)",
    )
    ports.add_argument(
        "--top-ports",
        type=_positive_int,
        metavar="N",
        help="the N most common ports of each scanned protocol",
    )
    parser.add_argument(
        "-s",
        dest="methods",
        action="append",
        type=_scan_letter,
        metavar="X",
        help="scan type: -sT connect (default), -sS SYN, -sA ACK, -sU UDP, "
        "-sn ping only; -sS -sU scans both; -sV adds service/version detection",
    )
    intensity = parser.add_mutually_exclusive_group()
    intensity.add_argument(
        "--version-intensity",
        type=_non_negative_int,
        metavar="0-9",
        help="with -sV: how many probes to try (default 7)",
    )
    for flag, level, what in (
        ("--version-light", VERSION_LIGHT, "intensity 2"),
        ("--version-all", VERSION_ALL, "every probe, intensity 9"),
    ):
        intensity.add_argument(flag, dest="version_intensity", action="store_const",
                               const=level, help=f"with -sV: {what}")  # fmt: skip
    parser.add_argument(
        "-Pn",
        dest="no_ping",
        action="store_true",
        help="skip host discovery: treat every host as up",
    )
    parser.add_argument(
        "-T",
        dest="timing",
        type=_timing_level,
        default=3,
        metavar="0-5",
        help="timing template: -T0 paranoid .. -T3 normal .. -T5 insane",
    )
    parser.add_argument(
        "--rate", type=positive_number, metavar="PPS", help="at most PPS probes per second"
    )
    parser.add_argument(
        "--timeout", type=positive_number, metavar="S", help="per-probe timeout in seconds"
    )
    parser.add_argument(
        "--retries", type=_non_negative_int, metavar="N", help="retransmissions after silence"
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        metavar="N",
        help="seed of the randomized probe order (same seed, same order)",
    )
    parser.add_argument(
        "--shard", metavar="I/N", help="scan only shard I of N (1-based) of the target x port space"
    )
    parser.add_argument("--exclude", metavar="SPEC", help="targets to leave out")
    parser.add_argument("--excludefile", metavar="FILE", help="targets to leave out, from a file")
    parser.add_argument(
        "-iL", dest="input_file", metavar="FILE", help="read targets from FILE (- for stdin)"
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument(
        "-4", dest="family", action="store_const", const=4, help="resolve host names to IPv4 only"
    )
    family.add_argument(
        "-6", dest="family", action="store_const", const=6, help="resolve host names to IPv6 only"
    )
    parser.add_argument("--open", action="store_true", help="show only open ports")
    parser.add_argument("--reason", action="store_true", help="add a REASON column")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    from portlib.output.writers import add_output_arguments

    add_output_arguments(parser)
    parser.set_defaults(handler=handle)


def methods_from_args(args: argparse.Namespace) -> list[str]:
    methods = [m for m in args.methods or () if m != VERSIONS]
    return list(dict.fromkeys(methods or ["connect"]))


def ports_from_args(args: argparse.Namespace, methods: list[str]) -> object:
    """The ``ports`` argument for Scanner: a spec, a PortList for --top-ports, or None."""
    if args.top_ports is None:
        return args.ports
    from portlib.portspec import PortList
    from portlib.services import top_ports

    tcp = top_ports(args.top_ports, "tcp") if set(methods) - {"udp", "ping"} else ()
    udp = top_ports(args.top_ports, "udp") if "udp" in methods else ()
    return PortList(tcp=tuple(tcp), udp=tuple(udp))


async def _parse_targets(args: argparse.Namespace) -> Any:
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
    from portlib.scanning import Scanner

    methods = methods_from_args(args)
    return Scanner(
        targets,
        ports_from_args(args, methods),  # type: ignore[arg-type]
        method=methods,
        timing=args.timing,
        timeout=args.timeout,
        retries=args.retries,
        rate=args.rate,
        discovery=not args.no_ping,
        seed=args.seed,
        shard=args.shard,
        on_progress=on_progress,
        args=tuple(sys.argv),
        versions=VERSIONS in (args.methods or ()),
        version_intensity=7 if args.version_intensity is None else args.version_intensity,
    )


class ProgressLine:
    """A ``\\r``-redrawn line on a terminal: verdicts done, rate and ETA."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._last = 0.0
        self._width = 0

    @staticmethod
    def text(done: int, total: int, elapsed: float) -> str:
        """Pure: the line for ``done`` of ``total`` verdicts after ``elapsed`` seconds."""
        if total <= 0:
            return "discovering hosts..."
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        percent = 100.0 * done / total
        eta_text = f"ETA {eta:.0f}s" if eta is not None else "ETA --"
        return f"{done}/{total} ports ({percent:.1f}%), {rate:.0f} ports/s, {eta_text}"

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if done < total and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        line = self.text(done, total, now - self._start)
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def clear(self) -> None:
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


async def _stream(scanner: Scanner, on_result: ResultHook | None) -> None:
    async with scanner as results:
        async for result in results:
            if on_result is not None:
                on_result(result)


def run_scan(
    args: argparse.Namespace,
    *,
    on_result: ResultHook | None = None,
    progress: ProgressLine | None = None,
) -> tuple[ScanReport, bool]:
    """Run the scan the flags describe; returns (report, interrupted by Ctrl-C)."""
    import asyncio  # here, not at the top: every other subcommand starts faster without it

    from portlib.errors import PortlibError

    holder: list[Scanner] = []

    async def main() -> None:
        targets = await _parse_targets(args)
        scanner = scanner_from_args(args, targets, progress)
        holder.append(scanner)
        await _stream(scanner, on_result)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        if not holder:
            raise  # interrupted before the scan began: nothing to report
        try:
            return holder[0].report(), True
        except PortlibError:
            raise KeyboardInterrupt from None  # the Scanner had not started yet
    finally:
        if progress is not None:
            progress.clear()
    return holder[0].report(), False


def only_open(report: ScanReport) -> ScanReport:
    """``--open``: keep open (and open|filtered) ports, and the hosts that have any."""
    import dataclasses

    from portlib.model import PortState

    keep = {PortState.OPEN, PortState.OPEN_FILTERED}
    hosts = []
    for host in report.hosts:
        ports = tuple(p for p in host.ports if p.state in keep)
        if ports:
            hosts.append(dataclasses.replace(host, ports=ports))
    return dataclasses.replace(report, hosts=tuple(hosts))


def print_report(report: ScanReport, args: argparse.Namespace, stdout: TextIO) -> None:
    """Render the report as the flags ask (human table or --json) on ``stdout``."""
    if args.json:
        shown = only_open(report) if args.open else report
        stdout.write(shown.to_json() + "\n")
        return
    from portlib.output.normal import render_normal

    stdout.write(render_normal(report, open_only=args.open, reason=args.reason))


def handle(args: argparse.Namespace) -> int:
    from portlib.cli import EXIT_INTERRUPTED, EXIT_OK
    from portlib.output import writers

    writers.check_outputs(args)  # a bad -oX path fails before any packet
    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    report, interrupted = run_scan(args, progress=progress, on_result=writers.jsonl_hook(args))
    if not writers.writes_stdout(args):
        print_report(report, args, sys.stdout)
    writers.write_outputs(report, args, sys.stdout)
    sys.stdout.flush()
    return EXIT_INTERRUPTED if interrupted else EXIT_OK
