"""The limits both report readers (XML and JSON) hold a file to, so a hostile or damaged
file is refused the same way in either format, before it costs memory or breaks a writer.

Each check takes ``fail``, the reader's way to build a ReportFormatError that names
the file. Pure: no I/O.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Iterable

from portlib.errors import ReportFormatError
from portlib.model import IPAddress, PortResult, Protocol

Fail = Callable[[str], ReportFormatError]

PORTS_PER_PROTOCOL = 65536
"""A host has at most this many ports per protocol (0-65535), so no more verdicts."""

MAX_REPORT_VERDICTS = 1 << 24
"""At most this many port verdicts in one report: every port of a /24 fits."""

MAX_SECONDS = 1e9
"""Durations (elapsed, latency, rtt) above this (31 years) are damage, not measurements."""

MAX_ARGS_CHARS = 8 << 20
"""A command line longer than this cannot have come from any Linux argv."""

MAX_DIGITS = 20
"""Whole numbers in a report fit in 64 bits; longer digit strings are refused unread."""


class VerdictBudget:
    """Counts the port verdicts a report will hold before they are built."""

    def __init__(self, fail: Fail, limit: int = MAX_REPORT_VERDICTS) -> None:
        self._fail = fail
        self._left = limit
        self._limit = limit

    def take(self, count: int) -> None:
        self._left -= count
        if self._left < 0:
            raise self._fail(
                f"holds more than {self._limit} port verdicts, more than portlib reads"
            )


class PortTally:
    """One host's verdicts per protocol, counted before a port list is expanded."""

    def __init__(self, address: IPAddress, fail: Fail) -> None:
        self._address = address
        self._fail = fail
        self._counts: dict[Protocol, int] = {}

    def add(self, protocol: Protocol, count: int) -> None:
        total = self._counts.get(protocol, 0) + count
        if total > PORTS_PER_PROTOCOL:
            raise self._fail(
                f"host {self._address} lists more than {PORTS_PER_PROTOCOL} {protocol} ports"
            )
        self._counts[protocol] = total


def check_host_ports(address: IPAddress, ports: Iterable[PortResult], fail: Fail) -> None:
    """Every verdict belongs to ``address`` and names a (port, protocol) only once."""
    seen: set[tuple[int, Protocol]] = set()
    for port in ports:
        if port.host != address:
            raise fail(f"host {address} holds a verdict for another host, {port.host}")
        key = (port.port, port.protocol)
        if key in seen:
            raise fail(f"host {address} lists port {port.port}/{port.protocol} twice")
        seen.add(key)


def seconds(value: float, what: str, fail: Fail) -> float:
    """A duration: finite, not negative, not absurd."""
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise fail(f"{what}: {value!r} is not a duration in seconds (0 to {MAX_SECONDS:g})")
    return value


def check_span(started: _dt.datetime, elapsed: float, fail: Fail) -> None:
    """The scan's start and end are times every writer can print."""
    try:
        (started + _dt.timedelta(seconds=elapsed)).timestamp()
        started.timestamp()
    except (OverflowError, ValueError, OSError):
        raise fail(f"the scan's start {started} and length {elapsed} s are not a time") from None


def whole_number(text: str, what: str, fail: Fail, *, most: int | None = None) -> int:
    """A decimal whole number of ASCII digits, not negative (``²`` and ``١`` are not)."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        raise fail(f"{what} is not a whole number: {text[:40]!r}")
    value = int(text)
    if most is not None and value > most:
        raise fail(f"{what} is {value}, more than {most}")
    return value


def timestamp(seconds_since_epoch: int, what: str, fail: Fail) -> _dt.datetime:
    """A UTC time from a Unix time stamp, refused when no datetime can hold it."""
    try:
        return _dt.datetime.fromtimestamp(seconds_since_epoch, tz=_dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise fail(f"{what} {seconds_since_epoch} is not a time") from None


def command_text(text: str, fail: Fail) -> str:
    """A report's command line, refused when longer than any argv could be."""
    if len(text) > MAX_ARGS_CHARS:
        raise fail(f"its command line is {len(text)} characters, longer than any Linux argv")
    return text
