"""``portlib who``: lsof's selection (checked against lsof), and safe ``--kill``.

Selection runs in a namespace of the test's own, where ``lsof`` and ``portlib
who`` see exactly the holder's sockets. The kill tests use child processes on
loopback that the test starts itself, and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import portlib
from portlib.socktable.killing import refused
from tests.socket_lab import SocketLab, lab_or_skip

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "portlib", "who"]


@dataclass
class Held:
    lab: SocketLab
    port: int  # a TCP listener on 127.0.0.1 and a UDP socket on the same port
    port6: int  # a TCP listener on ::1


@pytest.fixture(scope="module")
def held() -> Iterator[Held]:
    with lab_or_skip("lsof") as lab:
        port = lab.run({"op": "listen", "host": "127.0.0.1"})["port"]
        lab.run({"op": "listen", "proto": "udp", "host": "127.0.0.1", "port": port})
        lab.run({"op": "connect", "host": "127.0.0.1", "port": port})
        lab.run({"op": "connect", "host": "127.0.0.1", "port": port})
        port6 = lab.run({"op": "listen", "host": "::1"})["port"]
        lab.run({"op": "connect", "host": "::1", "port": port6})
        yield Held(lab, port, port6)


def lsof_rows(held: Held, *args: str) -> set[tuple[str, ...]]:
    """(pid, fd, type, node, name) for each lsof line, run inside the namespace."""
    done = subprocess.run(
        ["ip", "netns", "exec", held.lab.ns, "lsof", "-nP", *args],
        capture_output=True,
        text=True,
    )
    rows = set()
    for line in done.stdout.splitlines()[1:]:
        cols = line.split()
        rows.add((cols[1], cols[3].rstrip("urw"), cols[4], cols[7], " ".join(cols[8:])))
    return rows


def who(held: Held, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", held.lab.ns, *CLI, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
    )


def who_rows(held: Held, *args: str) -> set[tuple[str, ...]]:
    rows = set()
    for line in who(held, *args).stdout.splitlines()[1:]:
        cols = line.split()
        rows.add((cols[1], cols[3], cols[4], cols[5], " ".join(cols[6:])))
    return rows


SELECTIONS = [
    (["-i", ":{port}"], ["{port}"]),
    (["-i", ":{port}"], [":{port}"]),
    (["-i", "TCP:{port}"], ["tcp:{port}"]),
    (["-i", "UDP:{port}"], ["udp:{port}"]),
    (["-i", "@127.0.0.1"], ["@127.0.0.1"]),
    (["-i", "@127.0.0.1:{port}"], ["@127.0.0.1:{port}"]),
    (["-i", "TCP@[::1]:{port6}"], ["tcp@[::1]:{port6}"]),
    (["-i", "6TCP:{port6}"], ["6tcp:{port6}"]),
    (["-iTCP:{port}", "-sTCP:LISTEN"], ["tcp:{port}", "-sTCP:LISTEN"]),
    (["-i", ":{port}", "-sTCP:LISTEN"], ["{port}", "-sTCP:LISTEN"]),
    (["-i", ":{port}", "-sTCP:^LISTEN"], ["{port}", "-sTCP:^LISTEN"]),
    (["-i", ":{port}", "-i", ":{port6}"], ["{port}", "{port6}"]),
    (["-a", "-p", "{pid}", "-i", ":{port6}"], ["-p", "{pid}", "{port6}"]),
]


@pytest.mark.lab
@pytest.mark.parametrize(("lsof_args", "who_args"), SELECTIONS)
def test_selection_agrees_with_lsof(held: Held, lsof_args: list[str], who_args: list[str]) -> None:
    values = {"port": held.port, "port6": held.port6, "pid": held.lab.pid}
    theirs = lsof_rows(held, *(a.format(**values) for a in lsof_args))
    ours = who_rows(held, *(a.format(**values) for a in who_args))
    assert ours == theirs and ours


@pytest.mark.lab
def test_terse_gives_pids_like_lsof_t(held: Held) -> None:
    done = who(held, "-t", str(held.port))
    lsof = subprocess.run(
        ["ip", "netns", "exec", held.lab.ns, "lsof", "-t", "-i", f":{held.port}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout == lsof.stdout == f"{held.lab.pid}\n"
    assert who(held, "-t", "1").returncode == 1  # nobody: no output, exit 1


@pytest.mark.lab
def test_bad_selections_are_one_line(held: Held) -> None:
    for args in (
        ["tcp@localhost:80"],
        ["-sUDP:Idle", "80"],
        ["-sTCP:NOPE", "80"],
        [],
        ["80", "--wait", "1"],
    ):
        done = who(held, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)


# -- --kill -----------------------------------------------------------------------------------

HOLD = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
HOLD += "print(s.getsockname()[1], flush=True); "


def _child(code: str) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD + code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait()


def test_refused_includes_this_process_and_its_ancestors() -> None:
    why = refused()
    assert {1, os.getpid(), os.getppid()} <= why.keys()
    assert "ancestor" in why[os.getppid()]


def test_kill_refuses_an_ancestor_holding_the_port() -> None:
    # The holder runs `portlib who PORT --kill` itself, so the holder is the CLI's parent.
    code = textwrap.dedent(
        f"""
        import json, socket, subprocess, sys
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        done = subprocess.run({CLI!r} + [str(s.getsockname()[1]), "--kill"],
                              capture_output=True, text=True)
        print(json.dumps([done.returncode, done.stderr]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, check=True
    )
    status, err = json.loads(out.stdout)
    assert status == 2 and "ancestor of this process" in err and err.count("\n") == 1


def test_a_holder_that_let_go_is_not_signalled() -> None:
    # What protects against PID reuse: each holder is checked, through its pidfd, to
    # still hold the socket before the signal. Here the holder let go of it meanwhile.
    child, port = _child("sys.stdin.readline(); s.close(); sys.stdin.readline()")
    try:
        from portlib.socktable import select_sockets
        from portlib.socktable.killing import signal_holders
        from portlib.socktable.whoselect import Selector

        stale = select_sockets([Selector(None, ports=(port, port))], local=True)
        assert [o.pid for s in stale for o in s.owners] == [child.pid]
        assert child.stdin is not None
        child.stdin.write("close\n")
        child.stdin.flush()
        deadline = time.monotonic() + 5
        while portlib.who_uses(port, "tcp", local=True):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert signal_holders(stale, signal.SIGTERM, what=f"port {port}") == []
        assert child.poll() is None  # alive: it was not signalled
    finally:
        _stop(child)


def test_kill_wait_escalates_to_sigkill() -> None:
    child, port = _child(
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    try:
        done = subprocess.run(
            [*CLI, str(port), "--kill", "--wait", "0.3"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=ENV,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"sent SIGTERM to PID {child.pid} (python)",
            f"sent SIGKILL to PID {child.pid} (python): it outlived the wait",
        ]
        assert child.wait(timeout=5) == -signal.SIGKILL
        assert portlib.who_uses(port, "tcp", local=True) == []
    finally:
        _stop(child)


def test_kill_port_library_wait() -> None:
    child, port = _child("time.sleep(60)")
    try:
        assert [p.pid for p in portlib.kill_port(port, wait=5)] == [child.pid]
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        _stop(child)


def _in_flight_listener() -> tuple[socket.socket, int]:
    """A listening socket no process holds: its only fd is in flight in a unix socket."""
    keeper, other = socket.socketpair()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    socket.send_fds(other, [b"x"], [listener.fileno()])
    listener.close()
    other.close()
    return keeper, port


@pytest.mark.skipif(os.geteuid() != 0, reason="the message for root is under test")
def test_root_is_never_told_to_try_as_root() -> None:
    keeper, port = _in_flight_listener()
    with keeper:
        done = subprocess.run([*CLI, str(port)], capture_output=True, text=True, cwd=ROOT, env=ENV)
        assert done.returncode == 1
        assert "held by no process visible here" in done.stderr and "root" not in done.stderr
        killed = subprocess.run(
            [*CLI, str(port), "--kill"], capture_output=True, text=True, cwd=ROOT, env=ENV
        )
        assert killed.returncode == 2 and "root" not in killed.stderr


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_non_root_kill_says_hidden_owners_remain() -> None:
    # root holds 127.0.0.1:P; an unprivileged process holds 127.0.0.2:P (the same port).
    # The checkout may sit where the unprivileged user cannot read (a clone in a 0700
    # directory): it runs a copy of the package from a directory anyone can read.
    readable = Path(tempfile.mkdtemp(prefix="portlib-nobody-"))
    readable.chmod(0o755)
    shutil.copytree(ROOT / "portlib", readable / "portlib")
    for path in (readable, *readable.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    nobody_env = {**ENV, "PYTHONPATH": str(readable)}
    root_child, port = _child("time.sleep(60)")
    nobody = subprocess.Popen(
        [*NOBODY, sys.executable, "-c",
         f"import socket,time; s=socket.socket(); s.bind(('127.0.0.2',{port})); s.listen(); "
         "print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert nobody.stdout is not None and nobody.stdout.readline() == "ok\n"
        done = subprocess.run(
            [*NOBODY, *CLI, str(port), "--kill"],
            capture_output=True,
            text=True,
            cwd=readable,
            env=nobody_env,
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout.startswith(f"sent SIGTERM to PID {nobody.pid} ")
        assert "whose holders this user cannot see" in done.stderr
        assert nobody.wait(timeout=5) == -signal.SIGTERM
        assert root_child.poll() is None  # untouched
        only_hidden = subprocess.run(
            [*NOBODY, *CLI, str(port), "--kill"],
            capture_output=True,
            text=True,
            cwd=readable,
            env=nobody_env,
        )
        assert only_hidden.returncode == 2 and "run as root" in only_hidden.stderr
    finally:
        _stop(root_child)
        _stop(nobody)
        shutil.rmtree(readable, ignore_errors=True)


def test_control_characters_are_escaped() -> None:
    code = "open('/proc/self/comm', 'w').write('ev\\x1b]0;x\\x07il'); time.sleep(60)"
    child, port = _child(code)
    try:
        for argv in ([*CLI, str(port)], [sys.executable, "-m", "portlib", "sockets", "-tlnp"]):
            out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=ENV).stdout
            assert "\x1b" not in out and "\x07" not in out
            assert "ev^[]0;x^Gil" in out
    finally:
        _stop(child)
