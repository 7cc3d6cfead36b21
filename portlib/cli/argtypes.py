"""argparse ``type=`` converters shared by the subcommands: numbers with a floor."""

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
