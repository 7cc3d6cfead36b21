"""Small text pieces every nmap-style output shares: command line, time stamps, plurals.

Kept apart from ``nmapxml`` so the grepable and human outputs (and ``diff``)
do not import the XML machinery (ElementTree) just for these.
"""

from __future__ import annotations

import datetime as _dt
import shlex
from pathlib import PurePath


def command_line(args: tuple[str, ...]) -> str:
    """A report's argv as one shell line: ``portlib scan ...`` or ``nmap ...``.

    The program's path (``/usr/local/bin/portlib``, ``.../portlib/__main__.py``)
    shortens to its name; argv without a program name (library use) gets ``portlib``.

    >>> command_line(("/usr/bin/nmap", "-sS", "192.0.2.1"))
    'nmap -sS 192.0.2.1'
    >>> command_line(("/work/portlib/__main__.py", "scan", "localhost"))
    'portlib scan localhost'
    """
    if not args:
        return "portlib"
    program = PurePath(args[0]).name
    if program == "nmap":
        return shlex.join(args)
    rest = args[1:] if program in {"portlib", "__main__.py"} else args
    return shlex.join(("portlib", *rest))


def nmap_time(when: _dt.datetime) -> str:
    """nmap's time stamps: ``Fri Nov 27 23:10:46 2026``, local time."""
    return when.astimezone().strftime("%a %b %d %H:%M:%S %Y")


def plural(n: int, one: str, many: str) -> str:
    """``1 host up``, ``2 hosts up``.

    >>> plural(2, "host up", "hosts up")
    '2 hosts up'
    """
    return f"{n} {one if n == 1 else many}"
