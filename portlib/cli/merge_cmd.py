"""``portlib merge A.xml B.json ...``: the reports of one scan's shards joined into one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """\
examples:
  portlib scan --shard 1/2 --seed 7 -oX part1.xml 192.0.2.0/24    on one machine
  portlib scan --shard 2/2 --seed 7 -oX part2.xml 192.0.2.0/24    on another
  portlib merge part1.xml part2.xml                  the whole scan's table
  portlib merge part*.xml -oX whole.xml --json       the whole scan as XML and JSON

Each FILE may be portlib's XML (-oX) or JSON (--json), or nmap's XML; the format is
told from the content. The shards must come from one scan: the same method, protocols
and ports, and the same --seed (without one, sharded scans use seed 0). Hosts keep
the first file's order; a host up in any file is up; a port decided in two files keeps
the more informative state (open, closed, unfiltered, filtered, then the pairs).

exit status: 0 merged, 2 trouble (a file missing or unreadable, reports of different scans).
"""


def register(subparsers: Any) -> None:
    from portlib.cli.outputs import add_output_arguments
    from portlib.cli.scan_flags import add_report_flags

    parser = subparsers.add_parser(
        "merge",
        help="join the reports of a sharded scan (--shard I/N) into one",
        description="Join shard reports of one scan into the report of the whole scan, "
        "and print or write it as 'portlib scan' does.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="shard reports (XML or JSON)")
    add_report_flags(parser)
    add_output_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from portlib.cli import EXIT_OK, EXIT_USAGE
    from portlib.cli import outputs as out
    from portlib.cli.merged_outputs import write_merged
    from portlib.merging import merge_reports
    from portlib.output.formats import load

    out.check_outputs(args)  # a bad -oX path fails before the files are read
    report = merge_reports(*(load(path) for path in args.files))
    written = write_merged(report, args, banner=True, on_result=out.jsonl_hook(args))
    for failure in written.failures:
        print(f"portlib: error: {failure}", file=sys.stderr)
    if written.broken_pipe:
        raise BrokenPipeError  # the dispatcher ends quietly: the reader left
    return EXIT_USAGE if written.failures else EXIT_OK
