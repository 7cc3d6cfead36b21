"""detect_services() and ``portlib service HOST:PORT`` on loopback servers, and their errors."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

import portlib
from portlib.cli.service_detect import endpoint_query, render
from portlib.model import DetectedService, DetectionMethod, PortResult, PortState, Protocol, Reason

REPO = Path(__file__).resolve().parents[1]


class BannerServers:
    """Loopback listeners on ephemeral ports: each sends its banner, or nothing."""

    def __init__(self, banners: list[bytes | None]):
        self.listeners = []
        for banner in banners:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            self.listeners.append((sock, banner))
        self.ports = [s.getsockname()[1] for s, _ in self.listeners]
        self.held: list[socket.socket] = []
        self.threads = [
            threading.Thread(target=self._serve, args=(sock, banner), daemon=True)
            for sock, banner in self.listeners
        ]
        for thread in self.threads:
            thread.start()

    def _serve(self, sock: socket.socket, banner: bytes | None) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if banner is not None:
                with contextlib.suppress(OSError):  # a port scan's connect resets at once
                    conn.sendall(banner)
            self.held.append(conn)  # held open until close()

    def close(self) -> None:
        # shutdown wakes the accept() a thread is blocked in (close alone would not, and
        # the socket would go on listening); only then are the sockets really closed
        for sock, _ in self.listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(timeout=5)
        for sock, _ in self.listeners:
            sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def servers() -> Iterator[BannerServers]:
    made = BannerServers([b"SSH-2.0-OpenSSH_9.6\r\n"] * 40 + [None] + [b"RFB 003.008\n"])
    yield made
    made.close()


def test_many_services_at_once_with_a_small_budget(servers: BannerServers) -> None:
    pairs = [("127.0.0.1", port) for port in servers.ports]
    found = portlib.detect_services(pairs, concurrency=4, intensity=0)
    assert len(found) == len(pairs)
    names = [r.detected.name if r.detected else None for r in found]
    assert names[:40] == ["ssh"] * 40 and names[-1] == "vnc"
    ssh = found[0].detected
    assert ssh is not None and (ssh.product, ssh.version) == ("OpenSSH", "9.6")
    assert ssh.banner == b"SSH-2.0-OpenSSH_9.6\r\n" and found[0].reason is Reason.SYN_ACK
    silent = found[40].detected
    assert silent is not None and silent.method is DetectionMethod.TABLE and silent.confidence == 3


def test_a_port_that_refuses_comes_back_closed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        (result,) = portlib.detect_services([(ip_address("127.0.0.1"), port, Protocol.TCP)])
    assert (result.state, result.reason, result.detected) == (
        PortState.CLOSED,
        Reason.CONN_REFUSED,
        None,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"intensity": 10}, "version intensity must be 0-9"),
        ({"intensity": "high"}, "must be an integer"),
        ({"rtt": -1}, "rtt must be a positive"),
        ({"host_timeout": 0}, "host_timeout must be a positive"),
        ({"concurrency": 0}, "concurrency must be a positive"),
    ],
)
def test_bad_options_are_scan_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(portlib.ScanError, match=message):
        portlib.detect_services([("127.0.0.1", 22)], **options)  # type: ignore[arg-type]


def test_bad_targets_are_clear_errors() -> None:
    with pytest.raises(portlib.TargetSpecError, match="detection takes IP addresses"):
        portlib.detect_services([("not an address", 22)])
    with pytest.raises(portlib.TargetSpecError, match="expected a PortResult"):
        portlib.detect_services([("127.0.0.1",)])  # type: ignore[list-item]
    with pytest.raises(portlib.PortSpecError):
        portlib.detect_services([("127.0.0.1", 70000)])


async def test_blocking_call_refuses_inside_an_event_loop() -> None:
    with pytest.raises(portlib.ScanError, match="detect_services_async"):
        portlib.detect_services([("127.0.0.1", 22)])


def test_endpoint_queries() -> None:
    assert endpoint_query("192.0.2.10:22") == ("192.0.2.10", "22", None)
    assert endpoint_query("[2001:db8::1]:53/udp") == ("2001:db8::1", "53", "udp")
    assert endpoint_query("localhost:8000") == ("localhost", "8000", None)
    assert endpoint_query("ssh") is None and endpoint_query("53/udp") is None


def test_render_shows_the_version_column_and_details() -> None:
    found = DetectedService(
        "http", DetectionMethod.PROBED, 10, "nginx", "1.22.1", "title: lab", tunnel="ssl",
        cpe=("cpe:/a:igor_sysoev:nginx:1.22.1",),
    )  # fmt: skip
    table = DetectedService("x11", DetectionMethod.TABLE, 3, banner=b"\x00hi\r\n")
    results = (
        PortResult(ip_address("192.0.2.1"), 443, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK,
                   detected=found),
        PortResult(ip_address("192.0.2.1"), 6000, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK,
                   detected=table),
    )  # fmt: skip
    assert render(results).splitlines() == [
        "PORT     STATE SERVICE  VERSION",
        "443/tcp  open  ssl/http nginx 1.22.1 (title: lab)",
        "6000/tcp open  x11?",
        "| cpe: cpe:/a:igor_sysoev:nginx:1.22.1",
        "| banner: \\x00hi\\r\\n",
    ]


def portlib_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m portlib ARGS`` from this checkout, output captured."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "portlib", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return portlib_cli("service", *args)


def test_cli_service_detects_one_port(servers: BannerServers) -> None:
    done = _cli(f"127.0.0.1:{servers.ports[-1]}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == [
        f"{servers.ports[-1]}/tcp", "open", "vnc", "VNC", "(protocol", "3.8)",
    ]  # fmt: skip
    assert _cli("ssh").stdout.startswith("PORT")  # names stay registry look-ups


@pytest.mark.parametrize(
    "args", [("127.0.0.1:0",), ("300.1.1.1:22",), ("127.0.0.1:22", "--version-intensity", "12")]
)
def test_cli_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = _cli(*args)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
