"""Every script in examples/ runs (on loopback) and exits 0, so none rots."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def top_port_listener() -> Iterator[int]:
    """A listener on some port of the top 1000 (one nobody else holds)."""
    from portlib.services import top_ports

    for port in top_ports(1000, "tcp"):
        if port < 1024 and os.geteuid() != 0:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.listen()
        try:
            yield port
        finally:
            s.close()
        return
    pytest.skip("every top-1000 port is taken")


def test_every_example_is_covered() -> None:
    tested = {
        "scan_localhost.py",
        "stream_and_stop.py",
        "stop_port_owner.py",
        "listening_services.py",
        "exposure_audit.py",
        "free_port_server.py",
    }
    assert {p.name for p in EXAMPLES} == tested


@pytest.mark.live
def test_scan_localhost(top_port_listener: int) -> None:
    from portlib.services import service_name

    out = run_example("scan_localhost.py").stdout
    assert out.startswith("scanned 1000 ports of 127.0.0.1")
    name = service_name(top_port_listener) or "unknown"
    assert f"{top_port_listener}/tcp  open  {name}" in out


@pytest.mark.live
def test_stream_and_stop() -> None:
    out = run_example("stream_and_stop.py").stdout
    assert "first open port: " in out and "(syn-ack)" in out
    decided = int(out.split("stopped after ")[1].split()[0])
    assert 1 <= decided < 65535


@pytest.mark.live
def test_stop_port_owner() -> None:
    out = run_example("stop_port_owner.py").stdout
    assert "LISTEN is held by PID" in out
    assert "child exited with -15" in out
    assert "port free again: True" in out


@pytest.mark.live
def test_listening_services(loopback_listener: int) -> None:
    out = run_example("listening_services.py").stdout
    assert out.startswith("Netid State")
    (row,) = [line for line in out.splitlines() if f"127.0.0.1:{loopback_listener} " in line]
    assert row.startswith("tcp   LISTEN")
    assert f"pid={os.getpid()}," in row


@pytest.mark.live
def test_exposure_audit(loopback_listener: int) -> None:
    out = run_example("exposure_audit.py").stdout
    (row,) = [line for line in out.splitlines() if f" {loopback_listener}/tcp " in line]
    assert row.startswith("loopback only")
    assert f"[{os.getpid()}]" in row
    assert "listening sockets accept connections on every interface" in out


@pytest.mark.live
def test_free_port_server() -> None:
    out = run_example("free_port_server.py").stdout
    assert "serving on 127.0.0.1:" in out
    assert "client got: hello from portlib's reserved port" in out
