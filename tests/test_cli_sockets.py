"""``portlib sockets`` and ``portlib who``: ss's letters, table layout, JSON, errors."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from portlib.cli import main
from portlib.cli import sockets_cmd as cmd
from portlib.cli import sockets_text as sstext
from portlib.model import Endpoint, Family, Process, Protocol, Socket, SocketState, UnixSocket
from portlib.socktable import SocketQueryError
from portlib.socktable.filters import in_states
from portlib.socktable.whoselect import Selector, parse_selector
from tests.user_typecheck import mypy_on

ROOT = Path(__file__).resolve().parent.parent


def flags(*letters: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd.register(sub)
    return parser.parse_args(["sockets", *letters])


@pytest.mark.parametrize(
    ("argv", "tables", "unix"),
    [
        (["-tanp"], {("tcp", "inet"), ("tcp", "inet6")}, False),
        (["-tul"], {("tcp", "inet"), ("tcp", "inet6"), ("udp", "inet"), ("udp", "inet6")}, False),
        ([], {(p, f) for p in ("tcp", "udp", "raw") for f in ("inet", "inet6")}, True),
        (["-4"], {("tcp", "inet"), ("udp", "inet"), ("raw", "inet")}, False),
        (["-x"], set(), True),
        (["-tx6"], {("tcp", "inet6")}, True),
        (["-w"], {("raw", "inet"), ("raw", "inet6")}, False),
    ],
)
def test_ss_letters_pick_tables(argv: list[str], tables: set[tuple[str, str]], unix: bool) -> None:
    picked, with_unix = cmd.selection(flags(*argv))
    assert set(picked) == tables and with_unix is unix


def sock(state: SocketState, port: int = 8000, *, owners: tuple[Process, ...] = ()) -> Socket:
    connected = state is SocketState.ESTABLISHED
    peer = Endpoint(IPv4Address("127.0.0.1" if connected else "0.0.0.0"), 40000 if connected else 0)
    local = Endpoint(IPv4Address("127.0.0.1"), port)
    return Socket(Protocol.TCP, Family.INET, local, peer, state, 1, 0, 0, 0, owners)


def test_state_filters_like_ss() -> None:
    default_states = cmd.default_states(flags())
    assert default_states is not None
    default = {s for s in SocketState if in_states(s, default_states)}
    assert SocketState.ESTABLISHED in default and SocketState.CLOSE_WAIT in default
    assert not default & {
        SocketState.LISTEN,
        SocketState.CLOSE,
        SocketState.TIME_WAIT,
        SocketState.SYN_RECV,
    }
    assert cmd.default_states(flags("-l")) == {SocketState.LISTEN, SocketState.CLOSE}
    assert cmd.default_states(flags("-a")) is None
    # A `state` word in the filter replaces -l and -a, as in ss.
    assert cmd.build_filter(flags("-l", "state", "established")).states == {SocketState.ESTABLISHED}


def test_table_layout_like_ss() -> None:
    owner = Process(42, "nginx", ("nginx",), "root", 6)
    rows = [
        sock(SocketState.LISTEN, owners=(owner, Process(43, "nginx", ("nginx",), "www", 6))),
        Socket(
            Protocol.TCP,
            Family.INET6,
            Endpoint(IPv6Address("::ffff:127.0.0.1"), 22),
            Endpoint(IPv6Address("::1"), 50000),
            SocketState.ESTABLISHED,
            2,
            0,
            5,
            7,
        ),
        UnixSocket("/run/x.sock", "stream", SocketState.LISTEN, 99, 0x10000, 2),
        UnixSocket(None, "dgram", SocketState.CLOSE, 100, 0, 2),
    ]
    text = sstext.format_table(rows, show_netid=True, processes=True)
    lines = text.splitlines()
    assert lines[0].split() == [
        "Netid", "State", "Recv-Q", "Send-Q", "Local", "Address:Port", "Peer", "Address:Port",
        "Process",
    ]  # fmt: skip
    assert lines[1].split() == [
        "tcp", "LISTEN", "0", "0", "127.0.0.1:8000", "0.0.0.0:*",
        'users:(("nginx",pid=42,fd=6),("nginx",pid=43,fd=6))',
    ]  # fmt: skip
    assert lines[2].split() == ["tcp", "ESTAB", "5", "7", "[::ffff:127.0.0.1]:22", "[::1]:50000"]
    assert lines[3].split() == ["u_str", "LISTEN", "0", "0", "/run/x.sock", "99", "*", "*"]
    assert lines[4].split() == ["u_dgr", "UNCONN", "0", "0", "*", "100", "*", "*"]
    # Addresses are right-aligned against the colon, as ss does.
    assert lines[1].index(":8000") == lines[2].index("]:22") + 1
    plain = sstext.format_table(rows[:1], show_netid=False, processes=False).splitlines()
    assert plain[0].startswith("State ") and "Process" not in plain[0] and "users" not in plain[1]


def test_service_names_without_numeric() -> None:
    namer = sstext.service_namer()
    text = sstext.format_table(
        [sock(SocketState.LISTEN, port=22)], show_netid=False, processes=False, service=namer
    )
    assert "127.0.0.1:ssh" in text
    assert namer(40000, "raw") == "40000"


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("8000", Selector(None, ports=(8000, 8000))),
        ("53/udp", Selector(Protocol.UDP, ports=(53, 53))),
        ("80/TCP", Selector(Protocol.TCP, ports=(80, 80))),
    ],
)
def test_port_spec(spec: str, want: Selector) -> None:
    assert parse_selector(spec) == want


@pytest.mark.parametrize("spec", ["", "http", "0", "70000", "80/sctp", "-1", "８０"])
def test_bad_port_spec(spec: str) -> None:
    with pytest.raises(SocketQueryError):
        parse_selector(spec)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_sockets_tlnp_shows_our_listener(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sockets", "-tlnp"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if f"127.0.0.1:{listener} " in line)
    assert line.startswith("LISTEN") and f"pid={os.getpid()}," in line


def test_sockets_json(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sockets", "-tlp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    mine = [s for s in data if s["local"]["port"] == listener]
    assert mine[0]["state"] == "LISTEN" and mine[0]["local"]["address"] == "127.0.0.1"
    assert mine[0]["owners"][0]["pid"] == os.getpid()
    assert main(["sockets", "-tan", "--json"]) == 0
    assert all(s["owners"] == [] for s in json.loads(capsys.readouterr().out))


def test_who_table_and_json(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who", str(listener)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["COMMAND", "PID", "USER", "FD", "TYPE", "NODE", "NAME"]
    assert out[1].split()[1] == str(os.getpid()) and out[1].endswith(
        f"127.0.0.1:{listener} (LISTEN)"
    )
    assert len(out) == 2  # the listener only: no UDP socket, no connection on that port
    assert main(["who", f"{listener}/tcp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["owners"][0]["pid"] == os.getpid()


def test_who_idle_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: not in any table
    assert main(["who", str(port)]) == 1
    assert "no process holds port" in capsys.readouterr().err
    assert main(["who", str(port), "--kill"]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["who", "abc"],
        ["who", "99999"],
        ["who", "80/icmp"],
        ["who", "80", "--kill", "--signal", "NOPE"],
        ["who", "80", "--signal", "HUP"],  # nmap-style: a flag that goes with --kill
        ["who", "80", "--wait", "2"],
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("portlib: error: ") and err.count("\n") == 1


def test_unknown_letter_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sockets", "-z"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_who_kill_signals_a_child(capsys: pytest.CaptureFixture[str]) -> None:
    code = "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    code += "print(s.getsockname()[1], flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        assert main(["who", port, "--kill", "--signal", "HUP"]) == 0
        assert capsys.readouterr().out.startswith(f"sent SIGHUP to PID {child.pid} (python")
        assert child.wait(timeout=10) == -signal.SIGHUP
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_whole_command_runs(listener: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "portlib", "sockets", "-tln"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert out.splitlines()[0].split()[:3] == ["State", "Recv-Q", "Send-Q"]
    assert f"127.0.0.1:{listener}" in out


def test_a_users_type_check_sees_socket_kinds(tmp_path: Path) -> None:
    """``sockets``/``listening`` are typed by kind: a user's mypy knows "tcp" gives Sockets."""
    proc = mypy_on(
        tmp_path / "user_script.py",
        "import portlib\n"
        "from portlib import Socket, UnixSocket\n"
        'tcp: list[Socket] = portlib.listening("tcp")\n'
        'unix: list[UnixSocket] = portlib.sockets("unix", processes=False)\n'
        'ports: list[int] = [s.local.port for s in portlib.sockets("udp6", filter="sport = :53")]\n'
        'wrong: list[UnixSocket] = portlib.sockets("tcp")\n'
        'typo = portlib.sockets("tcp", proceses=False)\n',
    )
    lines = [line for line in proc.stdout.splitlines() if "error:" in line]
    assert {line.split(":")[1] for line in lines} == {"6", "7"}, proc.stdout  # only the bad two
    assert 'list[Socket]", variable has type "list[UnixSocket]"' in proc.stdout
    assert "proceses" in proc.stdout


def test_flags_may_come_among_the_words(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who", str(listener), "-t", "1"]) == 0  # lsof -t -i :P -i :1
    assert capsys.readouterr().out == f"{os.getpid()}\n"
    assert main(["sockets", "-t", "state", "listening", "-n", "sport", "=", f":{listener}"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and f"127.0.0.1:{listener}" in rows[1]
