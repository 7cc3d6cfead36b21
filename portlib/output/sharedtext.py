"""Text helpers every nmap-style output (and reader) shares: command line, time stamps, plurals.

Kept apart from the XML modules so the grepable and human outputs (and ``diff``)
do not import the XML machinery just for these. Pure.
"""

from __future__ import annotations

import datetime as _dt
import re
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
        return shlex.join(("nmap", *args[1:]))
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


# A POSIX shell word as shlex.split reads one (whitespace is shlex's four characters):
# unquoted characters, '...', "..." (backslash escapes only " and \ there) and \x.
_SEPARATOR = re.compile(r"[ \t\r\n]*")
_WORD = re.compile(r"""(?:[^ \t\r\n'"\\]+|'[^']*'|"(?:[^"\\]|\\.)*"|\\.)+""", re.DOTALL)
_PIECE = re.compile(r"""([^'"\\]+)|'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)""", re.DOTALL)
_IN_DOUBLE_QUOTES = re.compile(r"""\\(["\\])""")


def split_command_line(text: str) -> tuple[str, ...]:
    r"""The inverse of :func:`command_line`'s quoting: ``shlex.split(text)``, in time
    linear in the text (shlex reads a character at a time in Python). Unbalanced
    quotes, which a hand-edited report may have, give the whitespace-separated words.

    >>> split_command_line(r'''portlib scan 'a b' "c\"d" e\ f''')
    ('portlib', 'scan', 'a b', 'c"d', 'e f')
    >>> split_command_line("nmap 'unclosed")
    ('nmap', "'unclosed")
    """
    try:
        return _shell_words(text)
    except ValueError:
        return tuple(text.split())


def _shell_words(text: str) -> tuple[str, ...]:
    words = []
    position = _SEPARATOR.match(text, 0).end()  # type: ignore[union-attr]
    while position < len(text):
        word = _WORD.match(text, position)
        if word is None:
            raise ValueError(f"unbalanced quote or escape at character {position}")
        words.append(_unquote(word.group()))
        position = _SEPARATOR.match(text, word.end()).end()  # type: ignore[union-attr]
    return tuple(words)


def _unquote(word: str) -> str:
    if not any(c in word for c in "'\"\\"):
        return word
    parts = []
    for plain, single, double, escaped in _PIECE.findall(word):
        if double:
            parts.append(_IN_DOUBLE_QUOTES.sub(r"\1", double))
        else:
            parts.append(plain or single or escaped)
    return "".join(parts)
