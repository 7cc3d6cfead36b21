"""The raw engine's send workers, in the lab's scanner namespace: every probe goes out once.

A -p- SYN scan of the namespace's own loopback (no other process there, every
port closed) with send workers whose pipes hold one page: the last batches
handed over wait in the engine's backlog when the fresh probes run out, and
must still go out then. Timeouts are 10 s, so a probe sent only as a retry
(the backlog forgotten until its timeout) shows as a second send.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.lab


# --- run in the scanner namespace by lab.call -----------------------------------------


async def scan_own_loopback(ports: int, pipe_bytes: int) -> tuple[int, int, int, dict[str, int]]:
    """(results, probes sent, send workers, states) of a SYN scan of 127.0.0.1 ports 1..ports."""
    import dataclasses
    from collections import Counter
    from ipaddress import ip_address

    from portlib.model import PortResult, Protocol, ScanMethod
    from portlib.scanning.contract import ScanWork
    from portlib.scanning.raw import sending
    from portlib.scanning.raw.engine import RawEngine
    from portlib.scanning.raw.io import sendworker
    from portlib.scanning.timing import preset

    sendworker.PIPE_BYTES = pipe_bytes
    workers: list[int] = []
    start_workers = sending.RawSender.start_workers

    def counted(self: sending.RawSender, to_send: int) -> None:
        start_workers(self, to_send)
        workers.append(len(self.workers))

    sending.RawSender.start_workers = counted  # type: ignore[method-assign]
    results: list[PortResult] = []

    async def emit(result: PortResult) -> None:
        results.append(result)

    slow = {"initial_rtt_timeout": 10.0, "min_rtt_timeout": 10.0, "max_rtt_timeout": 10.0}
    timing = dataclasses.replace(preset(4), **slow)
    work = ScanWork(
        (ip_address("127.0.0.1"),), tuple(range(1, ports + 1)), Protocol.TCP, timing, seed=5
    )
    engine = RawEngine(ScanMethod.SYN)
    await engine.run(work, emit)
    states = Counter(r.state.value for r in results)
    return len(results), engine.probes_sent, sum(workers), dict(states)


# --- tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    from tests.lab import Lab, lab_available

    reason = lab_available()
    if reason:
        pytest.skip(reason)
    with Lab() as built:
        yield built


def test_send_workers_last_batches_go_out_without_waiting_for_a_timeout(lab) -> None:  # type: ignore[no-untyped-def]
    count, sent, workers, states = lab.call(scan_own_loopback, 65535, 4096, timeout_s=60.0)
    assert workers >= 1  # the scan did go through send workers
    assert count == 65535 and states == {"closed": 65535}
    assert sent == 65535  # each probe once: none waited for its timeout to go out
