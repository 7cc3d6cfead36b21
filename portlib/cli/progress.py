"""What a running scan shows on stderr: a redrawn progress line on a terminal, nmap's
status lines every ``--stats-every``, and nothing at all otherwise.

The texts are pure functions of (verdicts done, total, seconds elapsed), so the
tests read them without a clock; the objects only decide when to write.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from typing import TextIO

PROGRESS_INTERVAL = 0.2  # seconds between progress-line redraws

# Scan method -> the name nmap's status lines give its scan phase.
PHASE_NAMES: dict[str, str] = {
    "connect": "Connect Scan",
    "syn": "SYN Stealth Scan",
    "ack": "ACK Scan",
    "udp": "UDP Scan",
    "ping": "Ping Scan",
}


def clock_text(seconds: float) -> str:
    """``H:MM:SS``, as nmap prints elapsed and remaining times.

    >>> clock_text(23769.4), clock_text(5)
    ('6:36:09', '0:00:05')
    """
    whole = int(max(0.0, seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def remaining(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far, or None before there is a rate."""
    if total <= 0 or done <= 0 or elapsed <= 0:
        return None
    return (total - done) * elapsed / done


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
        eta = remaining(done, total, elapsed)
        percent = 100.0 * done / total
        eta_text = f"ETA {clock_text(eta)}" if eta is not None else "ETA --"
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


def status_lines(
    done: int, total: int, elapsed: float, methods: Sequence[str], now: _dt.datetime
) -> str:
    """Pure: nmap's two ``--stats-every`` lines (elapsed; percent done and ETC).

    >>> at = _dt.datetime(2026, 11, 28, 16, 40)
    >>> print(status_lines(455, 1000, 10.0, ["connect"], at), end="")
    Stats: 0:00:10 elapsed; 455 of 1000 port verdicts decided
    Connect Scan Timing: About 45.50% done; ETC: 16:40 (0:00:11 remaining)
    """
    phase = " and ".join(PHASE_NAMES.get(m, m) for m in methods) or "Scan"
    if total <= 0:
        return f"Stats: {clock_text(elapsed)} elapsed; discovering hosts\n"
    first = f"Stats: {clock_text(elapsed)} elapsed; {done} of {total} port verdicts decided"
    left = remaining(done, total, elapsed)
    if left is None:
        etc = "ETC: unknown"
    else:
        finish = now + _dt.timedelta(seconds=left)
        etc = f"ETC: {finish:%H:%M} ({clock_text(left)} remaining)"
    return f"{first}\n{phase} Timing: About {100.0 * done / total:.2f}% done; {etc}\n"


class Progress:
    """The scan's ``on_progress``: keeps the latest counts for the status lines and
    redraws the terminal line, if there is one."""

    def __init__(self, line: ProgressLine | None, clock: Callable[[], float] = time.monotonic):
        self.line = line
        self.done = 0
        self.total = 0
        self._clock = clock
        self.start = clock()

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.line is not None:
            self.line(done, total)

    def status(self, methods: Sequence[str]) -> str:
        """The status lines for now."""
        elapsed = self._clock() - self.start
        return status_lines(self.done, self.total, elapsed, methods, _dt.datetime.now())

    def clear(self) -> None:
        if self.line is not None:
            self.line.clear()
