"""``portlib diff OLD NEW``: what changed between two scans, like nmap's ``ndiff``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  portlib diff monday.xml tuesday.xml        two portlib (or nmap -oX) reports
  portlib diff nmap.xml portlib.json         nmap's verdicts against portlib's
  portlib diff old.xml new.xml --json | jq '.hosts[].ports[] | select(.change == "appeared")'

Either file may be nmap's or portlib's XML (-oX) or portlib's JSON (--json);
the format is told from the content. Lines start with '-' (old scan only), '+'
(new scan only) or ' ' (both). A port counts as changed when its state differs.

exit status: 0 no differences, 1 differences, 2 trouble (a file missing or unreadable).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two scan reports (like ndiff)",
        description="Compare two scans: hosts and ports that appeared, disappeared or "
        "changed state.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", metavar="OLD", help="the earlier report (XML or JSON file)")
    parser.add_argument("new", metavar="NEW", help="the later report (XML or JSON file)")
    parser.add_argument("--json", action="store_true", help="print the differences as JSON")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from portlib.cli import EXIT_FAILURE, EXIT_OK
    from portlib.output.diff import diff_reports, render_text
    from portlib.output.formats import load
    from portlib.output.jsonout import dumps

    diff = diff_reports(load(Path(args.old)), load(Path(args.new)))
    if args.json:
        sys.stdout.write(dumps(diff) + "\n")
    else:
        sys.stdout.write(render_text(diff))
    return EXIT_FAILURE if diff.differs else EXIT_OK
