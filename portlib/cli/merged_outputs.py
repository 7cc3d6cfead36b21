"""A finished report (shards merged) written as ``portlib scan`` writes a scan's outputs:
the table, ``--json`` or ``--jsonl``'s verdicts on stdout unless an ``-o FILE -`` takes
it, then every ``-o`` file, each whatever became of the others.

    written = write_merged(report, args, banner=True)   # portlib merge part1.xml part2.xml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portlib.cli.outputs import Written
    from portlib.model import PortResult, ScanReport


def write_merged(
    report: ScanReport,
    args: argparse.Namespace,
    *,
    banner: bool,
    on_result: Callable[[PortResult], object] | None = None,
) -> Written:
    """Write ``report`` as the flags ask; ``on_result`` sees every verdict, folded ones
    too (``--jsonl``, ``-v``); ``banner`` starts the table with its first line."""
    from portlib.cli import outputs as out
    from portlib.errors import OutputError

    if getattr(args, "reverse_dns", False):
        from portlib.cli.reversedns import with_reverse_names

        report = with_reverse_names(report)
    broken_pipe = False
    failures: list[OutputError] = []
    try:
        if on_result is not None:
            for host in report.hosts:
                for verdict in host.all_ports():
                    on_result(verdict)
        if not out.writes_stdout(args):
            sys.stdout.write(_stdout_text(report, args, banner=banner))
            sys.stdout.flush()
    except BrokenPipeError:
        broken_pipe = True
    except OSError as exc:
        failures.append(OutputError(f"cannot write to stdout: {exc.strerror or exc}"))
    written = out.write_outputs(report, args, sys.stdout)
    written.failures[:0] = failures
    written.broken_pipe = written.broken_pipe or broken_pipe
    return written


def _stdout_text(report: ScanReport, args: argparse.Namespace, *, banner: bool) -> str:
    """The table (``--reason``, ``--open``, ``--all-ports`` as the flags say) or the JSON."""
    options = {
        "open_only": bool(getattr(args, "open", False)),
        "all_ports": bool(getattr(args, "all_ports", False)),
    }
    if getattr(args, "json", False):
        from portlib.output.formats import render

        return render(report, "json", **options)
    from portlib.output.normal import render_normal

    reason = bool(getattr(args, "reason", False))
    return render_normal(report, reason=reason, banner=banner, **options)
