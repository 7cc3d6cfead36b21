"""``portlib free`` and ``portlib service``: output, exit status, and one-line errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portlib.cli import main
from portlib.ports import is_port_free, port_ranges

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- portlib free ------------------------------------------------------------------------


def test_free_prints_one_free_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "free")
    assert code == 0 and err == ""
    port = int(out)
    assert port in port_ranges().ephemeral
    assert is_port_free(port)


def test_free_count_gives_different_ports(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "free", "--count", "20", "-u")
    ports = [int(line) for line in out.split()]
    assert code == 0 and len(ports) == 20 == len(set(ports))
    assert all(is_port_free(p, "udp") for p in ports)


def test_free_in_a_range_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "free", "--range", "24000-24999", "--count", "3", "--host", "127.0.0.1", "--json"
    )
    doc = json.loads(out)
    assert code == 0
    assert doc["protocol"] == "tcp" and doc["host"] == "127.0.0.1"
    assert len(set(doc["ports"])) == 3
    assert all(24000 <= p <= 24999 for p in doc["ports"])


def test_check_a_busy_then_free_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, out, _ = run(capsys, "free", "--check", str(port))
        assert code == 1
        assert out == f"{port}/tcp is in use on 127.0.0.1\n"
        code, out, _ = run(capsys, "free", "--check", str(port), "--json", "--host", "127.0.0.1")
        assert code == 1
        assert json.loads(out) == {
            "port": port,
            "protocol": "tcp",
            "host": "127.0.0.1",
            "free": False,
        }
        code, out, _ = run(capsys, "free", "--check", str(port), "-u", "--host", "127.0.0.1")
        assert code == 0 and out == f"{port}/udp is free on 127.0.0.1\n"
    code, out, _ = run(capsys, "free", "--check", str(port))
    assert code == 0 and out == f"{port}/tcp is free on all interfaces\n"


def test_check_a_busy_udp_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        code, out, _ = run(capsys, "free", "--check", str(port), "--protocol", "udp")
        assert code == 1 and "in use" in out
        # PORT/udp, as 'portlib who' takes it
        code, out, _ = run(capsys, "free", "--check", f"{port}/udp")
        assert (code, out) == (1, f"{port}/udp is in use on 127.0.0.1\n")
    code, out, _ = run(capsys, "free", "--check", f"{port}/udp")
    assert (code, out) == (0, f"{port}/udp is free on all interfaces\n")


def test_check_names_the_address_that_holds_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, out, _ = run(capsys, "free", "--check", str(port))
        assert (code, out) == (1, f"{port}/tcp is in use on [::1]\n")  # not "all interfaces"
        code, out, _ = run(capsys, "free", "--check", str(port), "--host", "127.0.0.1")
        assert (code, out) == (0, f"{port}/tcp is free on 127.0.0.1\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["free", "--check", "0"], "port 0 is out of range 1-65535"),
        (["free", "--check", "65536"], "out of range"),
        (["free", "--check", "http"], "not a whole number"),
        (["free", "--check", "53/sctp"], "unknown protocol 'sctp'"),
        (["free", "--check", "53/udp", "-t"], "says udp but the flags say tcp"),
        (["free", "--count", "0"], "--count must be 1 or more"),
        (["free", "--count", "many"], "not a whole number"),
        (["free", "--range", "9-1"], "9 is above 1"),
        (["free", "--range", "8000"], "FIRST-LAST"),
        (["free", "--check", "80", "--count", "2"], "--check tests one port"),
        (["free", "--check", "80", "--range", "1-9"], "--check tests one port"),
        (["free", "--protocol", "sctp"], "unknown protocol 'sctp'"),
        (["free", "-u", "-t"], "not allowed with"),
        (["free", "--host", "example"], "bad host 'example'"),
        (["free", "--host", "192.0.2.1"], "192.0.2.1 is not an address of this machine"),
    ],
)
def test_free_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


# -- portlib service ---------------------------------------------------------------------


def test_service_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "service", "ssh")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["PORT", "SERVICE", "OPEN-FREQ", "ALIASES"]
    assert lines[1].split() == ["22/tcp", "ssh", "0.182286"]
    assert lines[2].split() == ["22/udp", "ssh", "0.003905"]


def test_service_by_alias_only_udp(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "service", "domain", "-u")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["53/udp"]


def test_service_by_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "service", "8080")
    assert code == 0
    assert out.splitlines()[1].split() == [
        "8080/tcp",
        "http-alt",
        "0.042052",
        "webcache",
        "http-proxy",
    ]
    code, out, _ = run(capsys, "service", "53/udp")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["53/udp", "domain"]


def test_service_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "service", "WWW", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"name": "http", "port": 80, "protocol": "tcp", "aliases": ["www"], "frequency": 0.484143}
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["service", "htpp"], "unknown service name 'htpp'; did you mean http"),
        (["service", "4"], "no service is registered for port 4 (tcp/udp)"),
        (["service", "70000"], "port 70000 is out of range"),
        (["service", "53/sctp"], "unknown protocol 'sctp'"),
        (["service", "bootps", "-t"], "no tcp service named 'bootps'"),
        (["service", "ssh", "--protocol", "icmp"], "unknown protocol 'icmp'"),
        (["service"], "required"),
    ],
)
def test_service_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_commands_are_registered_and_documented() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "portlib", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert "free" in done.stdout and "service" in done.stdout
    for command, example in (
        ("free", "portlib free --check 8000"),
        ("service", "portlib service ssh"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "portlib", command, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0 and example in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "portlib", "service", "ssh"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0 and "22/tcp" in done.stdout
