"""The raw engine against real sockets on loopback (needs root: CAP_NET_RAW).

Ground truth comes from the test itself: listeners it opened are open, ports
it bound and released are closed, a UDP echo server is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from portlib.model import PortResult, PortState, Protocol, Reason, ScanMethod
from portlib.scanning.contract import ScanWork
from portlib.scanning.raw.scan import DEFAULT_TUNING, RawTuning
from portlib.scanning.timing import preset

pytestmark = pytest.mark.lab

ROOT_REASON = "raw scans need root (CAP_NET_RAW)"


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(ROOT_REASON)


HOSTS = [ip_address("127.0.0.1"), ip_address("::1")]


def family_of(host: IPv4Address | IPv6Address) -> socket.AddressFamily:
    return socket.AF_INET if host.version == 4 else socket.AF_INET6


@contextmanager
def tcp_listeners(host: IPv4Address | IPv6Address, count: int) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(family_of(host), socket.SOCK_STREAM))
            s.bind((str(host), 0))
            s.listen(64)
            ports.append(s.getsockname()[1])
        yield ports


def closed_ports(host: IPv4Address | IPv6Address, kind: int, count: int) -> list[int]:
    """Ports that were free a moment ago (bound, then released)."""
    ports = []
    for _ in range(count):
        with socket.socket(family_of(host), kind) as s:
            s.bind((str(host), 0))
            ports.append(s.getsockname()[1])
    return ports


@contextmanager
def udp_echo(host: IPv4Address | IPv6Address) -> Iterator[int]:
    """A UDP echo server on the event loop's thread-free side: a plain thread."""
    import threading

    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    sock.bind((str(host), 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            sock.sendto(data or b"pong", peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()


async def run_engine(
    method: str,
    host: IPv4Address | IPv6Address,
    ports: list[int],
    tuning: RawTuning = DEFAULT_TUNING,
    **timing: float,
) -> list[PortResult]:
    from portlib.scanning.raw.engine import RawEngine

    results: list[PortResult] = []

    async def emit(result: PortResult) -> None:
        results.append(result)

    protocol = Protocol.UDP if method == "udp" else Protocol.TCP
    work = ScanWork((host,), tuple(ports), protocol, preset(4).with_overrides(**timing), seed=7)
    await RawEngine(ScanMethod(method), tuning=tuning).run(work, emit)
    return results


def verdicts(results: list[PortResult]) -> dict[int, tuple[PortState, Reason]]:
    counts = Counter((r.host, r.port) for r in results)
    assert all(n == 1 for n in counts.values()), "a port was reported more than once"
    return {r.port: (r.state, r.reason) for r in results}


@pytest.mark.parametrize("host", HOSTS, ids=str)
async def test_syn_open_and_closed_exact(host: IPv4Address | IPv6Address) -> None:
    closed = closed_ports(host, socket.SOCK_STREAM, 20)
    with tcp_listeners(host, 5) as listening:
        results = await run_engine("syn", host, listening + closed)
    expected = {p: (PortState.OPEN, Reason.SYN_ACK) for p in listening}
    expected |= {p: (PortState.CLOSED, Reason.RESET) for p in closed}
    assert verdicts(results) == expected
    assert all(r.protocol is Protocol.TCP and r.host == host for r in results)
    assert all(r.rtt is not None and r.rtt >= 0 for r in results)


@pytest.mark.parametrize("host", HOSTS, ids=str)
async def test_ack_scan_says_unfiltered(host: IPv4Address | IPv6Address) -> None:
    closed = closed_ports(host, socket.SOCK_STREAM, 5)
    with tcp_listeners(host, 3) as listening:
        results = await run_engine("ack", host, listening + closed)
    assert verdicts(results) == {
        p: (PortState.UNFILTERED, Reason.RESET) for p in listening + closed
    }


@pytest.mark.parametrize("host", HOSTS, ids=str)
async def test_udp_open_and_closed_exact(host: IPv4Address | IPv6Address) -> None:
    closed = closed_ports(host, socket.SOCK_DGRAM, 20)
    with udp_echo(host) as echo:
        results = await run_engine("udp", host, [echo, *closed])
    expected = {p: (PortState.CLOSED, Reason.PORT_UNREACH) for p in closed}
    expected[echo] = (PortState.OPEN, Reason.UDP_RESPONSE)
    assert verdicts(results) == expected
    assert all(r.protocol is Protocol.UDP for r in results)


async def test_full_range_syn_on_loopback_is_exact() -> None:
    await full_range_syn_is_exact(DEFAULT_TUNING)


async def full_range_syn_is_exact(tuning: RawTuning) -> None:
    host = HOSTS[0]
    with tcp_listeners(host, 3) as listening:
        results = await run_engine("syn", host, list(range(1, 65536)), tuning)
        # ports other processes listen on right now are open too: ask the kernel
        others = set(listening_ports(host))
    found = verdicts(results)
    assert len(found) == 65535
    open_ports = {p for p, (state, _) in found.items() if state is PortState.OPEN}
    assert set(listening) <= open_ports
    assert open_ports <= others | set(listening)
    # Other processes on this machine's loopback come and go (a port can be mid-
    # handshake and drop our SYN): allow a few filtered, but the bulk is closed.
    states = Counter(s for s, _ in found.values())
    assert set(states) <= {PortState.OPEN, PortState.CLOSED, PortState.FILTERED}
    assert states[PortState.CLOSED] >= 65535 - len(open_ports) - 50


def listening_ports(host: IPv4Address | IPv6Address) -> list[int]:
    ports = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A":
                ports.append(int(local.split(":")[1], 16))
    return ports


async def test_cancellation_closes_every_socket() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    task = asyncio.ensure_future(run_engine("udp", HOSTS[0], list(range(1, 65536)), rate=2000.0))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(os.listdir("/proc/self/fd")) <= fds_before


async def test_engine_rejects_connect_method() -> None:
    from portlib.errors import ScanError
    from portlib.scanning.raw.engine import RawEngine

    with pytest.raises(ScanError, match="syn, ack and udp"):
        RawEngine(ScanMethod.CONNECT)


def test_unprivileged_syn_scan_raises_privilege_error() -> None:
    code = textwrap.dedent(
        """
        import asyncio, ipaddress
        from portlib.errors import PrivilegeError
        from portlib.model import Protocol, ScanMethod
        from portlib.scanning.contract import ScanWork
        from portlib.scanning.raw.engine import RawEngine
        from portlib.scanning.timing import preset

        async def emit(r):
            raise AssertionError("no verdict without privileges")

        work = ScanWork((ipaddress.ip_address("127.0.0.1"),), (22,), Protocol.TCP, preset(4), 1)
        try:
            asyncio.run(RawEngine(ScanMethod.SYN).run(work, emit))
        except PrivilegeError as exc:
            print("PrivilegeError:", exc)
        """
    )

    def drop_privileges() -> None:
        # The interpreter lives under /root (mode 700), so `nobody` could not even
        # start it: instead stay uid 0 but drop CAP_NET_RAW from the bounding set,
        # which removes it from the child after exec (prctl PR_CAPBSET_DROP).
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_capbset_drop, cap_net_raw = 24, 13
        if libc.prctl(pr_capbset_drop, cap_net_raw, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        preexec_fn=drop_privileges,
        cwd="/",
        env={"PYTHONPATH": repo, "PATH": os.environ.get("PATH", "")},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PrivilegeError:" in proc.stdout
    assert "CAP_NET_RAW" in proc.stdout and "connect" in proc.stdout


def test_scan_end_to_end_through_the_public_api() -> None:
    import portlib

    closed = closed_ports(HOSTS[0], socket.SOCK_STREAM, 3)
    with tcp_listeners(HOSTS[0], 2) as listening:
        spec = ",".join(str(p) for p in listening + closed)
        report = portlib.scan("127.0.0.1", spec, method="syn")
    assert report.method is ScanMethod.SYN
    (host,) = report.hosts
    assert {p.port: p.state for p in host.all_ports()} == (
        {p: PortState.OPEN for p in listening} | {p: PortState.CLOSED for p in closed}
    )


def test_receive_filter_passes_only_replies_to_our_port() -> None:
    import time

    from portlib.scanning.raw import bpf
    from portlib.scanning.raw.io import rawsock

    with tcp_listeners(HOSTS[0], 1) as (listening,):
        ours, other = closed_ports(HOSTS[0], socket.SOCK_STREAM, 2)
        rx = rawsock.packet_receiver(bpf.reply_filter((6,), ours))
        try:
            for sport in (other, ours):  # a SYN from each port to a closed and an open port
                for dport in (listening, 9):
                    with socket.socket() as c:
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        c.bind(("127.0.0.1", sport))
                        c.settimeout(1)
                        with contextlib.suppress(OSError):
                            c.connect(("127.0.0.1", dport))
            time.sleep(0.2)
            seen = []
            while True:
                try:
                    data, addr = rx.recvfrom(512)
                except BlockingIOError:
                    break
                assert len(data) <= bpf.SNAPLEN
                ihl = (data[0] & 15) * 4
                seen.append((addr[2], data[9], *struct.unpack_from("!HH", data, ihl)))
        finally:
            rx.close()
    # only incoming TCP to our port (never outgoing copies, never other ports)
    assert seen and all(s[0] != 4 and s[1] == 6 and s[3] == ours for s in seen), seen
    assert {s[2] for s in seen} == {listening, 9}


def test_send_worker_reports_refused_sends_back() -> None:
    """A send the kernel refuses in the worker comes back as (probe index, errno)."""
    import errno
    import time
    from array import array

    from portlib.scanning.raw.io.sendworker import SendWorker
    from portlib.scanning.raw.templates import build_template
    from portlib.scanning.raw.wire import Probe, ProbeTemplate

    host = HOSTS[0]
    probe = ProbeTemplate(build_template(Probe.SYN, host, 40000), Probe.SYN).bind(host.packed)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.close()  # every sendto on it fails with EBADF, and nothing is sent anywhere
    fds_before = set(os.listdir("/proc/self/fd"))
    worker = SendWorker([(probe, dead, (str(host), 0))], [7, 9, 11])
    try:
        worker.send(array("I", [2, 1234, 0, 5678]))  # (index, cookie) records
        refused: list[tuple[int, int]] = []
        deadline = time.monotonic() + 10
        while len(refused) < 2 and time.monotonic() < deadline:
            refused += worker.errors()
            time.sleep(0.01)
    finally:
        worker.close()
    assert refused == [(2, errno.EBADF), (0, errno.EBADF)]
    assert set(os.listdir("/proc/self/fd")) <= fds_before  # pipes closed, child reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(worker.pid, os.WNOHANG)


def test_send_worker_hand_over_never_blocks_and_loses_nothing() -> None:
    """More records than the pipe holds: send returns at once, flush delivers them all."""
    import errno
    import time
    from array import array

    from portlib.scanning.raw.io.sendworker import PIPE_BYTES, SendWorker
    from portlib.scanning.raw.templates import build_template
    from portlib.scanning.raw.wire import Probe, ProbeTemplate

    host = HOSTS[0]
    probe = ProbeTemplate(build_template(Probe.SYN, host, 40000), Probe.SYN).bind(host.packed)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.close()  # every send fails (EBADF) and comes back: a receipt per record
    count = 50_000  # 400 KB of records, 25 times the pipe
    worker = SendWorker([(probe, dead, (str(host), 0))], list(range(count)))
    try:
        records = array("I")
        for idx in range(count):
            records.extend((idx, idx))
        worker.send(records)
        assert not worker.flush()  # the rest waits here, not in a blocked write()
        refused: list[tuple[int, int]] = []
        deadline = time.monotonic() + 60
        while len(refused) < count and time.monotonic() < deadline:
            worker.flush()
            refused += worker.errors()
            time.sleep(0.001)
    finally:
        worker.close()
    assert count * 8 > 20 * PIPE_BYTES
    assert refused == [(idx, errno.EBADF) for idx in range(count)]


def test_full_range_syn_on_loopback_without_send_worker_is_exact() -> None:
    """The in-process send path gives the same verdicts as the worker path above."""
    asyncio.run(full_range_syn_is_exact(RawTuning(send_workers=False)))


def test_two_send_workers_each_stop_when_closed() -> None:
    """-sS -sU runs two raw scans at once: the second worker must not keep the first alive."""
    import threading

    from portlib.scanning.raw.io.sendworker import SendWorker
    from portlib.scanning.raw.templates import build_template
    from portlib.scanning.raw.wire import Probe, ProbeTemplate

    host = HOSTS[0]
    probe = ProbeTemplate(build_template(Probe.SYN, host, 40000), Probe.SYN).bind(host.packed)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.close()
    first = SendWorker([(probe, dead, (str(host), 0))], [7])
    second = SendWorker([(probe, dead, (str(host), 0))], [7])
    try:
        closing = threading.Thread(target=first.close, daemon=True)
        closing.start()
        closing.join(timeout=10)
        assert not closing.is_alive(), "the first worker outlived its closed pipe"
    finally:
        second.close()


def test_send_worker_stops_even_when_another_fork_holds_its_pipe() -> None:
    """The connect engine forks too: its children inherit the job pipe; close must not wait."""
    import signal
    import threading
    import time

    from portlib.scanning.raw.io.sendworker import SendWorker
    from portlib.scanning.raw.templates import build_template
    from portlib.scanning.raw.wire import Probe, ProbeTemplate

    host = HOSTS[0]
    probe = ProbeTemplate(build_template(Probe.SYN, host, 40000), Probe.SYN).bind(host.packed)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.close()
    worker = SendWorker([(probe, dead, (str(host), 0))], [7])
    holder = os.fork()
    if holder == 0:  # an unrelated fork that keeps every inherited descriptor open
        time.sleep(30)
        os._exit(0)
    try:
        closing = threading.Thread(target=worker.close, daemon=True)
        closing.start()
        closing.join(timeout=10)
        assert not closing.is_alive(), "close waited for an unrelated process"
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)


def test_rx_ring_hands_over_every_packet_once_and_recycles_its_blocks() -> None:
    """Six rounds of datagrams through a 4-block ring: each round read once, whole."""
    import time

    from portlib.scanning.raw import bpf
    from portlib.scanning.raw.io import rawsock
    from portlib.scanning.raw.io.rxring import RxRing

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound: no port unreachables
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    rx = rawsock.packet_receiver(bpf.reply_filter((17,), port))
    ring = RxRing(rx, block_size=1 << 16, blocks=4)
    ring.ready()  # set up in a thread: packets before this go to the socket's queue
    try:
        with sink, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind(("127.0.0.1", 0))
            for round_number in range(6):  # each round fills or retires a block: 6 > 4
                for i in range(100):  # ~10 KB: a block is retired after 4 ms, not filled
                    sender.sendto(struct.pack("!HH", round_number, i), ("127.0.0.1", port))
                got: list[tuple[int, int]] = []
                deadline = time.monotonic() + 5
                while len(got) < 100 and time.monotonic() < deadline:
                    for buf, at, size in ring.frames():
                        packet = bytes(buf[at : at + size])
                        assert packet[9] == 17 and len(packet) == 20 + 8 + 4
                        got.append(struct.unpack_from("!HH", packet, 28))
                    time.sleep(0.01)
                assert got == [(round_number, i) for i in range(100)]
                assert list(ring.frames()) == []  # nothing twice
    finally:
        rx.close()
        ring.close()


def test_tcp_replies_are_cut_to_one_length_and_laid_at_one_stride() -> None:
    """TCP replies to our port (a SYN|ACK with options too) fill blocks of TCP_SNAP-byte frames."""
    import time

    from portlib.scanning.raw import bpf
    from portlib.scanning.raw.io import rawsock
    from portlib.scanning.raw.io.rxring import RxRing

    ours, *closed = closed_ports(HOSTS[0], socket.SOCK_STREAM, 21)
    rx = rawsock.packet_receiver(bpf.reply_filter((6,), ours))
    ring = RxRing(rx, block_size=1 << 16, blocks=4, retire_ms=50)
    ring.ready()
    sizes, ports, flags = [], [], set()
    with tcp_listeners(HOSTS[0], 1) as (listening,):
        try:
            for dport in [listening, *closed]:  # RST|ACKs, and a SYN|ACK with TCP options
                with socket.socket() as c:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    c.bind(("127.0.0.1", ours))
                    with contextlib.suppress(OSError):
                        c.connect(("127.0.0.1", dport))
            time.sleep(0.2)
            for frames, buf, ip, count, stride in ring.blocks(bpf.TCP_SNAP):
                packets, lengths = [], set()
                for packet, at, size in frames:
                    packets.append(bytes(packet[at : at + size]))
                    lengths.add(size)
                    if packet[at + 9] != 6:  # the filter passes all ICMP: others' scans
                        continue
                    sizes.append(size)
                    ports.append(struct.unpack_from("!H", packet, at + 20)[0])
                    flags.add(packet[at + 33])
                if count > 1 and lengths == {bpf.TCP_SNAP}:  # one stride from the first
                    at_stride = [ip + i * stride for i in range(count)]
                    assert stride and packets == [
                        bytes(buf[a : a + bpf.TCP_SNAP]) for a in at_stride
                    ]
                elif count > 1:
                    assert not stride
        finally:
            rx.close()
            ring.close()
    assert set(ports) == {listening, *closed} and set(sizes) == {bpf.TCP_SNAP}
    assert 0x12 in flags  # 60 bytes on the wire, cut to 40


@pytest.mark.parametrize("method", ["syn", "udp"])
async def test_engine_without_rx_ring_decides_the_same(method: str) -> None:
    """The recv path (kernels that refuse a ring) gives the ring path's verdicts."""
    host = HOSTS[0]
    kind = socket.SOCK_DGRAM if method == "udp" else socket.SOCK_STREAM
    closed = closed_ports(host, kind, 20)
    listeners = udp_echo(host) if method == "udp" else tcp_listeners(host, 1)
    with listeners as served:
        opened = [served] if isinstance(served, int) else served
        with_ring = verdicts(await run_engine(method, host, opened + closed))
        without_ring = verdicts(
            await run_engine(method, host, opened + closed, RawTuning(rx_ring=False))
        )
    assert with_ring == without_ring
    assert {p: s for p, (s, _) in with_ring.items()} == (
        {p: PortState.OPEN for p in opened} | {p: PortState.CLOSED for p in closed}
    )


def test_window_counts_undecided_probes_not_the_send_queue() -> None:
    """Answered probes behind a silent one free the window at once (not when it expires)."""
    from portlib.scanning.raw.replies import FirstTries
    from portlib.scanning.raw.scan import RawScan
    from portlib.scanning.raw.wire import Probe

    work = ScanWork((HOSTS[0],), tuple(range(1000, 1100)), Protocol.TCP, preset(4), seed=7)
    scan = RawScan(Probe.SYN, work)
    book = scan.book
    try:
        for idx in range(100):
            book.sends[idx] = 1
            book.sent_at[idx] = 1000.0
            book.fly(idx)
        assert book.pending == 100
        # Every probe but the first (a DROPped port, still silent) is answered.
        answers = FirstTries()
        for idx in range(1, 100):
            answers.add(idx, PortState.CLOSED, Reason.RESET, 1000.001)
        book.decide_first_tries(
            answers,
            scan.window,
            scan.retries,
            scan.rtt,
        )
        for idx in range(1, 100):
            book.decided[idx] = 1
        assert book.pending == 1 and len(book.in_flight) == 100  # the queue empties lazily
        scan.silences.expire(1000.0 + scan.rtt.timeout + 1)
        assert book.pending == 0 and not book.in_flight
        assert list(book.resend) == [0]  # the silent one goes around again
    finally:
        scan.close()
