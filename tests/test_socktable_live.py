"""The socket table on this machine's real sockets, checked against ``ss`` at the same moment.

A helper process holds TCP and UDP sockets on 127.0.0.1 and ::1; the tests
compare what portlib reports about exactly those sockets (other tests and
tools may be using loopback at the same time) with ``ss -tanp`` / ``ss -uanp``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import portlib
from portlib.errors import NoSuchProcess, PermissionDenied, PortNotInUse
from portlib.model import Family, Protocol, Socket, SocketState
from portlib.socktable import owners as owners_mod
from portlib.socktable import parse_socket_filter, read_inet_table
from portlib.socktable.query import CompiledFilter

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")

HOLDER = textwrap.dedent(
    """
    import json, socket, sys
    keep = []
    def listener(family, host):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((host, 0)); s.listen(8); keep.append(s); return s
    ports = {}
    V4, V6 = (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")
    for name, (family, host) in (("tcp4", V4), ("tcp6", V6)):
        lis = listener(family, host)
        client = socket.socket(family, socket.SOCK_STREAM); client.connect(lis.getsockname()[:2])
        server, _ = lis.accept(); keep += [client, server]
        ports[name] = lis.getsockname()[1]
        ports[name + "_client"] = client.getsockname()[1]
    for name, (family, host) in (("udp4", V4), ("udp6", V6)):
        u = socket.socket(family, socket.SOCK_DGRAM); u.bind((host, 0)); keep.append(u)
        ports[name] = u.getsockname()[1]
        c = socket.socket(family, socket.SOCK_DGRAM); c.connect((host, ports[name])); keep.append(c)
        ports[name + "_client"] = c.getsockname()[1]
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    """
)


@dataclass
class Holder:
    pid: int
    ports: dict[str, int]

    def all_ports(self) -> set[int]:
        return set(self.ports.values())


@pytest.fixture(scope="module")
def holder() -> Iterator[Holder]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    ports = json.loads(proc.stdout.readline())
    try:
        yield Holder(proc.pid, ports)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def _endpoint_text(sock: Socket, which: str) -> str:
    end = sock.local if which == "local" else sock.remote
    text = str(end)
    return text[: -len(":0")] + ":*" if end.port == 0 else text


def portlib_view(kind: str, ports: set[int]) -> set[tuple[str, str, str, tuple[int, ...]]]:
    seen = set()
    for s in portlib.sockets(kind, processes=True):
        assert isinstance(s, Socket)
        if s.local.port in ports:
            pids = tuple(sorted({o.pid for o in s.owners}))
            seen.add((s.state.value, _endpoint_text(s, "local"), _endpoint_text(s, "remote"), pids))
    return seen


def ss_view(flags: str, ports: set[int]) -> set[tuple[str, str, str, tuple[int, ...]]]:
    out = subprocess.run(["ss", flags], capture_output=True, text=True, check=True).stdout
    seen = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        local_port = cols[3].rsplit(":", 1)[1]
        if local_port.isdigit() and int(local_port) in ports:
            users = cols[5] if len(cols) > 5 else ""
            pids = tuple(
                sorted({int(p.split(",")[0].rstrip(")")) for p in users.split("pid=")[1:]})
            )
            seen.add((cols[0], cols[3], cols[4], pids))
    return seen


def held(
    view: set[tuple[str, str, str, tuple[int, ...]]], pid: int
) -> set[tuple[str, str, str, tuple[int, ...]]]:
    """Only the holder's sockets: a scanner elsewhere may use the same port numbers meanwhile."""
    return {entry for entry in view if entry[3] == (pid,)}


@needs_ss
def test_tcp_agrees_with_ss(holder: Holder) -> None:
    ports = holder.all_ports()
    ours = held(portlib_view("tcp", ports), holder.pid)
    theirs = held(ss_view("-tanp", ports), holder.pid)
    assert ours == theirs
    states = {state for state, *_ in ours}
    assert states == {"LISTEN", "ESTAB"}
    assert len(ours) == 6  # a listener, a client and an accepted socket, on v4 and v6
    assert any(local.startswith("[::1]:") for _, local, _, _ in ours)


@needs_ss
def test_udp_agrees_with_ss(holder: Holder) -> None:
    ports = holder.all_ports()
    ours = held(portlib_view("udp", ports), holder.pid)
    theirs = held(ss_view("-uanp", ports), holder.pid)
    assert ours == theirs
    assert {state for state, *_ in ours} == {"UNCONN", "ESTAB"}
    assert len(ours) == 4


def test_netlink_and_procfs_backends_agree(holder: Holder) -> None:
    mine = {s.inode for s in portlib.ports_of(pid=holder.pid)}
    for protocol in (Protocol.TCP, Protocol.UDP):
        for family in (Family.INET, Family.INET6):
            net = {
                s for s in read_inet_table(protocol, family, backend="netlink") if s.inode in mine
            }
            txt = {
                s for s in read_inet_table(protocol, family, backend="procfs") if s.inode in mine
            }
            assert net == txt and net, (protocol, family)
            port = next(iter(net)).local.port
            # The same filter, applied by the kernel and by Python over /proc text.
            compiled = CompiledFilter.of(parse_socket_filter(f"sport = :{port}"))
            filtered = read_inet_table(protocol, family, backend="netlink", compiled=compiled)
            assert filtered and {s.local.port for s in filtered} == {port}
            by_text = read_inet_table(protocol, family, backend="procfs", compiled=compiled)
            assert {s for s in filtered if s.inode in mine} == {
                s for s in by_text if s.inode in mine
            }


def test_who_uses_finds_the_holder(holder: Holder) -> None:
    port = holder.ports["tcp4"]
    found = portlib.who_uses(port)
    # Other processes may have a socket on the same port number elsewhere; ours are three:
    # the listener, the accepted socket, and the client whose remote end is the port.
    mine = [s for s in found if [o.pid for o in s.owners] == [holder.pid]]
    assert sorted((s.state.value, s.local.port == port) for s in mine) == [
        ("ESTAB", False),
        ("ESTAB", True),
        ("LISTEN", True),
    ]
    assert all(port in (s.local.port, s.remote.port) for s in found)
    local = portlib.who_uses(port, "tcp", local=True)
    assert {s.state for s in local if s.owners[:1] and s.owners[0].pid == holder.pid} == {
        SocketState.LISTEN,
        SocketState.ESTABLISHED,
    }
    assert all(s.local.port == port for s in local)
    owner = mine[0].owners[0]
    assert owner.name.startswith("python") and owner.cmdline[0] == sys.executable
    assert owner.user == "root" if os.geteuid() == 0 else owner.user is not None
    udp = [s for s in portlib.who_uses(holder.ports["udp6"], "udp") if s.owners]
    # The bound socket, and the connected one whose remote end is that port.
    assert sorted((s.family, s.state.value) for s in udp if s.owners[0].pid == holder.pid) == [
        (Family.INET6, "ESTAB"),
        (Family.INET6, "UNCONN"),
    ]


def test_ports_of_pid_and_listening(holder: Holder) -> None:
    mine = portlib.ports_of(pid=holder.pid)
    assert {s.local.port for s in mine} == holder.all_ports()
    assert all([o.pid for o in s.owners] == [holder.pid] for s in mine)
    listening = {(s.protocol, s.local.port) for s in portlib.listening() if isinstance(s, Socket)}
    assert (Protocol.TCP, holder.ports["tcp6"]) in listening
    assert (Protocol.UDP, holder.ports["udp4"]) in listening
    assert (Protocol.TCP, holder.ports["tcp4_client"]) not in listening


def test_ports_of_missing_pid() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(NoSuchProcess):
        portlib.ports_of(pid=proc.pid)


def test_helper_walk_matches_in_process_walk(holder: Holder) -> None:
    with owners_mod.OwnerWalk("/proc", helper=True) as walk:
        assert walk.in_helper
        helper = walk.join()
    # Shared between the helper and this process, as for a kernel-filtered query.
    with owners_mod.OwnerWalk("/proc", helper=True, table_sockets=0) as walk:
        shared = walk.join()
    direct = owners_mod.socket_holders("/proc")
    mine = {inode for inode, pairs in direct.items() if any(pid == holder.pid for pid, _ in pairs)}
    assert len(mine) == 10
    expected = {i: sorted(direct[i]) for i in mine}
    assert {i: sorted(helper[i]) for i in mine} == expected
    assert {i: sorted(shared[i]) for i in mine} == expected
    # The same owners as Process values, the helper's part read straight from its output.
    reader = owners_mod.ProcessReader()
    with owners_mod.OwnerWalk("/proc", helper=True, table_sockets=0) as walk:
        assert walk.in_helper
        processes = walk.owners(reader, mine)
    assert processes == reader.owners({i: direct[i] for i in mine})


def test_kill_port_stops_a_child() -> None:
    code = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    code += "print(s.getsockname()[1], flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        signalled = portlib.kill_port(port)
        assert [p.pid for p in signalled] == [child.pid]
        assert child.wait(timeout=10) == -signal.SIGTERM
        with pytest.raises(PortNotInUse):
            portlib.kill_port(port)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_kill_port_refuses_this_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(PermissionDenied, match="this process"):
            portlib.kill_port(s.getsockname()[1], sig=signal.SIGKILL)


NON_ROOT_QUERY = textwrap.dedent(
    """
    import json, os, sys
    import portlib
    from portlib.errors import PermissionDenied
    portlib.sockets("all"); portlib.ports_of(pid=os.getpid())  # load every module while root
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    os.setgroups([]); os.setgid(65534); os.setuid(65534)  # now an unprivileged user
    found = [s for s in portlib.sockets("tcp") if s.local.port == port]
    mine = portlib.who_uses(port)
    try:
        portlib.ports_of(pid=pid)
        denied = False
    except PermissionDenied:
        denied = True
    owners = sum(len(s.owners) for s in found)
    result = {"uid": os.getuid(), "seen": len(found), "owners": owners, "who": len(mine)}
    print(json.dumps({**result, "denied": denied}))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unprivileged_view_has_sockets_without_owners(holder: Holder) -> None:
    out = subprocess.run(
        [sys.executable, "-c", NON_ROOT_QUERY, str(holder.pid), str(holder.ports["tcp4"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    result = json.loads(out.stdout)
    # who: the listener, the accepted socket and the client connected to the port.
    assert result == {"uid": 65534, "seen": 2, "owners": 0, "who": 3, "denied": True}


def test_churn_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes open sockets and exit while sockets(processes=True) runs over and over."""
    with socket.socket() as lis:
        lis.bind(("127.0.0.1", 0))
        lis.listen(512)
        lis.settimeout(0.05)
        port = lis.getsockname()[1]
        stop = threading.Event()
        spawned: list[subprocess.Popen[bytes]] = []
        # Each short-lived bash holds a TCP connection and a connected UDP socket.
        tcp, udp = f"/dev/tcp/127.0.0.1/{port}", f"/dev/udp/127.0.0.1/{port}"
        code = f"exec 3<>{tcp}; exec 4<>{udp}; sleep 0.0$RANDOM"

        def accept() -> None:  # keep the backlog empty so no connect() ever waits
            while not stop.is_set():
                try:
                    lis.accept()[0].close()
                except OSError:
                    continue

        def churn() -> None:
            while not stop.is_set():
                spawned[:] = [p for p in spawned if p.poll() is None]
                if len(spawned) < 30:
                    spawned.append(
                        subprocess.Popen(["bash", "-c", code], stderr=subprocess.DEVNULL)
                    )
                else:
                    time.sleep(0.005)

        workers = [threading.Thread(target=accept), threading.Thread(target=churn)]
        for w in workers:
            w.start()
        rounds = 0
        try:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline or rounds < 4:
                # Alternate the in-process walk and the helper-process walk.
                threshold = 0 if rounds % 2 else 10**9
                monkeypatch.setattr(owners_mod, "CHILD_WALK_MIN_SOCKETS", threshold)
                monkeypatch.setattr(owners_mod, "HELPER_START_US", 0)  # helper gets a share
                portlib.sockets("all", processes=True)
                portlib.who_uses(port)
                rounds += 1
        finally:
            stop.set()
            for w in workers:
                w.join()
            for p in spawned:
                p.kill()
                p.wait()


def test_helper_walk_survives_an_application_that_ignores_sigchld() -> None:
    """With SIGCHLD ignored the kernel reaps the helper itself; waitpid then fails."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with socket.socket() as mine:
            inode, fd = os.fstat(mine.fileno()).st_ino, mine.fileno()
            with owners_mod.OwnerWalk("/proc", helper=True) as walk:
                assert walk.in_helper
                holders = walk.join()
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert holders[inode] == [(os.getpid(), fd)]


def test_bound_but_idle_tcp_socket_is_not_listed_like_ss() -> None:
    # Linux 6.9+ dumps bound-inactive TCP sockets when asked for every state bit;
    # ss -a, ss -l and /proc/net/tcp leave them out, and so must we.
    with socket.socket() as idle, socket.socket() as server:
        idle.bind(("127.0.0.1", 0))
        server.bind(("127.0.0.1", 0))
        server.listen()
        idle_port, server_port = idle.getsockname()[1], server.getsockname()[1]
        listed = {s.local.port for s in portlib.sockets("tcp", processes=False)}
        listening = {s.local.port for s in portlib.listening("tcp", processes=False)}
    assert server_port in listed and server_port in listening
    assert idle_port not in listed and idle_port not in listening
