"""ConnectEngine on loopback: exact verdicts against listeners the test owns.

Loopback can show open (a listener), closed (nothing there: RST) and filtered
(a listener whose accept queue is full drops SYNs silently). The full-range
tests run in a private network namespace when root (``unshare -n``), so no other
process's listener can appear; otherwise they compare with the kernel's
listening table.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from portlib.errors import ScanError
from portlib.model import PortResult, Protocol, ScanMethod
from portlib.scanning.connect.core import ConnectCore
from portlib.scanning.connect.engine import ConnectEngine, descriptor_budget
from portlib.scanning.contract import ScanWork
from portlib.scanning.timing import preset
from tests.connect_probe import run_engine

ROOT = Path(__file__).resolve().parent.parent
ISOLATED = os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _listeners(host: str, count: int, backlog: int = 16) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out = []
    for _ in range(count):
        s = socket.socket(family)
        s.bind((host, 0))
        s.listen(backlog)
        out.append(s)
    return out


def _bound_only(host: str, count: int) -> list[socket.socket]:
    """Ports held but not listening: guaranteed closed, and nobody else can take them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out = []
    for _ in range(count):
        s = socket.socket(family)
        s.bind((host, 0))
        out.append(s)
    return out


def _full_backlog(host: str, count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """Listeners with a full accept queue: the kernel drops further SYNs (filtered)."""
    listeners = _listeners(host, count, backlog=0)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    fillers = []
    for listener in listeners:
        c = socket.socket(family)
        c.connect(listener.getsockname())
        fillers.append(c)
    return listeners, fillers


def _port(s: socket.socket) -> int:
    return int(s.getsockname()[1])


def _close(*groups: list[socket.socket]) -> None:
    for group in groups:
        for s in group:
            s.close()


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _run_isolated(code: str, timeout: float = 240) -> object:
    """Run ``code`` in a fresh Python (in a private netns when root); it prints JSON."""
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if ISOLATED:
        argv = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


HOSTS = ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(
    not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine"))]  # fmt: skip


@pytest.mark.parametrize("host", HOSTS)
def test_open_and_closed_exact(host: str) -> None:
    open_ = _listeners(host, 5)
    closed = _bound_only(host, 5)
    try:
        ports = [_port(s) for s in open_ + closed]
        verdicts = run_engine(host, ports)
        expected = sorted(
            [(host, _port(s), "open", "syn-ack") for s in open_]
            + [(host, _port(s), "closed", "conn-refused") for s in closed]
        )
        assert verdicts == expected
    finally:
        _close(open_, closed)


@pytest.mark.parametrize("host", HOSTS)
def test_silent_port_is_filtered_after_retries(host: str) -> None:
    listeners, fillers = _full_backlog(host, 3)
    closed = _bound_only(host, 20)
    try:
        silent = {_port(s) for s in listeners}
        ports = sorted(silent | {_port(s) for s in closed})
        verdicts = run_engine(host, ports, timing=4)
        for h, port, state, reason in verdicts:
            assert h == host
            if port in silent:
                assert (state, reason) == ("filtered", "no-response")
            else:
                assert (state, reason) == ("closed", "conn-refused")
    finally:
        _close(listeners, fillers, closed)


def test_results_carry_rtt_and_stream_before_the_end() -> None:
    open_ = _listeners("127.0.0.1", 2)
    listeners, fillers = _full_backlog("127.0.0.1", 1)
    try:
        ports = (*(_port(s) for s in open_), _port(listeners[0]), *range(1, 300))
        work = ScanWork((ip_address("127.0.0.1"),), ports, Protocol.TCP, preset(4), seed=3)
        got: list[tuple[float, PortResult]] = []

        async def emit(result: PortResult) -> None:
            got.append((time.monotonic(), result))
            await asyncio.sleep(0)  # a consumer that yields: the engine must cope

        asyncio.run(ConnectEngine().run(work, emit))
        assert len({(r.host, r.port) for _, r in got}) == len(got) == len(set(ports))
        by_port = {r.port: r for _, r in got}
        for s in open_:
            rtt = by_port[_port(s)].rtt
            assert rtt is not None and rtt >= 0
        assert by_port[_port(listeners[0])].rtt is None  # no answer, no RTT
        # the closed ports came out long before the silent port's timeouts ran out
        first, last = got[0][0], got[-1][0]
        assert last - first >= 0.1
    finally:
        _close(open_, listeners, fillers)


def test_cancellation_closes_every_socket() -> None:
    listeners, fillers = _full_backlog("127.0.0.1", 40)
    closed = _bound_only("127.0.0.1", 5)
    try:
        ports = tuple(sorted({_port(s) for s in listeners + closed} | set(range(1, 400))))
        work = ScanWork((ip_address("127.0.0.1"),), ports, Protocol.TCP, preset(3), seed=5)
        emitted: list[PortResult] = []

        async def emit(result: PortResult) -> None:
            emitted.append(result)

        async def scenario() -> tuple[int, int]:
            before = _fd_count()
            task = asyncio.create_task(ConnectEngine().run(work, emit))
            for _ in range(300):  # until some verdicts are out and silent probes wait
                await asyncio.sleep(0.01)
                if emitted:
                    break
            during = _fd_count()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert during > before  # there really were sockets open to leak
            return before, _fd_count()

        before, after = asyncio.run(scenario())
        assert after == before
        assert 0 < len(emitted) < len(ports)
    finally:
        _close(listeners, fillers, closed)


def test_sequential_probes_ports_in_the_order_given() -> None:
    # nmap's -r: closed and open ports on loopback are decided as they are sent.
    open_ = _listeners("127.0.0.1", 3)
    try:
        ports = tuple(sorted({_port(s) for s in open_} | set(range(1, 2000))))
        host = ip_address("127.0.0.1")
        got: list[int] = []

        async def emit(result: PortResult) -> None:
            got.append(result.port)

        for sequential in (True, False):
            got.clear()
            work = ScanWork((host,), ports, Protocol.TCP, preset(4), seed=3, sequential=sequential)
            asyncio.run(ConnectEngine(workers=1).run(work, emit))
            assert sorted(got) == list(ports)
            assert (got == list(ports)) is sequential
    finally:
        _close(open_)


def test_rate_cap_spaces_probes() -> None:
    closed = _bound_only("127.0.0.1", 30)
    try:
        start = time.monotonic()
        verdicts = run_engine("127.0.0.1", [_port(s) for s in closed], rate=100)
        elapsed = time.monotonic() - start
        assert len(verdicts) == 30
        assert elapsed >= (30 - 1) / 100 * 0.9  # a cap is a floor on the time taken
    finally:
        _close(closed)


def test_engine_refuses_other_methods_and_protocols() -> None:
    with pytest.raises(ScanError, match="connect"):
        ConnectEngine(ScanMethod.SYN)
    work = ScanWork((ip_address("127.0.0.1"),), (1,), Protocol.UDP, preset(3), seed=1)

    async def emit(result: PortResult) -> None:
        raise AssertionError("nothing to emit")

    with pytest.raises(ScanError, match="TCP"):
        asyncio.run(ConnectEngine().run(work, emit))


def test_descriptor_budget_leaves_headroom() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 4 <= descriptor_budget() < soft


def test_self_connect_trap_whole_ephemeral_range() -> None:
    # The kernel can pick the scanned port as the source port: the socket connects
    # to itself. Scan the whole ephemeral range several times; only real listeners
    # may come out open.
    result = _run_isolated(
        """
        import json, socket
        from tests.connect_probe import run_engine
        from tests.test_connect_engine import listening_ports
        low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        mine = []
        for _ in range(3):
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); mine.append(s)
        rounds = []
        for seed in (1, 2, 3):
            before = listening_ports()
            v = run_engine("127.0.0.1", range(low, high + 1), seed=seed)
            after = listening_ports()
            opened = [p for _, p, state, _ in v if state == "open"]
            rounds.append([opened, sorted(before | after), len(v)])
        print(json.dumps({"mine": [s.getsockname()[1] for s in mine], "rounds": rounds,
                          "size": high - low + 1}))
        """
    )
    assert isinstance(result, dict)
    for opened, listening, count in result["rounds"]:
        assert count == result["size"]
        assert set(result["mine"]) <= set(opened)
        assert set(opened) <= set(listening), "phantom open port (self-connect?)"
        if ISOLATED:
            assert sorted(opened) == sorted(result["mine"])


def test_full_range_under_ulimit_256() -> None:
    result = _run_isolated(
        """
        import json, resource, socket
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        from tests.connect_probe import run_engine
        from tests.test_connect_engine import listening_ports
        mine = []
        for _ in range(20):
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); mine.append(s)
        before = listening_ports()
        v = run_engine("127.0.0.1", range(1, 65536), timing=3)
        after = listening_ports()
        print(json.dumps({"mine": [s.getsockname()[1] for s in mine], "count": len(v),
                          "open": [p for _, p, st, _ in v if st == "open"],
                          "other": sorted({st for _, _, st, _ in v} - {"open", "closed"}),
                          "listening": sorted(before | after)}))
        """
    )
    assert isinstance(result, dict)
    assert result["count"] == 65535
    assert result["other"] == []
    assert set(result["mine"]) <= set(result["open"]) <= set(result["listening"])
    if ISOLATED:
        assert sorted(result["open"]) == sorted(result["mine"])


def test_descriptor_exhaustion_mid_scan_is_retried_not_misreported() -> None:
    # Another part of the process grabs every free descriptor for a while, when
    # silent probes hold sockets: the engine must wait and shrink its window,
    # never call a port anything it is not.
    result = _run_isolated(
        """
        import asyncio, json, resource, socket
        from ipaddress import ip_address
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        from portlib.model import Protocol
        from portlib.scanning.connect.engine import ConnectEngine
        from portlib.scanning.contract import ScanWork
        from portlib.scanning.timing import preset
        from tests.test_connect_engine import _full_backlog, _listeners, listening_ports
        mine = _listeners("127.0.0.1", 10)
        silent, fillers = _full_backlog("127.0.0.1", 40)
        mine_ports = {s.getsockname()[1] for s in mine}
        silent_ports = {s.getsockname()[1] for s in silent}
        ports = tuple(sorted(mine_ports | silent_ports | set(range(1, 3000))))
        work = ScanWork((ip_address("127.0.0.1"),), ports, Protocol.TCP, preset(4), seed=9)
        seen, hog = {}, []
        engine = ConnectEngine()
        async def main():
            loop = asyncio.get_running_loop()
            def release():
                for s in hog: s.close()
                hog.clear()
            async def emit(r):
                assert r.port not in seen
                seen[r.port] = str(r.state)
                if len(seen) == 100:
                    try:
                        while True: hog.append(socket.socket())
                    except OSError:
                        pass
                    loop.call_later(0.3, release)
            await engine.run(work, emit)
        before = listening_ports()
        asyncio.run(main())
        others = (before | listening_ports()) - mine_ports - silent_ports
        def expected(p):
            return "open" if p in mine_ports else "filtered" if p in silent_ports else "closed"
        print(json.dumps({"count": len(seen), "total": len(ports), "stalls": engine.resource_stalls,
                          "wrong": [p for p, st in seen.items()
                                    if p not in others and st != expected(p)]}))
        """
    )
    assert isinstance(result, dict)
    assert result["count"] == result["total"]
    assert result["wrong"] == []
    assert result["stalls"] > 0  # the starvation really happened


def listening_ports(host: str = "127.0.0.1") -> set[int]:
    """TCP ports listening on ``host`` or the wildcard address, from /proc/net/tcp."""
    wanted = {socket.inet_aton(host)[::-1].hex().upper(), "00000000"}
    ports = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            addr, port = fields[1].split(":")
            if fields[3] == "0A" and addr in wanted:
                ports.add(int(port, 16))
    return ports


def test_worker_processes_agree_with_one_process_and_shards_partition() -> None:
    result = _run_isolated(
        """
        import json, socket
        from tests.connect_probe import run_engine
        from tests.test_connect_engine import _full_backlog, _listeners
        mine = _listeners("127.0.0.1", 5)
        silent, fillers = _full_backlog("127.0.0.1", 3)
        ports = sorted({s.getsockname()[1] for s in mine + silent} | set(range(1, 15001)))
        one = run_engine("127.0.0.1", ports, workers=1)
        two = run_engine("127.0.0.1", ports, workers=2)
        halves = [run_engine("127.0.0.1", ports, workers=2, shard=(i, 2)) for i in (0, 1)]
        print(json.dumps({"one": one, "two": two, "halves": halves,
                          "mine": [s.getsockname()[1] for s in mine],
                          "silent": [s.getsockname()[1] for s in silent]}))
        """
    )
    assert isinstance(result, dict)
    assert result["one"] == result["two"]
    first, second = ({tuple(v) for v in half} for half in result["halves"])
    assert not first & second
    assert sorted(first | second) == [tuple(v) for v in result["one"]]
    states = {port: state for _, port, state, _ in result["one"]}
    assert all(states[p] == "open" for p in result["mine"])
    assert all(states[p] == "filtered" for p in result["silent"])


def test_cancelling_a_worker_scan_reaps_workers_and_closes_everything() -> None:
    listeners, fillers = _full_backlog("127.0.0.1", 20)
    try:
        silent = {_port(s) for s in listeners}
        ports = tuple(sorted(silent | set(range(1, 20001))))
        work = ScanWork((ip_address("127.0.0.1"),), ports, Protocol.TCP, preset(3), seed=2)
        emitted: list[PortResult] = []

        async def emit(result: PortResult) -> None:
            emitted.append(result)

        async def scenario() -> tuple[int, int]:
            before = _fd_count()
            task = asyncio.create_task(ConnectEngine(workers=2).run(work, emit))
            for _ in range(500):
                await asyncio.sleep(0.01)
                if len(emitted) > 100:
                    break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return before, _fd_count()

        before, after = asyncio.run(scenario())
        assert after == before
        assert 100 < len(emitted) < len(ports)
        with pytest.raises(ChildProcessError):
            os.waitpid(-1, os.WNOHANG)  # every worker was reaped
    finally:
        _close(listeners, fillers)


def test_fork_failure_falls_back_to_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fork, calls = os.fork, []

    def second_fork_fails() -> int:
        calls.append(1)
        if len(calls) > 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(os, "fork", second_fork_fails)
    open_ = _listeners("127.0.0.1", 2)
    try:
        verdicts = run_engine("127.0.0.1", range(1, 12001), workers=2)
        assert len(calls) == 2 and len(verdicts) == 12000  # each port exactly once
        states = {port: state for _, port, state, _ in verdicts}
        assert all(states[_port(s)] == "open" for s in open_ if _port(s) <= 12000)
        with pytest.raises(ChildProcessError):
            os.waitpid(-1, os.WNOHANG)  # the worker that did start was reaped
    finally:
        _close(open_)


def test_phantom_check_on_hand_made_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from portlib.scanning.connect import selfconnect

    work = ScanWork((ip_address("127.0.0.1"),), (1,), Protocol.TCP, preset(3), seed=1)
    core = ConnectCore.for_work(work, None, 10)
    listener = _listeners("127.0.0.1", 1)[0]
    me = socket.socket()
    real = socket.create_connection(listener.getsockname())
    try:
        assert _port(listener) in (selfconnect.listening_ports() or set())
        me.bind(("127.0.0.1", 0))
        me.connect(me.getsockname())  # a socket connected to itself: what the trap makes
        assert core.self_connects.is_phantom(me, core.in_flight.probes())
        assert not core.self_connects.is_phantom(real, core.in_flight.probes())
        # Connected, but no listener on that port here: another worker's probe socket.
        monkeypatch.setattr(selfconnect, "listening_ports", lambda: frozenset())
        core.self_connects.listening = frozenset()
        assert core.self_connects.is_phantom(real, core.in_flight.probes())
        # Without /proc there is no telling: trust the connection.
        monkeypatch.setattr(selfconnect, "listening_ports", lambda: None)
        assert not core.self_connects.is_phantom(real, core.in_flight.probes())
    finally:
        _close([me, real, listener])
        core.close()


def test_silence_before_any_evidence_is_not_yet_filtered() -> None:
    """Ports silent while the path was not up (a lost neighbour discovery) are retried.

    With no answer yet the budget is nmap's two tries; that budget came from no
    evidence, so probes at it wait. Answers that arrive later raise the budget and
    the waiting probes go out again instead of being called filtered. Fake clock:
    deadlines pass exactly when the test says.
    """
    host = "127.0.0.1"
    listeners, fillers = _full_backlog(host, 10)  # silent until their queue is drained
    closed = _bound_only(host, 10)
    ports = tuple(_port(s) for s in listeners + closed)
    work = ScanWork((ip_address(host),), ports, Protocol.TCP, preset(4), seed=1)
    core = ConnectCore.for_work(work, None, 10)
    now = [0.0]
    core.clock = lambda: now[0]
    core.queue.order = iter(range(len(ports)))  # the silent ones first, filling the window
    accepted: list[socket.socket] = []
    try:
        core.send(0.0)
        assert len(core.in_flight) == 10 and not core.ledger.results
        now[0] = 0.6
        core.expire(now[0])  # first tries silent: retried
        core.send(now[0])
        now[0] = 5.0
        core.expire(now[0])  # second tries silent: the no-evidence budget is used up
        assert not core.ledger.results, "called filtered on a budget made from no evidence"
        core.send(now[0])  # the closed ports answer: the path works, the budget grows
        assert sorted(r[0] for r in core.ledger.results) == list(range(10, 20))
        for listener in listeners:  # now the silent ports can answer too
            accepted.append(listener.accept()[0])
        for _ in range(100):
            core.expire(now[0])
            core.send(now[0])
            core.poll()
            if core.remaining <= 0:
                break
            time.sleep(0.01)
        verdicts = {ports[i]: (str(s), str(r)) for i, s, r, _rtt in core.ledger.results}
        assert all(verdicts[_port(s)] == ("open", "syn-ack") for s in listeners)
        assert all(verdicts[_port(s)] == ("closed", "conn-refused") for s in closed)
    finally:
        _close(listeners, fillers, closed, accepted)
        core.close()


def test_silent_probes_wait_then_are_filtered_when_nothing_else_can_answer() -> None:
    """A scan that heard nothing is a firewalled host, once confirmed for a while.

    Each port gets nmap's two tries; then a few of them (3) are tried again until
    the silence has lasted past the horizon (4 s); then every port is filtered.
    """
    host = "127.0.0.1"
    listeners, fillers = _full_backlog(host, 6)
    ports = tuple(_port(s) for s in listeners)
    work = ScanWork((ip_address(host),), ports, Protocol.TCP, preset(4), seed=1)
    core = ConnectCore.for_work(work, None, 10)
    now = [0.0]
    core.clock = lambda: now[0]
    try:
        sends = []
        for step in range(1, 20):
            before = core.sent
            core.send(now[0])
            sends.append(core.sent - before)
            assert not core.ledger.results or core.remaining == 0  # all at once, at the end
            now[0] = step * 1.5
            core.expire(now[0])
            if core.remaining <= 0:
                break
        assert sorted(r[1:3] for r in core.ledger.results) == [("filtered", "no-response")] * 6
        # Two full rounds (first tries, retries), then 3 confirmers a round until 4 s.
        assert sends == [6, 6, 3]  # the confirmers went out at 3 s, silent until 4.25 s
    finally:
        _close(listeners, fillers)
        core.close()
