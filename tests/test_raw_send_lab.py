"""The raw engine's send paths in the lab's scanner namespace: workers and TX rings.

Send workers: a -p- SYN scan of the namespace's own loopback (no other process there, every
port closed) with send workers whose pipes hold one page: the last batches
handed over wait in the engine's backlog when the fresh probes run out, and
must still go out then. Timeouts are 10 s, so a probe sent only as a retry
(the backlog forgotten until its timeout) shows as a second send.

TX rings: frames put on a ring (and, when the kernel refuses the ring, sent
one by one through its socket) leave by the ring's interface, where a packet
socket on that interface sees them go.
"""

from __future__ import annotations

import pytest

from tests.lab import Lab

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


def frames_leave_by_the_tx_ring(frame_size: int) -> tuple[bool, int]:
    """(whether the ring was refused, how many of 20 marked frames were seen leaving)."""
    import socket
    import time
    from pathlib import Path

    from portlib.scanning.raw.io.txring import TxRing, ethernet_header

    interface = next(name for _, name in socket.if_nameindex() if name != "lo")
    mac = Path(f"/sys/class/net/{interface}/address").read_text().strip()
    header = ethernet_header(b"\xff" * 6, bytes.fromhex(mac.replace(":", "")), 4)
    watch = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    watch.bind((interface, 0))
    watch.settimeout(0.2)
    ring = TxRing(interface, frame_size=frame_size, frames=64)
    marks = {f"portlib-tx-{i:04d}".encode() for i in range(20)}
    try:
        for mark in sorted(marks):
            packet = b"\x45" + b"\0" * 19 + mark  # not a valid IPv4 header: the peer drops it
            while not ring.put(header, packet):
                ring.flush()
                time.sleep(0.001)
            ring.flush()
        seen: set[bytes] = set()
        deadline = time.monotonic() + 5
        while seen != marks and time.monotonic() < deadline:
            try:
                frame = watch.recv(2048)
            except TimeoutError:
                continue
            seen |= {mark for mark in marks if mark in frame}
        return ring.ring is None, len(seen)
    finally:
        watch.close()
        ring.close()


# --- tests ----------------------------------------------------------------------------


def test_send_workers_last_batches_go_out_without_waiting_for_a_timeout(module_lab: Lab) -> None:
    count, sent, workers, states = module_lab.call(scan_own_loopback, 65535, 4096, timeout_s=60.0)
    assert workers >= 1  # the scan did go through send workers
    assert count == 65535 and states == {"closed": 65535}
    assert sent == 65535  # each probe once: none waited for its timeout to go out


@pytest.mark.parametrize(("frame_size", "refused"), [(256, False), (248, True)])
def test_tx_ring_frames_leave_by_its_interface(
    module_lab: Lab, frame_size: int, refused: bool
) -> None:
    """A 248-byte frame slot is not 16-byte aligned: the kernel refuses that ring (EINVAL)."""
    module_lab.add_host(f"tx{frame_size}")  # a link for the scanner namespace to send on
    was_refused, seen = module_lab.call(frames_leave_by_the_tx_ring, frame_size, timeout_s=60.0)
    assert was_refused is refused
    assert seen == 20
