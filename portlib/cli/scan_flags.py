"""``portlib scan``'s flags: nmap's names and meanings, times in nmap's units (``500ms``,
``5s``, ``2m``, ``1h``). Only the parser lives here; ``scan_cmd`` runs the scan.

The timing flags are one table, :data:`TIMING_FLAGS`: each names the
:class:`~portlib.scanning.timing.TimingProfile` field it sets, so the profile the
scan runs with is the ``-T`` preset with exactly these fields replaced.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from portlib.cli.argtypes import (
    duration,
    positive_duration,
    positive_number,
    whole_number_at_least,
)

EPILOG = """\
examples:
  portlib scan localhost                      top 1000 TCP ports (connect scan)
  portlib scan -p22,80,8000-8100 192.0.2.10
  portlib scan 192.0.2.10 -p 22 2001:db8::10  targets may come before or after flags
  portlib scan -p- -T4 192.0.2.0/28           all 65535 ports, aggressive timing
  portlib scan -sS -sU -F 192.0.2.10          SYN and UDP scan of the top 100 ports (root)
  portlib scan -sn 192.0.2.0/28               which hosts are up (no port scan)
  portlib scan -sL 192.0.2.0/30               list the targets; send nothing
  portlib scan -sV -p22,80,443 192.0.2.10     what runs on the open ports, which version
  portlib scan -Pn --open --json localhost    skip discovery; JSON of open ports
  portlib scan --max-rtt-timeout 200ms --max-retries 1 --scan-delay 10ms 192.0.2.10
  portlib scan --stats-every 10s -oA scans/today 192.0.2.0/24   status lines on stderr
  portlib scan --shard 1/4 --seed 7 -iL targets.txt  the first quarter of a split scan
  portlib scan --jsonl -p- localhost | jq -c 'select(.state == "open")'   stream verdicts
  portlib scan -p- --json --all-ports localhost   every port listed, none folded

The table and every output file are written host by host as the scan runs. SIGTERM
and SIGHUP end a scan as Ctrl-C does: the partial report is printed and every output
file is closed complete (exit status 128 + the signal's number; 130 for Ctrl-C).
"""

# -sX letter -> scan method, as nmap spells them; "list" (-sL) sends nothing.
SCAN_LETTERS: dict[str, str] = {
    "T": "connect",
    "S": "syn",
    "A": "ack",
    "U": "udp",
    "n": "ping",
    "L": "list",
}
TIMING_NAMES: dict[str, int] = {
    "paranoid": 0,
    "sneaky": 1,
    "polite": 2,
    "normal": 3,
    "aggressive": 4,
    "insane": 5,
}
FAST_PORTS = 100  # -F: nmap's "fast mode", the 100 most common ports
VERSIONS = "versions"  # -sV: not a scan method, detection after the port scan
VERSION_LIGHT, VERSION_ALL = 2, 9  # nmap's --version-light and --version-all intensities

_positive_int = whole_number_at_least(1)
_non_negative_int = whole_number_at_least(0)

# flag -> (TimingProfile field, converter, metavar, help)
TIMING_FLAGS: dict[str, tuple[str, Callable[[str], Any], str, str]] = {
    "--initial-rtt-timeout": (
        "initial_rtt_timeout",
        positive_duration,
        "TIME",
        "probe timeout until a round trip is measured",
    ),
    "--min-rtt-timeout": (
        "min_rtt_timeout",
        positive_duration,
        "TIME",
        "the timeout that follows measured round trips never goes below this",
    ),
    "--max-rtt-timeout": (
        "max_rtt_timeout",
        positive_duration,
        "TIME",
        "... and never above this",
    ),
    "--scan-delay": (
        "scan_delay",
        duration,
        "TIME",
        "at least this long between probes to one host",
    ),
    "--max-scan-delay": (
        "max_scan_delay",
        duration,
        "TIME",
        "the delay between probes to one host never exceeds this (portlib never raises"
        " it above --scan-delay, so this only bounds --scan-delay)",
    ),
    "--min-parallelism": (
        "min_parallelism",
        _positive_int,
        "N",
        "keep at least N probes in flight, even after losses",
    ),
    "--max-parallelism": ("max_parallelism", _positive_int, "N", "at most N probes in flight"),
}


def timing_dest(flag: str) -> str:
    """The argparse attribute of a timing flag: ``--max-rtt-timeout`` -> ``max_rtt_timeout``."""
    return flag.lstrip("-").replace("-", "_")


def _timing_level(text: str) -> int:
    value = TIMING_NAMES.get(text.lower())
    if value is None and text.isascii() and text.isdigit() and int(text) in range(6):
        value = int(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"timing must be 0-5 or a name ({', '.join(TIMING_NAMES)})"
        )
    return value


def _scan_letter(text: str) -> str:
    if text == "V":
        return VERSIONS
    if text not in SCAN_LETTERS:
        letters = ", ".join(f"-s{k}" for k in SCAN_LETTERS)
        raise argparse.ArgumentTypeError(f"unknown scan type -s{text} (use {letters})")
    return SCAN_LETTERS[text]


class _Once(argparse.Action):
    """A flag that may be given once, as nmap allows one ``-p``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(
                f"{option_string} is given twice; give it once, with commas"
                f" ({option_string} 22,80,443)"
            )
        setattr(namespace, self.dest, values)


def build(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``scan`` subcommand with every flag; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
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
        help="hosts, addresses ([::1] too), CIDR (192.0.2.0/28), ranges (192.0.2.1-20)",
    )
    _what_to_scan(parser)
    _timing(parser)
    _targets(parser)
    _reporting(parser)
    from portlib.cli.outputs import add_output_arguments

    add_output_arguments(parser)
    from portlib.cli import version_text

    parser.add_argument("--version", action="version", version=version_text())
    return parser


def _what_to_scan(parser: argparse.ArgumentParser) -> None:
    ports = parser.add_mutually_exclusive_group()
    ports.add_argument(
        "-p",
        dest="ports",
        action=_Once,
        metavar="SPEC",
        help="ports: 22,80,1000-2000, T:80,U:53, http, - (all: -p-)",
    )
    ports.add_argument(
        "--top-ports",
        type=_positive_int,
        metavar="N",
        help="the N most common ports of each scanned protocol",
    )
    ports.add_argument(
        "-F",
        dest="top_ports",
        action="store_const",
        const=FAST_PORTS,
        help=f"fast: the {FAST_PORTS} most common ports (--top-ports {FAST_PORTS})",
    )
    parser.add_argument(
        "-s",
        dest="methods",
        action="append",
        type=_scan_letter,
        metavar="X",
        help="scan type: -sT connect (default), -sS SYN, -sA ACK, -sU UDP, "
        "-sn ping only, -sL list targets only; -sS -sU scans both; "
        "-sV adds service and version detection",
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
        intensity.add_argument(
            flag, dest="version_intensity", action="store_const", const=level,
            help=f"with -sV: {what}",
        )  # fmt: skip
    parser.add_argument(
        "-Pn",
        dest="no_ping",
        action="store_true",
        help="skip host discovery: treat every host as up",
    )
    parser.add_argument(
        "-r",
        dest="sequential",
        action="store_true",
        help="probe ports in order instead of in a random order",
    )


def _timing(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("timing (nmap's flags; TIME as 500ms, 5s, 2m, 1h)")
    group.add_argument(
        "-T",
        dest="timing",
        type=_timing_level,
        default=3,
        metavar="0-5",
        help="timing template: -T0 paranoid .. -T3 normal .. -T5 insane",
    )
    group.add_argument(
        "--rate",
        "--max-rate",
        dest="rate",
        type=positive_number,
        metavar="PPS",
        help="at most PPS probes per second",
    )
    group.add_argument(
        "--min-rate",
        dest="min_rate",
        type=positive_number,
        metavar="PPS",
        help="at least PPS probes per second, past what the congestion window allows",
    )
    group.add_argument(
        "-e",
        dest="interface",
        metavar="IFACE",
        help="send every probe through this network interface (nmap's -e)",
    )
    group.add_argument(
        "--host-timeout",
        dest="host_timeout",
        type=positive_duration,
        metavar="TIME",
        help="give up on hosts not finished after TIME (reported with no ports, as nmap does)",
    )
    group.add_argument(
        "--timeout",
        type=positive_duration,
        metavar="TIME",
        help="fixed per-probe timeout (initial and largest)",
    )
    group.add_argument(
        "--retries",
        "--max-retries",
        dest="retries",
        type=_non_negative_int,
        metavar="N",
        help="retransmissions after silence",
    )
    for flag, (_field, convert, metavar, text) in TIMING_FLAGS.items():
        group.add_argument(flag, dest=timing_dest(flag), type=convert, metavar=metavar, help=text)


def _targets(parser: argparse.ArgumentParser) -> None:
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
    dns = parser.add_mutually_exclusive_group()
    dns.add_argument(
        "-n",
        dest="reverse_dns",
        action="store_const",
        const=False,
        help="never look up the names of addresses (portlib's default)",
    )
    dns.add_argument(
        "-R",
        dest="reverse_dns",
        action="store_const",
        const=True,
        help="look up the name of every target address that has none (reverse DNS)",
    )


def _reporting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--open", action="store_true", help="show only open ports")
    parser.add_argument("--reason", action="store_true", help="add a REASON column")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--all-ports",
        action="store_true",
        help="list every port in every output (by default, as nmap, a state with more than"
        " 25 of a host's ports is folded into counts and port ranges)",
    )
    parser.add_argument(
        "-v",
        dest="verbose",
        action="count",
        default=0,
        help="-v: print open ports as they are found; -vv: also the scan's plan and totals",
    )
    parser.add_argument(
        "--stats-every",
        type=positive_duration,
        metavar="TIME",
        help="print a status line (elapsed, percent done, ETC) on stderr every TIME",
    )
