"""The verdicts one connect run reached, and what each teaches its timing.

An answer feeds the host's RTT estimate (first tries only: Karn's rule), the
retry book and the congestion window; a silence goes to the book, which says
resend, bench or give up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portlib.model import PortState, Reason
from portlib.scanning.book import Decision, RetryBook
from portlib.scanning.connect.probes import Probe, SendQueue
from portlib.scanning.connect.verdicts import SILENT, Verdict
from portlib.scanning.timing import CongestionWindow, HostTiming

Decided = tuple[int, PortState, Reason, float | None]
"""A verdict reached: (probe index, state, reason, rtt or None)."""


@dataclass(slots=True)
class Ledger:
    """The undecided count, the verdicts not yet handed over, and the timing they adjust."""

    remaining: int
    queue: SendQueue  # where resends go
    window: CongestionWindow
    book: RetryBook
    results: list[Decided] = field(default_factory=list)

    def take(self) -> list[Decided]:
        """The verdicts reached since the last call."""
        decided, self.results = self.results, []
        return decided

    def decide(self, index: int, verdict: Verdict, rtt: float | None) -> None:
        self.results.append((index, verdict.state, verdict.reason, rtt))
        self.remaining -= 1

    def on_answer(
        self, probe: Probe, timing: HostTiming, verdict: Verdict, now: float, in_flight: int
    ) -> None:
        """``probe`` (to the host of ``timing``) got an answer meaning ``verdict``."""
        tries = probe.tries
        rtt = now - probe.sent
        timing.answered(rtt if tries == 0 else None)  # Karn: no RTT from a retry
        self.book.on_answer(probe.index, tries)
        if tries:
            self.window.on_drop(now, in_flight, timing.rtt.timeout)
        else:
            self.window.on_answer()
        self.decide(probe.index, verdict, rtt)

    def on_first_try_answers(self, count: int) -> None:
        """``count`` verdicts the sender appended itself (closed ports, at their first try)."""
        self.remaining -= count
        self.book.on_first_try_answers(count)
        self.window.on_answer(count)

    def on_silence(self, probe: Probe) -> None:
        tries = probe.tries + 1
        decision = self.book.on_silence(probe.index, tries)
        if decision is Decision.RESEND:
            self.queue.resend.append((probe.index, tries))
        elif decision is Decision.GIVE_UP:
            self.decide(probe.index, SILENT, None)

    def review_bench(self, in_flight: int, now: float) -> None:
        """Resend benched probes the budget now allows; give up the rest once nothing is left."""
        if not self.book.bench:
            return
        resend, give_up = self.book.review(not in_flight and self.queue.empty, now)
        self.queue.resend.extend(resend)
        for index in give_up:
            self.decide(index, SILENT, None)
