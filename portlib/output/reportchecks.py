"""The limits both report readers (XML and JSON) hold a file to, so a hostile or damaged
file is refused the same way in either format, before it costs memory or breaks a writer.

Each check takes ``fail``, the reader's way to build a ReportFormatError that names
the file. Pure: no I/O.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
from collections.abc import Callable, Iterable

from portlib.errors import ReportFormatError
from portlib.model import FoldedPorts, IPAddress, PortResult, PortState, Protocol

Fail = Callable[[str], ReportFormatError]

PORTS_PER_PROTOCOL = 65536
"""A host has at most this many ports per protocol (0-65535), so no more verdicts."""

MAX_REPORT_VERDICTS = 1 << 24
"""At most this many listed port verdicts and folded port ranges in one report (what
a reader builds objects for): every port of a /24 fits, listed one by one."""

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


def check_folded(
    address: IPAddress,
    ports: Iterable[PortResult],
    folded: Iterable[FoldedPorts],
    fail: Fail,
) -> None:
    """A host's folded states: each state folded once, every range inside 0-65535 and
    running forwards, and no (port, protocol) both listed and folded or folded twice,
    checked on the ranges without expanding them."""
    spans: dict[Protocol, list[tuple[int, int]]] = {}
    states: set[PortState] = set()
    for state in folded:
        if state.state in states:
            raise fail(f"host {address} folds its {state.state} ports twice")
        states.add(state.state)
        for group in state.reasons:
            for lo, hi in group.ranges:
                if not 0 <= lo <= hi <= PORTS_PER_PROTOCOL - 1:
                    raise fail(f"host {address}: folded port range {lo}-{hi} is not 0-65535")
            spans.setdefault(group.protocol, []).extend(group.ranges)
    if not spans:
        return
    for port in ports:
        if port.protocol in spans:
            spans[port.protocol].append((port.port, port.port))
    for protocol, runs in spans.items():
        runs.sort()
        for (_, last), (lo, _hi) in itertools.pairwise(runs):
            if lo <= last:
                raise fail(f"host {address} lists port {lo}/{protocol} twice")
