"""Pure: what becomes of a probe that went unanswered, for every engine.

A silent probe is sent again while the loss-aware retry budget allows; a probe
that used a budget computed from too little evidence waits on the bench (as
nmap's) until answers raise the budget or nothing can come any more; only then
is it given up as silent. Probes are named by their index in the engine's
probe order; the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from portlib.scanning.timing import RetryPolicy

# A scan that heard nothing at all is confirmed silent for this long before its
# probes are given up: longer than Linux takes to give up resolving a neighbour
# (3 solicitations a second apart), so a lost ND/ARP exchange is not taken for
# a firewall. Only a few benched probes go out meanwhile.
SILENT_SCAN_HORIZON = 4.0
CONFIRMERS = 3


class Decision(StrEnum):
    """What to do with a probe whose timeout passed in silence."""

    RESEND = "resend"  # the budget allows another try
    BENCH = "bench"  # at the budget, which later answers may still raise
    GIVE_UP = "give-up"  # decided: silent


class Review(NamedTuple):
    """Benched probes that leave the bench: ``(index, tries)`` to resend, indices given up."""

    resend: list[tuple[int, int]]
    give_up: list[int]


_NO_FLOOR = 1 << 30


@dataclass(slots=True)
class RetryBook:
    """The retry budget and the bench of one engine run.

    ``tries`` is always the number of silent sends a probe has had so far. The
    engine reports each silence (:meth:`on_silence`) and each proven reply
    (:meth:`on_answer`, or :meth:`on_first_try_answers` in bulk), and asks for
    a :meth:`review` while the bench is not empty.
    """

    retry: RetryPolicy
    horizon: float = SILENT_SCAN_HORIZON
    confirmers: int = CONFIRMERS
    # index -> tries, in the order they were benched
    bench: dict[int, int] = field(default_factory=dict)
    # fewest tries on the bench: the budget must pass it before any is resent
    floor: int = _NO_FLOOR
    first_send: float | None = None

    @classmethod
    def for_retries(cls, max_retries: int) -> RetryBook:
        return cls(RetryPolicy(max_retries))

    def on_send(self, now: float) -> None:
        """Probes are going out; the first call starts the silent-scan horizon."""
        if self.first_send is None:
            self.first_send = now

    def on_silence(self, index: int, tries: int) -> Decision:
        """Probe ``index`` went unanswered for the ``tries``-th time."""
        retry = self.retry
        if retry.should_retry(tries):
            return Decision.RESEND
        if retry.may_grow:
            self.bench[index] = tries
            self.floor = min(self.floor, tries)
            return Decision.BENCH
        return Decision.GIVE_UP

    def on_answer(self, index: int, tries: int) -> None:
        """A proven reply to probe ``index`` after ``tries`` silent sends decides it."""
        self.retry.on_answer(tries)
        if self.bench:
            self.bench.pop(index, None)  # a late reply to a benched probe (raw sockets)

    def on_first_try_answers(self, count: int) -> None:
        """``count`` probes answered at their first send (the common case, in bulk)."""
        self.retry.on_first_try_answers(count)

    def review(self, final: bool, now: float) -> Review:
        """Take off the bench what the budget now allows; when ``final``, the rest too.

        ``final``: nothing else is in flight, queued or left in the order, so no
        answer can raise the budget any more. Then, if the scan has heard nothing
        at all and not for long, a few benched probes are confirmed once more
        instead; the others are given up.
        """
        allowed = self.retry.tries_allowed
        if not self.bench or (not final and allowed <= self.floor):
            return Review([], [])
        if final:
            confirming = self._confirmers(now)
            if confirming:
                for index, _tries in confirming:
                    del self.bench[index]
                return Review(confirming, [])
        waiting, self.bench, self.floor = self.bench, {}, _NO_FLOOR
        resend: list[tuple[int, int]] = []
        give_up: list[int] = []
        for index, tries in waiting.items():
            if tries < allowed:
                resend.append((index, tries))
            elif final:
                give_up.append(index)
            else:
                self.bench[index] = tries
                self.floor = min(self.floor, tries)
        return Review(resend, give_up)

    def _confirmers(self, now: float) -> list[tuple[int, int]]:
        """With no answer heard yet, within the horizon: the few benched probes to send again."""
        if self.retry.tries_sent or self.first_send is None:
            return []
        if now - self.first_send >= self.horizon:
            return []
        cap = self.retry.max_retries + 1
        return sorted(item for item in self.bench.items() if item[1] < cap)[: self.confirmers]


__all__ = ["CONFIRMERS", "SILENT_SCAN_HORIZON", "Decision", "RetryBook", "Review"]
