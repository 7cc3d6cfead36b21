"""``watch_sockets`` and ``portlib sockets -E`` / ``--watch``: a listener that starts and stops,
a connection that closes. The event logic itself (sockevents.Tracker) is checked without I/O."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

import portlib
from portlib.model import Endpoint, Family, Process, Protocol, Socket, SocketState
from portlib.socktable import watch as watch_mod
from portlib.socktable.details import SocketDetails
from portlib.socktable.sockevents import SocketEvent, SocketEventKind, Tracker
from tests.socket_lab import SocketLab, lab_or_skip

ROOT = Path(__file__).resolve().parent.parent
S = SocketState
OPENED, CLOSED, STATE = SocketEventKind.OPENED, SocketEventKind.CLOSED, SocketEventKind.STATE
BASELINE_S = 1.0  # time for the watch's first look, before the test changes anything


def sock(state: SocketState, port: int, cookie: int, owners: tuple[Process, ...] = ()) -> Socket:
    end = Endpoint(ip_address("127.0.0.1"), port)
    peer = Endpoint(ip_address("127.0.0.1"), 50000)
    return Socket(
        Protocol.TCP, Family.INET, end, peer, state, cookie, 0, 0, 0, owners, SocketDetails(cookie)
    )


def test_tracker_events() -> None:
    owner = (Process(7, "srv", ("srv",), "root", 3),)
    tracker = Tracker([sock(S.LISTEN, 80, 1, owner)])
    assert tracker.look([sock(S.LISTEN, 80, 1, owner)], 1.0) == []  # the baseline is quiet
    opened = tracker.look([sock(S.LISTEN, 80, 1, owner), sock(S.ESTABLISHED, 81, 2, owner)], 2.0)
    assert [(e.kind, e.socket.local.port) for e in opened] == [(OPENED, 81)]
    # The fd is gone by the time the socket closes: the event keeps the last owners.
    changed = tracker.look([sock(S.LISTEN, 80, 1, owner), sock(S.CLOSE_WAIT, 81, 2)], 3.0)
    assert [(e.kind, e.previous, e.socket.owners) for e in changed] == [
        (STATE, S.ESTABLISHED, owner)
    ]
    closed = tracker.look([sock(S.LISTEN, 80, 1, owner), sock(S.TIME_WAIT, 81, 2)], 4.0)
    assert [(e.kind, e.socket.state) for e in closed] == [(CLOSED, S.TIME_WAIT)]
    assert tracker.look([sock(S.LISTEN, 80, 1, owner)], 5.0) == []  # TIME-WAIT ends quietly
    # A look between the closing fd and the socket leaving the table: the owners stay.
    assert tracker.look([sock(S.LISTEN, 80, 1)], 5.5) == []
    assert tracker.known[1].owners == owner
    # The kernel's notice comes first; the next look finds the socket gone and says nothing.
    notice = tracker.destroyed(sock(S.CLOSE, 80, 1), 6.0, lambda s: False)
    assert notice is not None and (notice.kind, notice.socket.state) == (CLOSED, S.LISTEN)
    assert notice.socket.owners == owner
    assert tracker.look([], 7.0) == []
    # Never seen: reported if wanted, once.
    assert tracker.destroyed(sock(S.CLOSE, 90, 9), 8.0, lambda s: False) is None
    stranger = tracker.destroyed(sock(S.CLOSE, 91, 10), 8.0, lambda s: True)
    assert stranger is not None and stranger.socket.owners == ()
    assert tracker.destroyed(sock(S.CLOSE, 91, 10), 9.0, lambda s: True) is None
    # TIME-WAIT and half-open sockets never "open".
    assert tracker.look([sock(S.TIME_WAIT, 92, 11), sock(S.SYN_RECV, 93, 12)], 10.0) == []


@pytest.fixture
def lab() -> Iterator[SocketLab]:
    with lab_or_skip() as built:
        yield built


async def _collect(
    events: AsyncIterator[SocketEvent], want: int, timeout: float = 10.0
) -> list[SocketEvent]:
    found: list[SocketEvent] = []

    async def gather() -> None:
        async for event in events:
            found.append(event)
            if len(found) >= want:
                return

    await asyncio.wait_for(gather(), timeout)
    return found


@pytest.mark.lab
@pytest.mark.parametrize("groups", [True, False], ids=["destroy-groups", "polling-only"])
async def test_listener_starts_and_stops(
    lab: SocketLab, groups: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not groups:
        monkeypatch.setattr(watch_mod, "_join_groups", lambda mask, namespace: None)
    events = portlib.watch_sockets("tcp", filter="state listening", interval=0.1, netns=lab.ns)
    task = asyncio.ensure_future(_collect(events, 2))
    await asyncio.sleep(BASELINE_S)
    listener = await asyncio.to_thread(lab.run, {"op": "listen", "host": "127.0.0.1"})
    await asyncio.sleep(0.5)  # a look happens meanwhile: the close knows the owner
    await asyncio.to_thread(lab.run, {"op": "close", "id": listener["id"]})
    found = await task
    assert [(e.kind, e.socket.local.port, e.socket.state) for e in found] == [
        (OPENED, listener["port"], S.LISTEN),
        (CLOSED, listener["port"], S.LISTEN),
    ]
    assert all([o.pid for o in e.socket.owners] == [lab.pid] for e in found)
    await events.aclose()  # type: ignore[attr-defined]


@pytest.mark.lab
async def test_connection_close_is_announced_at_once(lab: SocketLab) -> None:
    port = lab.run({"op": "listen", "host": "::1"})["port"]
    events = portlib.watch_sockets("tcp", filter="state established", interval=0.1, netns=lab.ns)
    opened = asyncio.ensure_future(_collect(events, 2))
    await asyncio.sleep(BASELINE_S)
    conn = await asyncio.to_thread(lab.run, {"op": "connect", "host": "::1", "port": port})
    assert {e.kind for e in await opened} == {OPENED}
    closing = asyncio.ensure_future(_collect(events, 2))
    started = time.monotonic()
    # An abortive close of both ends (no TIME-WAIT): the kernel's destroy notices say so.
    await asyncio.to_thread(lab.run, {"op": "close", "id": conn["peer_id"]})
    await asyncio.to_thread(lab.run, {"op": "close", "id": conn["id"]})
    found = await closing
    assert {e.kind for e in found} == {CLOSED}
    assert {(e.socket.local.port, e.socket.remote.port) for e in found} == {
        (port, conn["port"]),
        (conn["port"], port),
    }
    assert all(e.socket.owners and e.socket.owners[0].pid == lab.pid for e in found)
    assert time.monotonic() - started < 5
    await events.aclose()  # type: ignore[attr-defined]


def _spawn_watch(lab: SocketLab, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "portlib", "sockets", "-N", lab.ns, *flags, "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline()


@pytest.mark.lab
def test_cli_watch_and_events(lab: SocketLab) -> None:
    watcher = _spawn_watch(lab, "-tlnp", "--watch")
    closes = _spawn_watch(lab, "-tn", "-E")
    try:
        time.sleep(BASELINE_S + 0.5)  # two interpreters start and take their first look
        listener = lab.run({"op": "listen", "host": "127.0.0.1"})
        opened = _line(watcher)
        assert opened.split()[:3] == ["opened", "tcp", "LISTEN"]
        assert f"127.0.0.1:{listener['port']}" in opened and f"pid={lab.pid}," in opened
        conn = lab.run({"op": "connect", "host": "127.0.0.1", "port": listener["port"]})
        lab.run({"op": "close", "id": conn["peer_id"]})
        lab.run({"op": "close", "id": conn["id"]})
        closed = [_line(closes), _line(closes)]
        assert all(line.split()[:2] == ["closed", "tcp"] for line in closed)
        assert any(f":{conn['port']}" in line for line in closed)
        lab.run({"op": "close", "id": listener["id"]})
        gone = _line(watcher)
        assert gone.split()[:3] == ["closed", "tcp", "LISTEN"]
        assert f"127.0.0.1:{listener['port']}" in gone
    finally:
        for proc in (watcher, closes):
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0  # Ctrl-C is how a watch ends
            assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
