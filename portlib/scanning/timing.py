"""Pure timing model of a scan: nmap's -T0..-T5 presets and user overrides.

No clocks or sockets here: callers pass times in, so every rule is unit-testable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from portlib.errors import ScanError


@dataclass(frozen=True, slots=True)
class TimingProfile:
    """How patient and how parallel a scan is. Times are in seconds.

    The per-probe timeout starts at ``initial_rtt_timeout`` and then follows the
    measured RTT (srtt + 4 * rttvar), clamped to [min_rtt_timeout, max_rtt_timeout].
    ``max_retries`` counts retransmissions after silence; an answer is never retried.
    ``scan_delay`` is the least gap between probes to one host (T0-T2 serialize).
    ``rate`` caps probes per second for the whole scan (None: no cap).
    ``max_parallelism`` caps probes in flight (None: sized from resources).
    """

    level: int
    initial_rtt_timeout: float
    min_rtt_timeout: float
    max_rtt_timeout: float
    max_retries: int
    scan_delay: float
    max_scan_delay: float
    min_parallelism: int
    max_parallelism: int | None
    host_timeout: float | None = None
    rate: float | None = None

    def with_overrides(
        self,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        rate: float | None = None,
        concurrency: int | None = None,
    ) -> TimingProfile:
        """This profile with the user's ``--timeout``/``--retries``/``--rate``/concurrency.

        ``timeout`` fixes the per-probe timeout (initial and maximum).
        """
        changes: dict[str, object] = {}
        if timeout is not None:
            if not timeout > 0:
                raise ScanError(f"timeout must be a positive number of seconds, not {timeout!r}")
            changes.update(
                initial_rtt_timeout=timeout,
                max_rtt_timeout=timeout,
                min_rtt_timeout=min(self.min_rtt_timeout, timeout),
            )
        if retries is not None:
            if retries < 0:
                raise ScanError(f"retries must be 0 or more, not {retries!r}")
            changes["max_retries"] = retries
        if rate is not None:
            if not rate > 0:
                raise ScanError(f"rate must be a positive number of probes per second, not {rate!r}")
            changes["rate"] = float(rate)
        if concurrency is not None:
            if concurrency < 1:
                raise ScanError(f"concurrency must be 1 or more, not {concurrency!r}")
            changes["max_parallelism"] = concurrency
            changes["min_parallelism"] = min(self.min_parallelism, concurrency)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# nmap's timing templates (nmap.cc, "-T" handling); T3 is nmap's default.
PRESETS: dict[int, TimingProfile] = {
    0: TimingProfile(0, 300.0, 0.1, 300.0, 10, 300.0, 300.0, 1, 1),
    1: TimingProfile(1, 15.0, 0.1, 15.0, 10, 15.0, 15.0, 1, 1),
    2: TimingProfile(2, 1.0, 0.1, 10.0, 10, 0.4, 1.0, 1, 1),
    3: TimingProfile(3, 1.0, 0.1, 10.0, 10, 0.0, 1.0, 1, None),
    4: TimingProfile(4, 0.5, 0.1, 1.25, 6, 0.0, 0.01, 1, None),
    5: TimingProfile(5, 0.25, 0.05, 0.3, 2, 0.0, 0.005, 1, None, host_timeout=900.0),
}


def preset(level: int) -> TimingProfile:
    """The -T``level`` profile; 0 (paranoid) to 5 (insane)."""
    try:
        return PRESETS[level]
    except (KeyError, TypeError):
        raise ScanError(f"timing level must be 0 to 5 (-T0..-T5), not {level!r}") from None
