"""The TimingProfile a scan runs with: the ``-T`` preset with nmap's timing flags on top.

A value the user gives wins over the preset's; where it leaves the preset's own
values out of order (``--max-rtt-timeout 100ms`` under -T3's 1 s initial timeout),
those move to fit, as nmap moves them. Two values the user gave that contradict
each other are an error.
"""

from __future__ import annotations

import argparse
import dataclasses

from portlib.cli.scan_flags import TIMING_FLAGS, timing_dest
from portlib.errors import ScanError
from portlib.scanning.timing import TimingProfile, preset

_FLAG_OF: dict[str, str] = {field: flag for flag, (field, *_) in TIMING_FLAGS.items()}
# (low field, high field): the user may not give low > high
_ORDERED = (
    ("min_rtt_timeout", "initial_rtt_timeout"),
    ("initial_rtt_timeout", "max_rtt_timeout"),
    ("min_rtt_timeout", "max_rtt_timeout"),
    ("scan_delay", "max_scan_delay"),
    ("min_parallelism", "max_parallelism"),
)


def timing_from_args(args: argparse.Namespace) -> TimingProfile:
    """The profile for these flags; ScanError for flags that contradict each other.

    >>> from argparse import Namespace
    >>> fields = {timing_dest(flag): None for flag in TIMING_FLAGS}
    >>> t = timing_from_args(Namespace(timing=3, timeout=None, **fields | {"max_rtt_timeout": 0.1}))
    >>> t.initial_rtt_timeout, t.max_rtt_timeout
    (0.1, 0.1)
    """
    given: dict[str, float | int] = {}
    for flag, (field, *_) in TIMING_FLAGS.items():
        value = getattr(args, timing_dest(flag), None)
        if value is not None:
            given[field] = value
    if given and getattr(args, "timeout", None) is not None:
        flags = ", ".join(_FLAG_OF[f] for f in given if "rtt" in f)
        if flags:
            raise ScanError(f"--timeout fixes the probe timeout; it cannot go with {flags}")
    for low, high in _ORDERED:
        if low in given and high in given and given[low] > given[high]:
            raise ScanError(
                f"{_FLAG_OF[low]} {_shown(given[low])} is more than"
                f" {_FLAG_OF[high]} {_shown(given[high])}"
            )
    profile = preset(args.timing)
    values = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)} | given
    for low, high in _ORDERED:  # the preset's values make room for the user's
        if values[high] is None or values[low] <= values[high]:
            continue
        if low in given:
            values[high] = values[low]
        else:
            values[low] = values[high]
    return dataclasses.replace(profile, **values)


def _shown(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}s"
