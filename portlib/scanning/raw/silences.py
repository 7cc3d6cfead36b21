"""What becomes of the raw engine's silent probes: timed out, tried again, or given up.

A probe whose timeout passes in silence is a try only if the silence proves
something: not when our own receive buffer dropped replies since it was sent
(``drop_mark``), and for a UDP target that rate-limits its ICMP errors only when
a token was certainly waiting for it (``icmplimit``). Tries go to the shared
``RetryBook``: resend, bench, or give up.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from portlib.model import Reason
from portlib.scanning.book import Decision, RetryBook
from portlib.scanning.raw.hosts import RawHost
from portlib.scanning.raw.probes import ProbeBook
from portlib.scanning.raw.replies import SILENCE_STATE
from portlib.scanning.raw.wire import Probe
from portlib.scanning.timing import RttEstimator

SKIP_LOOK, SKIP_RUN = 32, 4096  # answered probes looked at by columns: first, at most


class Silences:
    """The silent probes of one raw scan."""

    def __init__(
        self,
        book: ProbeBook,
        hosts: Sequence[RawHost],
        kind: Probe,
        retries: RetryBook,
        rtt: RttEstimator,
    ) -> None:
        self.book = book
        self.hosts = hosts
        self.limited = [h for h in hosts if h.limit is not None]  # their buckets may wait
        self.kind = kind
        self.retries = retries
        self.rtt = rtt
        self.drop_mark = float("-inf")  # replies sent before this may have been lost by us

    def next_expiry(self, now: float) -> float:
        """When the oldest probe in flight times out (soon, if none is)."""
        book = self.book
        heads = [q[0] for q in (book.in_flight, book.paced_out) if q]
        if not heads:
            return now + 0.01
        return min(book.sent_at[i] for i in heads) + self.rtt.timeout

    def expire(self, now: float) -> None:
        """Every probe whose timeout has passed by ``now`` is a silence."""
        book = self.book
        timeout = self.rtt.timeout
        decided = book.decided
        for queue, paced in ((book.in_flight, False), (book.paced_out, True)):
            while queue:
                idx = queue[0]
                if decided[idx]:
                    # Answered probes lead the queue: find the first undecided one by
                    # columns (looking further each time the whole look is answered)
                    # and drop the answered run before it at once.
                    look = SKIP_LOOK
                    while True:
                        run = bytes(map(decided.__getitem__, islice(queue, look))).find(0)
                        if run >= 0 or look >= SKIP_RUN:
                            break
                        look = min(look * 8, SKIP_RUN)
                    drop = queue.popleft
                    for _ in range(run if run >= 0 else min(look, len(queue))):
                        drop()
                    continue
                if book.sent_at[idx] + timeout > now:
                    break
                queue.popleft()
                if not paced:
                    book.land(idx)
                self.on_silence(idx)

    def on_silence(self, idx: int) -> None:
        book = self.book
        limit = self.hosts[idx // book.nports].limit
        if book.sent_at[idx] <= self.drop_mark:
            if limit is not None:
                limit.forget(idx)
            book.resend.append(idx)  # the answer may have been dropped by us: not a try
            return
        if limit is not None and not limit.on_silence(idx, book.sent_at[idx]):
            return  # no ICMP token was certainly waiting for it: queued, not a try
        book.silences[idx] = min(255, book.silences[idx] + 1)
        decision = self.retries.on_silence(idx, book.silences[idx])
        if decision is Decision.GIVE_UP:
            book.decide(idx, SILENCE_STATE[self.kind], Reason.NO_RESPONSE, None)
        elif decision is Decision.RESEND:
            self.send_again(idx)

    def send_again(self, idx: int) -> None:
        """Queue a silent probe for another try, paced by its host's ICMP bucket if any."""
        limit = self.hosts[idx // self.book.nports].limit
        if limit is None or not limit.retry_later(idx, self.book.sent_at[idx]):
            self.book.resend.append(idx)

    def _idle(self) -> bool:
        """Nothing in flight or queued: no answer can come that would raise the budget."""
        book = self.book
        if book.pending or book.resend or book.paced_out:
            return False
        return not any(h.limit is not None and h.limit.waiting for h in self.limited)

    def review_bench(self, now: float, *, final: bool) -> None:
        """Benched probes the budget now allows go again.

        ``final``: the probe order is done; if nothing else can answer either, the
        rest of the bench is given up as silent.
        """
        review = self.retries.review(final and self._idle(), now)
        for idx, _tries in review.resend:
            if not self.book.decided[idx]:
                self.send_again(idx)
        for idx in review.give_up:
            self.book.decide(idx, SILENCE_STATE[self.kind], Reason.NO_RESPONSE, None)
