"""Owners and queries on fixture /proc trees: shared sockets, vanished and forbidden processes."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

import portlib
from portlib.errors import (
    NoSuchProcess,
    ParseError,
    PermissionDenied,
    PortlibError,
    PortNotInUse,
    PrivilegeError,
)
from portlib.model import Family, Process, Protocol, Socket, SocketState, UnixSocket
from portlib.socktable import SocketQueryError
from portlib.socktable import owners as owners_mod
from tests.test_procnet import TCP_HEADER, UNIX_HEADER, tcp_line, unix_line

UNKNOWN_UID = 4_242_424


class FakeProc:
    """A /proc tree: net tables and processes with fd links, made on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "net").mkdir(parents=True)
        self.tables: dict[str, list[str]] = {"tcp": [], "tcp6": [], "udp": [], "unix": []}

    def add(self, table: str, line: str) -> None:
        self.tables[table].append(line)

    def process(
        self, pid: int, name: str, fds: dict[int, str], *, uid: int = 0, argv: tuple[str, ...] = ()
    ) -> Path:
        base = self.root / str(pid)
        (base / "fd").mkdir(parents=True)
        for fd, target in fds.items():
            os.symlink(target, base / "fd" / str(fd))
        (base / "comm").write_text(name + "\n")
        (base / "cmdline").write_bytes(b"\0".join(a.encode() for a in (argv or (name,))) + b"\0")
        (base / "status").write_text(f"Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        return base

    def write(self) -> str:
        for table, lines in self.tables.items():
            header = UNIX_HEADER if table == "unix" else TCP_HEADER
            (self.root / "net" / table).write_text("\n".join([header, *lines]) + "\n")
        return str(self.root)


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    p = FakeProc(tmp_path / "proc")
    # A forked server: one listening socket (inode 100) shared by PIDs 200 and 201.
    p.add("tcp", tcp_line("0.0.0.0", 8000, "0.0.0.0", 0, 10, inode=100, uid=0))
    p.add("tcp", tcp_line("127.0.0.1", 8000, "127.0.0.1", 50000, 1, inode=101, slot=1))
    p.add("tcp", tcp_line("127.0.0.1", 50000, "127.0.0.1", 8000, 1, inode=102, slot=2))
    p.add("tcp", tcp_line("127.0.0.1", 8000, "127.0.0.1", 50001, 6, inode=0, slot=3))  # TIME-WAIT
    p.add("tcp6", tcp_line("::", 8443, "::", 0, 10, inode=103))
    p.add("tcp6", tcp_line("::ffff:127.0.0.1", 9000, "::", 0, 10, inode=107, slot=1))
    p.add("udp", tcp_line("0.0.0.0", 5353, "0.0.0.0", 0, 7, inode=104))
    p.add(
        "tcp", tcp_line("127.0.0.1", 7000, "0.0.0.0", 0, 10, inode=105, slot=4)
    )  # forbidden owner
    p.add("tcp", tcp_line("127.0.0.1", 7100, "0.0.0.0", 0, 10, inode=106, slot=5))  # owner vanished
    p.add("unix", unix_line(300, state=1, flags=0x10000, path="/run/app.sock"))
    p.add("unix", unix_line(301, path="@abstract"))
    p.add("unix", unix_line(302))
    p.process(
        200,
        "server",
        {3: "socket:[100]", 4: "socket:[101]", 5: "/dev/null", 6: "socket:[300]"},
        argv=("/usr/bin/server", "-v"),
    )
    p.process(201, "server", {3: "socket:[100]", 7: "socket:[103]", 8: "pipe:[9]"}, uid=UNKNOWN_UID)
    p.process(202, "client", {9: "socket:[102]", 10: "socket:[104]", 11: "socket:[107]"})
    p.process(203, "secret", {3: "socket:[105]"})
    vanished = p.process(204, "gone", {3: "socket:[106]"})
    (vanished / "comm").unlink()  # exited between the fd walk and reading its details
    (p.root / "205").mkdir()  # exited before its fd directory was read
    (p.root / "self").mkdir()  # not a PID: ignored
    p.process(206, "odd", {3: "socket:[notanumber]", 4: "socket:[102"})
    return p


@pytest.fixture
def forbid(monkeypatch: pytest.MonkeyPatch, proc: FakeProc) -> None:
    """Make /proc/203/fd unreadable, as for a non-root caller (root ignores mode bits)."""
    real_open = os.open
    secret = str(proc.root / "203" / "fd")

    def fake_open(path: str, flags: int, *args: int, **kwargs: int) -> int:
        if str(path) == secret:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(owners_mod.os, "open", fake_open)


def by_inode(socks: list[Socket | UnixSocket]) -> dict[int, Socket | UnixSocket]:
    return {s.inode: s for s in socks}


def test_shared_socket_keeps_every_owner(proc: FakeProc, forbid: None) -> None:
    socks = by_inode(portlib.sockets("tcp", procfs=proc.write()))
    assert sorted((o.pid, o.fd) for o in socks[100].owners) == [(200, 3), (201, 3)]
    first = next(o for o in socks[100].owners if o.pid == 200)
    assert first == Process(200, "server", ("/usr/bin/server", "-v"), "root", 3)
    second = next(o for o in socks[100].owners if o.pid == 201)
    assert second.user is None  # uid with no passwd entry


def test_vanished_and_forbidden_processes_give_no_owner(proc: FakeProc, forbid: None) -> None:
    socks = by_inode(portlib.sockets("inet", procfs=proc.write()))
    assert socks[105].owners == ()  # forbidden
    assert socks[106].owners == ()  # vanished
    assert socks[0].owners == ()  # TIME-WAIT has no inode and no owner
    assert [o.pid for o in socks[102].owners] == [202]


def test_kinds_states_ports(proc: FakeProc) -> None:
    root = proc.write()
    assert {s.inode for s in portlib.sockets("tcp4", procfs=root)} == {100, 101, 102, 0, 105, 106}
    assert {s.inode for s in portlib.sockets("tcp6", procfs=root)} == {103, 107}
    assert {s.inode for s in portlib.sockets("udp", procfs=root)} == {104}
    assert portlib.sockets("raw", procfs=root) == []  # raw and raw6 files are missing: tolerated
    unix = portlib.sockets("unix", procfs=root)
    assert all(isinstance(s, UnixSocket) for s in unix) and len(unix) == 3
    assert by_inode(unix)[300].owners[0].pid == 200
    assert len(portlib.sockets("all", procfs=root)) == 12
    assert {s.inode for s in portlib.sockets("tcp", state="LISTEN", procfs=root)} == {
        100,
        103,
        105,
        106,
        107,
    }
    assert {s.inode for s in portlib.sockets("tcp", state="time-wait", procfs=root)} == {0}
    assert {
        s.inode for s in portlib.sockets("tcp", state=SocketState.ESTABLISHED, procfs=root)
    } == {101, 102}
    assert {s.inode for s in portlib.sockets("inet", port=8000, procfs=root)} == {100, 101, 102, 0}
    mapped = by_inode(portlib.sockets("tcp6", procfs=root))[107]
    assert isinstance(mapped, Socket) and mapped.local.address == IPv6Address("::ffff:127.0.0.1")


def test_listening_is_listen_plus_unconn(proc: FakeProc) -> None:
    socks = portlib.listening("inet", procfs=proc.write())
    assert {s.inode for s in socks} == {100, 103, 104, 105, 106, 107}
    assert {s.state for s in socks} == {SocketState.LISTEN, SocketState.CLOSE}
    assert {s.inode for s in portlib.listening("unix", procfs=proc.write())} == {300}


def test_no_processes_means_no_proc_walk(proc: FakeProc, monkeypatch: pytest.MonkeyPatch) -> None:
    root = proc.write()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked /proc although processes=False")

    monkeypatch.setattr(owners_mod, "list_pids", boom)
    monkeypatch.setattr(owners_mod, "socket_holders", boom)
    socks = portlib.sockets("all", processes=False, procfs=root)
    assert len(socks) == 12 and all(s.owners == () for s in socks)


def test_who_uses_either_end_or_local_only(proc: FakeProc) -> None:
    found = portlib.who_uses(8000, "tcp", local=True, procfs=proc.write())
    assert {s.inode for s in found} == {100, 101, 0}  # 102 has 8000 only as its peer port
    assert {o.pid for s in found for o in s.owners} == {200, 201}
    either = portlib.who_uses(8000, procfs=proc.write())  # lsof -i :8000
    assert {s.inode for s in either} == {100, 101, 102, 0}
    assert portlib.who_uses(5353, "udp", procfs=proc.write())[0].owners[0].name == "client"
    assert portlib.who_uses(5353, "tcp", procfs=proc.write()) == []


def test_who_uses_resolves_details_only_for_matching_processes(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = proc.write()
    asked: list[int] = []
    real = owners_mod.ProcessReader.info

    def spy(self: owners_mod.ProcessReader, pid: int) -> owners_mod.ProcessInfo | None:
        asked.append(pid)
        return real(self, pid)

    monkeypatch.setattr(owners_mod.ProcessReader, "info", spy)
    portlib.who_uses(5353, "udp", procfs=root)
    assert set(asked) == {202}


def test_ports_of_pid_reads_only_that_pid(proc: FakeProc, monkeypatch: pytest.MonkeyPatch) -> None:
    root = proc.write()
    monkeypatch.setattr(owners_mod, "list_pids", lambda *a: pytest.fail("walked every PID"))
    socks = portlib.ports_of(pid=202, procfs=root)
    assert {s.inode for s in socks} == {102, 104, 107}
    assert all([o.pid for o in s.owners] == [202] for s in socks)


def test_ports_of_pid_errors(proc: FakeProc, forbid: None) -> None:
    root = proc.write()
    with pytest.raises(NoSuchProcess) as missing:
        portlib.ports_of(pid=99999, procfs=root)
    assert missing.value.pid == 99999
    with pytest.raises(NoSuchProcess):
        portlib.ports_of(pid=205, procfs=root)  # directory left, fd gone
    with pytest.raises(NoSuchProcess):
        portlib.ports_of(pid=204, procfs=root)  # fds read, then it was gone
    with pytest.raises(PermissionDenied) as denied:
        portlib.ports_of(pid=203, procfs=root)
    assert denied.value.pid == 203 and isinstance(denied.value, PermissionError)
    for bad in (0, -5, True, "12"):
        with pytest.raises(PortlibError):
            portlib.ports_of(pid=bad, procfs=root)  # type: ignore[arg-type]


def test_ports_of_name(proc: FakeProc) -> None:
    root = proc.write()
    assert {s.inode for s in portlib.ports_of(name="server", procfs=root)} == {100, 101, 103}
    shared = by_inode(portlib.ports_of(name="server", procfs=root))[100]  # type: ignore[arg-type]
    assert {o.pid for o in shared.owners} == {200, 201}
    assert portlib.ports_of(name="nobody-has-this", procfs=root) == []
    with pytest.raises(SocketQueryError):
        portlib.ports_of(procfs=root)
    with pytest.raises(SocketQueryError):
        portlib.ports_of(pid=1, name="x", procfs=root)


def test_bad_arguments_raise_value_like_portlib_errors(proc: FakeProc) -> None:
    root = proc.write()
    for call in (
        lambda: portlib.sockets("tcp7", procfs=root),
        lambda: portlib.sockets("tcp", state="OPENISH", procfs=root),
        lambda: portlib.sockets("tcp", port=70000, procfs=root),
        lambda: portlib.who_uses(-1, procfs=root),
        lambda: portlib.who_uses(80, "sctp", procfs=root),
        lambda: portlib.kill_port(80, sig="SIGNOPE", procfs=root),
    ):
        with pytest.raises(SocketQueryError) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, PortlibError)


def test_malformed_table_raises_parse_error(proc: FakeProc) -> None:
    proc.add("udp", "   1: garbage")
    root = proc.write()
    with pytest.raises(ParseError) as info:
        portlib.sockets("udp", procfs=root)
    assert info.value.source == f"{root}/net/udp" and info.value.line == 3


def test_kill_port_refusals_send_nothing(proc: FakeProc, forbid: None, tmp_path: Path) -> None:
    # PID 1 and this process hold port 9100 in this tree; no signal may go out.
    proc.add("tcp", tcp_line("127.0.0.1", 9100, "0.0.0.0", 0, 10, inode=400, slot=9))
    proc.add("tcp", tcp_line("127.0.0.1", 9200, "0.0.0.0", 0, 10, inode=401, slot=10))
    proc.process(1, "init", {5: "socket:[400]"})
    proc.process(os.getpid(), "pytest", {5: "socket:[401]"})
    root = proc.write()
    with pytest.raises(PermissionDenied, match="PID 1"):
        portlib.kill_port(9100, procfs=root)
    with pytest.raises(PermissionDenied, match="this process"):
        portlib.kill_port(9200, procfs=root)
    with pytest.raises(PortNotInUse):
        portlib.kill_port(9999, procfs=root)
    with pytest.raises(PrivilegeError):
        portlib.kill_port(7000, procfs=root)  # in use, but its owner is hidden


def test_link_and_status_parsers() -> None:
    assert owners_mod.socket_inode("socket:[123]") == 123
    assert owners_mod.socket_inode("pipe:[123]") is None
    assert owners_mod.socket_inode("socket:[12") is None
    assert owners_mod.parse_cmdline(b"python3\0-m\0http.server\0") == (
        "python3",
        "-m",
        "http.server",
    )
    assert owners_mod.parse_cmdline(b"") == ()
    assert owners_mod.parse_status_uid("Name:\tx\nUid:\t1000\t1001\t1000\t1000\n") == 1001
    assert owners_mod.parse_status_uid("Name:\tx\n") is None


def test_socket_holders_with_wanted_and_pids(proc: FakeProc) -> None:
    root = proc.write()
    holders = owners_mod.socket_holders(root, wanted={100})
    assert sorted(holders[100]) == [(200, 3), (201, 3)] and set(holders) == {100}
    assert set(owners_mod.socket_holders(root, pids=[202])) == {102, 104, 107}


def test_endpoints_and_families_are_typed(proc: FakeProc) -> None:
    sock = by_inode(portlib.sockets("tcp4", procfs=proc.write()))[101]
    assert isinstance(sock, Socket)
    assert (sock.protocol, sock.family) == (Protocol.TCP, Family.INET)
    assert sock.local.address == IPv4Address("127.0.0.1")


def test_plan_split_balances_the_walk() -> None:
    end = owners_mod.fdwalk.FD_END
    fds = {10: 10_000, 11: 10_000, 12: 50, 13: 5}
    # The caller is busy for a long time (a big table): the helper takes everything.
    caller, helper = owners_mod.plan_split(fds, caller_busy_us=10**9)
    assert caller == [] and sorted(helper) == [(p, 0, end) for p in (10, 11, 12, 13)]

    def cost(shares: list[tuple[int, int, int]]) -> int:
        return sum(min(fds[p], e) - f for p, f, e in shares)

    # The caller is free at once (a kernel-filtered query): the work is shared evenly,
    # the process that crosses the line cut in two by fd number.
    caller, helper = owners_mod.plan_split(fds, caller_busy_us=0)
    assert cost(caller) + cost(helper) == sum(fds.values())
    start = owners_mod.HELPER_START_US // owners_mod.READLINK_US
    assert abs(cost(helper) + start - cost(caller)) <= 1
    split = {s[0] for s in caller} & {s[0] for s in helper}
    assert len(split) == 1 and split <= {10, 11}
    # No counts (kernels before 6.2): the helper walks all.
    assert owners_mod.plan_split({1: 0, 2: 0}, 0) == ([], [(1, 0, end), (2, 0, end)])


def test_a_split_process_is_walked_once(proc: FakeProc) -> None:
    root = proc.write()
    whole = owners_mod.socket_holders(root, pids=[200])
    assert whole
    fds = sorted(fd for pairs in whole.values() for _, fd in pairs)
    cut = fds[len(fds) // 2] if len(fds) > 1 else fds[0] + 1
    low = owners_mod.socket_holders(root, shares=[(200, 0, cut)])
    high = owners_mod.socket_holders(root, shares=[(200, cut, owners_mod.fdwalk.FD_END)])
    merged: dict[int, list[tuple[int, int]]] = {}
    for part in (low, high):
        for inode, pairs in part.items():
            merged.setdefault(inode, []).extend(pairs)
    assert {i: sorted(p) for i, p in merged.items()} == {i: sorted(p) for i, p in whole.items()}


def test_fd_counts_reads_directory_sizes(proc: FakeProc) -> None:
    counts = owners_mod.fd_counts(proc.write())
    assert set(counts) >= {200, 201, 202} and all(isinstance(n, int) for n in counts.values())
