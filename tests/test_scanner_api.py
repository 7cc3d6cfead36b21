"""The Scanner API: options, the result stream, cancellation, reports.

Stream mechanics (backpressure, duplicates, errors) are checked with an in-memory
engine plugged into ``ENGINES``; everything else scans loopback for real with
listeners whose ports the test knows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from ipaddress import ip_address
from pathlib import Path
from typing import ClassVar

import pytest

import portlib
from portlib.errors import PortSpecError, PrivilegeError, ScanError, TargetSpecError
from portlib.model import HostState, PortResult, PortState, Protocol, Reason, ScanMethod
from portlib.scanning import ENGINES, QUEUE_SIZE, Scanner, parse_methods, scan, scan_async
from portlib.scanning.contract import Emit, ScanWork, emit_many
from portlib.services import top_ports
from tests.user_typecheck import mypy_on

REPO = Path(__file__).resolve().parent.parent
V4 = ip_address("127.0.0.1")
V6 = ip_address("::1")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------- options


def test_method_table_and_validation() -> None:
    assert parse_methods("connect") == (ScanMethod.CONNECT,)
    assert parse_methods(["udp", "syn"]) == (ScanMethod.SYN, ScanMethod.UDP)
    assert parse_methods(ScanMethod.PING) == (ScanMethod.PING,)
    for bad, message in [
        ("xmas", "unknown scan method"),
        (["syn", "ack"], "only one TCP method"),
        (["ping", "udp"], "cannot be combined"),
        ([], "no scan method"),
    ]:
        with pytest.raises(ScanError, match=message):
            parse_methods(bad)
    assert set(ENGINES) == {m for m in ScanMethod if m is not ScanMethod.PING}


def test_default_ports_are_nmaps_top_1000() -> None:
    assert Scanner("127.0.0.1").ports == {Protocol.TCP: top_ports(1000, "tcp")}
    both = Scanner("127.0.0.1", method=["syn", "udp"]).ports
    assert both == {Protocol.TCP: top_ports(1000, "tcp"), Protocol.UDP: top_ports(1000, "udp")}
    assert Scanner("127.0.0.1", method="ping").ports == {}


def test_port_arguments() -> None:
    assert Scanner("h", "22,80").ports == {Protocol.TCP: (22, 80)}
    assert Scanner("h", [443, 22, 443]).ports == {Protocol.TCP: (443, 22)}
    mixed = Scanner("h", "T:80,U:53", method=["syn", "udp"]).ports
    assert mixed == {Protocol.TCP: (80,), Protocol.UDP: (53,)}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ports": "70000"}, PortSpecError, "70000"),
        ({"ports": [1, 70000]}, PortSpecError, "70000"),
        ({"ports": ["22"]}, PortSpecError, "bad port"),
        ({"ports": "U:53"}, PortSpecError, "no TCP ports"),
        ({"ports": 5}, PortSpecError, "ports must be"),
        ({"timing": 7}, ScanError, "timing level"),
        ({"timeout": -1}, ScanError, "timeout"),
        ({"retries": 1.5}, ScanError, "retries must be an integer"),
        ({"rate": 0}, ScanError, "rate"),
        ({"concurrency": 0}, ScanError, "concurrency"),
        ({"method": "stealth"}, ScanError, "unknown scan method"),
        ({"shard": (4, 4)}, ScanError, "shard index"),
        ({"shard": "0/4"}, ScanError, "numbered 1 to 4"),
        ({"seed": -1}, ScanError, "seed"),
        ({"discovery": "icmp"}, ScanError, "discovery must be"),
    ],
)
def test_bad_options_raise_before_scanning(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        Scanner("127.0.0.1", **kwargs)


async def test_bad_targets_raise_on_enter() -> None:
    with pytest.raises(TargetSpecError, match=r"300\.1\.1\.1"):
        async with Scanner("300.1.1.1", "22"):
            pass
    with pytest.raises(TargetSpecError, match="no targets left"):
        async with Scanner("127.0.0.1", "22", exclude="127.0.0.1"):
            pass
    with pytest.raises(TargetSpecError):
        Scanner(12345)  # type: ignore[arg-type]


async def test_raw_methods_need_the_privilege(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("portlib.scanning.privilege.has_raw_privilege", lambda: False)
    with pytest.raises(PrivilegeError, match=r"CAP_NET_RAW.*connect"):
        async with Scanner("127.0.0.1", "22", method="syn"):
            pass


async def test_scan_refuses_a_running_loop() -> None:
    with pytest.raises(ScanError, match="scan_async"):
        scan("127.0.0.1", "22")


# ------------------------------------------------ stream mechanics, in memory


async def test_channel_order_capacity_and_close() -> None:
    from portlib.scanning.channel import Channel, EndOfStream

    channel: Channel[int] = Channel(2)
    assert channel.put(1) is True
    assert channel.put(2) is False  # full: the producer must wait for room
    waiting = asyncio.create_task(channel.wait_for_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await channel.receive() == 1
    await asyncio.wait_for(waiting, 1)
    receiving = asyncio.create_task(channel.receive())
    assert channel.get_nowait() == 2
    await asyncio.sleep(0)
    assert not receiving.done()
    channel.put(3)
    assert await asyncio.wait_for(receiving, 1) == 3
    channel.put(4)
    channel.close()  # buffered items are still delivered, then the end
    assert await channel.receive() == 4
    with pytest.raises(EndOfStream):
        await channel.receive()
    with pytest.raises(RuntimeError):
        channel.put(5)
    await asyncio.wait_for(channel.wait_for_room(), 1)  # closed: never blocks


class MemoryEngine:
    """Decides every (host, port) as closed at once; optional duplicates or failure."""

    instances: ClassVar[list[MemoryEngine]] = []
    duplicate = False
    fail_after: int | None = None
    probes_sent = 0

    def __init__(self, method: ScanMethod) -> None:
        self.method = method
        self.emitted = 0
        self.cancelled = False
        MemoryEngine.instances.append(self)

    async def run(self, work: ScanWork, emit: Emit) -> None:
        try:
            for host in work.hosts:
                for port in work.ports:
                    if self.fail_after is not None and self.emitted >= self.fail_after:
                        raise ScanError("memory engine gave up")
                    result = PortResult(
                        host, port, work.protocol, PortState.CLOSED, Reason.CONN_REFUSED
                    )
                    await emit(result)
                    if self.duplicate:
                        await emit(result)
                    self.emitted += 1
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest.fixture
def memory_engine(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(ENGINES, ScanMethod.CONNECT, MemoryEngine)
    monkeypatch.setattr(MemoryEngine, "instances", [])
    return MemoryEngine


class BatchEngine:
    """Decides every port as closed, handing verdicts over in batches of 1000."""

    handed = 0
    probes_sent = 0

    def __init__(self, method: ScanMethod) -> None:
        self.method = method

    async def run(self, work: ScanWork, emit: Emit) -> None:
        hand_over = emit_many(emit)
        results = [
            PortResult(h, p, work.protocol, PortState.CLOSED, Reason.RESET)
            for h in work.hosts
            for p in work.ports
        ]
        for start in range(0, len(results), 1000):
            await hand_over(results[start : start + 1000] * 2)  # each verdict twice
            BatchEngine.handed = start + 1000


async def test_batches_are_deduplicated_recorded_first_and_backpressured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(ENGINES, ScanMethod.CONNECT, BatchEngine)
    async with Scanner("127.0.0.1", "1-65535", discovery=False) as results:
        seen = [await anext(results) for _ in range(10)]
        for _ in range(20):
            await asyncio.sleep(0)
        # A batch is more than the queue holds: the engine waits after its first.
        assert BatchEngine.handed <= max(1000, QUEUE_SIZE + 1000)
    report = results.report()
    assert report.interrupted
    ports = [p.port for p in report.hosts[0].all_ports()]
    assert len(ports) == len(set(ports))  # the duplicates were dropped
    # Every verdict of the batch whose hand-over waited is in the report.
    assert len(ports) >= 1000 and len(ports) % 1000 == 0
    assert [r.port for r in seen] == sorted(r.port for r in seen)


async def test_emit_many_falls_back_to_one_call_per_verdict() -> None:
    got: list[int] = []

    async def emit(result: PortResult) -> None:
        got.append(result.port)

    batch = [
        PortResult(ip_address("192.0.2.1"), p, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK)
        for p in (3, 1, 2)
    ]
    await emit_many(emit)(batch)
    assert got == [3, 1, 2]


async def test_stream_has_backpressure_and_clean_cancellation(memory_engine) -> None:
    async with Scanner("127.0.0.1", "1-65535", discovery=False) as results:
        first = await anext(results)
        for _ in range(20):
            await asyncio.sleep(0)
        (engine,) = memory_engine.instances
        # The engine waits on a full queue instead of running ahead of the consumer.
        assert QUEUE_SIZE <= engine.emitted <= QUEUE_SIZE + 2
    assert engine.cancelled
    report = results.report()
    assert report.interrupted
    assert first.service == "tcpmux"  # port 1, named from the registry
    # Each verdict is recorded as it is decided, also the one whose hand-over was cancelled.
    assert engine.emitted <= len(report.hosts[0].all_ports()) <= engine.emitted + 1


async def test_duplicates_are_dropped(memory_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MemoryEngine, "duplicate", True)
    seen = []
    async with Scanner("127.0.0.1 ::1", "1-50", discovery=False) as results:
        async for r in results:
            seen.append((r.host, r.port))
    assert len(seen) == len(set(seen)) == 100
    assert not results.report().interrupted


async def test_engine_error_reaches_the_consumer(memory_engine, monkeypatch) -> None:
    monkeypatch.setattr(MemoryEngine, "fail_after", 5)
    got = 0
    with pytest.raises(ScanError, match="gave up"):
        async with Scanner("127.0.0.1", "1-50", discovery=False) as results:
            async for _ in results:
                got += 1
    assert got == 5
    assert results.report().interrupted


async def test_progress_reports_done_and_total(memory_engine) -> None:
    calls: list[tuple[int, int]] = []
    async with Scanner(
        "127.0.0.1 127.0.0.2",
        "1-300",
        discovery=False,
        on_progress=lambda d, t: calls.append((d, t)),
    ) as results:
        async for _ in results:
            pass
    assert calls[:2] == [(0, 0), (0, 600)] and calls[-1] == (600, 600)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # A shard's total is its exact share of the space.
    sharded = Scanner("127.0.0.1 127.0.0.2", "1-300", discovery=False, shard=(1, 3))
    async with sharded as results:
        async for _ in results:
            pass
    assert sharded.progress[1] == 200
    assert sharded.seed == 0  # sharded scans agree on the order without a seed


# ------------------------------------------------------------- real loopback


@pytest.fixture
def loopback_ports():
    """Listeners on 127.0.0.1 and ::1 (same port numbers where possible) and closed ports."""
    socks: list[socket.socket] = []
    opened: dict[str, list[int]] = {"127.0.0.1": [], "::1": []}
    for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        for _ in range(3):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((host, 0))
            s.listen(64)
            socks.append(s)
            opened[host].append(s.getsockname()[1])
    closed = []
    for _ in range(4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed.append(s.getsockname()[1])
    yield opened, closed
    for s in socks:
        s.close()


@pytest.mark.live
async def test_stream_yields_every_host_port_once(loopback_ports) -> None:
    opened, closed = loopback_ports
    ports = sorted(set(opened["127.0.0.1"] + opened["::1"] + closed))
    got: list[PortResult] = []
    async with Scanner(["127.0.0.1", "::1"], ports, timing=4) as results:
        async for r in results:
            got.append(r)
    keys = [(r.host, r.port) for r in got]
    assert len(keys) == len(set(keys)) == 2 * len(ports)
    for r in got:
        expected = r.port in opened[str(r.host)]
        assert (r.state is PortState.OPEN) == expected, r
        assert r.reason is (Reason.SYN_ACK if expected else Reason.CONN_REFUSED)
    report = results.report()
    assert not report.interrupted
    assert [h.address for h in report.hosts] == [V4, V6]


@pytest.mark.live
@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "localhost"])
def test_scan_is_exact_on_loopback(loopback_ports, target: str) -> None:
    opened, closed = loopback_ports
    address = "::1" if target == "::1" else "127.0.0.1"
    ports = opened[address] + closed + [22]
    report = scan(target, ports)
    (host,) = report.hosts
    assert host.state is HostState.UP and host.reason is Reason.LOCALHOST_RESPONSE
    assert str(host.address) == address
    assert host.hostname == ("localhost" if target == "localhost" else None)
    assert [p.port for p in host.open_ports()] == sorted(opened[address])
    assert [p.port for p in host.ports] == sorted(ports)
    assert {p.state for p in host.ports if p.port not in opened[address]} <= {PortState.CLOSED}
    assert next(p for p in host.ports if p.port == 22).service == "ssh"
    assert not report.interrupted and report.method is ScanMethod.CONNECT


@pytest.mark.live
async def test_shards_partition_the_probe_space(loopback_ports) -> None:
    opened, closed = loopback_ports
    ports = opened["127.0.0.1"] + closed + list(range(20000, 20100))
    seen: list[tuple[object, int]] = []
    for shard in ("1/3", "2/3", "3/3"):
        report = await scan_async(["127.0.0.1", "::1"], ports, shard=shard, seed=9, timing=4)
        seen += [(p.host, p.port) for h in report.hosts for p in h.all_ports()]
    assert len(seen) == len(set(seen)) == 2 * len(ports)


@pytest.mark.live
async def test_default_scan_covers_top_1000(loopback_ports) -> None:
    report = await scan_async("127.0.0.1", timing=4)
    assert report.ports_per_host == 1000
    assert [p.port for p in report.hosts[0].all_ports()] == sorted(top_ports(1000, "tcp"))


@pytest.mark.live
async def test_leaving_early_frees_every_socket() -> None:
    before = open_fds()
    async with Scanner("127.0.0.1", "1-65535", discovery=False) as results:
        async for _ in results:
            break
        assert len(open_fds()) > len(before)  # the scan was under way
    await asyncio.sleep(0)
    assert open_fds() == before
    assert results.report().interrupted


@pytest.mark.live
async def test_scan_async_reraises_cancellation_and_frees_sockets() -> None:
    before = open_fds()
    task = asyncio.create_task(scan_async("127.0.0.1", "1-65535", discovery=False, rate=2000))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_fds() == before


@pytest.mark.live
async def test_partial_report_of_an_interrupted_stream() -> None:
    async with Scanner("127.0.0.1", "1-5000", discovery=False, rate=500) as results:
        got: list[PortResult] = []
        async for r in results:
            got.append(r)
            if len(got) == 10:
                break
    report = results.report()
    assert report.interrupted
    assert {p.port for p in report.hosts[0].all_ports()} >= {r.port for r in got}
    assert len(report.hosts[0].all_ports()) < 5000


@pytest.mark.live
def python_script(code: str) -> subprocess.Popen[str]:
    """``code`` in a fresh interpreter using this checkout, its output piped back."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_ctrl_c_in_blocking_scan_returns_the_partial_report() -> None:
    code = textwrap.dedent(
        """
        import portlib, sys
        print("started", flush=True)
        report = portlib.scan("127.0.0.1", "1-5000", discovery=False, rate=300)
        print(report.interrupted, len(report.hosts[0].all_ports()), flush=True)
        """
    )
    proc = python_script(code)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    import time

    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    interrupted, decided = out.split()
    assert interrupted == "True"
    assert 0 < int(decided) < 5000


def _scan_loop_under_ctrl_c(option: str, presses: int) -> tuple[int, str, str]:
    """A script scanning in a loop gets ``presses`` Ctrl-C, one second apart."""
    code = textwrap.dedent(
        f"""
        import portlib
        for round in range(3):
            print("round", round, flush=True)
            report = portlib.scan("127.0.0.1", "1-5000", discovery=False, rate=300{option})
            print("report", report.interrupted, flush=True)
        print("loop ended", flush=True)
        """
    )
    proc = python_script(code)
    assert proc.stdout is not None
    import time

    seen = []
    for _ in range(presses):
        while not (line := proc.stdout.readline()).startswith("round"):
            assert line, "the script ended before its next round"
            seen.append(line)
        seen.append(line)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(seen) + out, err


def test_a_second_ctrl_c_stops_a_loop_of_blocking_scans() -> None:
    code, out, err = _scan_loop_under_ctrl_c("", presses=2)
    assert code != 0 and "KeyboardInterrupt" in err
    assert out.count("report True") == 1  # the first Ctrl-C gave its partial report
    assert "loop ended" not in out


def test_interrupt_raise_propagates_the_first_ctrl_c() -> None:
    code, out, err = _scan_loop_under_ctrl_c(', interrupt="raise"', presses=1)
    assert code != 0 and "KeyboardInterrupt" in err
    assert "report" not in out


def test_interrupt_takes_report_or_raise() -> None:
    with pytest.raises(ScanError, match="interrupt must be"):
        scan("127.0.0.1", "22", interrupt="ignore")  # type: ignore[arg-type]


@pytest.mark.live
def test_one_tcp_method_plus_udp_in_one_scan(loopback_ports) -> None:
    from portlib.scanning.privilege import has_raw_privilege

    if not has_raw_privilege():
        pytest.skip("SYN and UDP scans need CAP_NET_RAW (run as root)")
    opened, closed = loopback_ports
    listening, shut = opened["127.0.0.1"][0], closed[0]
    report = scan("127.0.0.1", [listening, shut], method=["udp", "syn"], timing=4)
    assert report.protocols == (Protocol.TCP, Protocol.UDP)
    got = [(p.port, p.protocol, p.state, p.reason) for p in report.hosts[0].ports]
    tcp = Protocol.TCP
    udp = Protocol.UDP
    expected = sorted(
        [
            (listening, tcp, PortState.OPEN, Reason.SYN_ACK),
            (shut, tcp, PortState.CLOSED, Reason.RESET),
            (listening, udp, PortState.CLOSED, Reason.PORT_UNREACH),
            (shut, udp, PortState.CLOSED, Reason.PORT_UNREACH),
        ],
        key=lambda row: (row[0], row[1].value),
    )
    assert got == expected


@pytest.mark.live
def test_connect_scan_never_loads_scapy() -> None:
    code = (
        "import sys, portlib; portlib.scan('127.0.0.1', '22'); "
        "print(any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert done.stdout.strip() == "False", done.stderr


def test_public_names() -> None:
    assert portlib.scan is scan and portlib.scan_async is scan_async
    assert portlib.Scanner is Scanner


def test_a_misspelt_scan_option_fails_a_users_type_check(tmp_path: Path) -> None:
    """``scan``'s options are a TypedDict: mypy catches ``timming=4`` in a user's script."""
    proc = mypy_on(
        tmp_path / "user_script.py",
        "import portlib\n"
        'portlib.scan("127.0.0.1", "22", timing=4, retries=1)\n'
        'portlib.scan("127.0.0.1", "22", timming=4)\n',
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'Unexpected keyword argument "timming"' in proc.stdout
    assert "user_script.py:2" not in proc.stdout  # the well-spelt call passes
