"""argparse ``type=`` converters shared by the subcommands: numbers with a floor, times."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(text: str) -> int:
    """``int(text)``, or argparse's one-line error naming the text."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def whole_number_at_least(minimum: int) -> Callable[[str], int]:
    """A converter for whole numbers of ``minimum`` or more (``-p`` counts, retries...)."""

    def convert(text: str) -> int:
        value = whole_number(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return convert


def positive_number(text: str) -> float:
    """A number above 0 (seconds, probes per second)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


# nmap's time units; a bare number is seconds, as in nmap.
_TIME_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds from nmap's time syntax: ``500ms``, ``5s``, ``2m``, ``1h``, ``0.5`` (0 or more).

    >>> duration("500ms"), duration("2m"), duration("1.5")
    (0.5, 120.0, 1.5)
    """
    stripped = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h") if stripped.endswith(u)), "")
    number = stripped[: len(stripped) - len(unit)]
    try:
        value = float(number) * _TIME_UNITS.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (a number with ms, s, m or h, as in 500ms or 2m)"
        ) from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_duration(text: str) -> float:
    """A time above 0 (timeouts), in nmap's time syntax."""
    value = duration(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value
