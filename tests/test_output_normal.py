"""The nmap-like human report: a pure function of a ScanReport."""

from __future__ import annotations

import datetime as dt
from ipaddress import ip_address

from portlib.model import (
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)
from portlib.output.normal import format_seconds, render_normal

LOCAL = ip_address("127.0.0.1")
STARTED = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)


def port(
    n: int,
    state: PortState = PortState.CLOSED,
    reason: Reason = Reason.CONN_REFUSED,
    service: str | None = None,
    protocol: Protocol = Protocol.TCP,
    host=LOCAL,
) -> PortResult:
    return PortResult(host, n, protocol, state, reason, 0.0001, service)


def report(*hosts: HostResult, elapsed: float = 0.42, interrupted: bool = False, per_host=1000):
    return ScanReport(
        hosts=hosts,
        method=ScanMethod.CONNECT,
        started=STARTED,
        elapsed=elapsed,
        ports_per_host=per_host,
        interrupted=interrupted,
    )


def localhost_with(ports, latency=0.00012) -> HostResult:
    return HostResult(
        LOCAL, "localhost", HostState.UP, Reason.LOCALHOST_RESPONSE, tuple(ports), latency
    )


def test_typical_localhost_scan_reads_like_nmap() -> None:
    ports = [port(n) for n in range(1, 998)]
    ports += [
        port(22, PortState.OPEN, Reason.SYN_ACK, "ssh"),
        port(631, PortState.OPEN, Reason.SYN_ACK, "ipp"),
        port(8080, PortState.OPEN, Reason.SYN_ACK, None),
    ]
    text = render_normal(report(localhost_with(sorted(ports, key=lambda p: p.port))))
    assert text == (
        "Starting portlib 0.1.0 at 2026-01-02 03:04 UTC\n"
        "portlib scan report for localhost (127.0.0.1)\n"
        "Host is up (0.00012s latency).\n"
        "Not shown: 997 closed tcp ports (conn-refused)\n"
        "PORT     STATE SERVICE\n"
        "22/tcp   open  ssh\n"
        "631/tcp  open  ipp\n"
        "8080/tcp open  unknown\n"
        "\n"
        "portlib done: 1 IP address (1 host up) scanned in 0.42 seconds\n"
    )


def test_few_closed_ports_are_listed_not_folded() -> None:
    ports = [port(21), port(22, PortState.OPEN, Reason.SYN_ACK, "ssh"), port(23)]
    text = render_normal(report(localhost_with(ports), per_host=3))
    assert "Not shown" not in text
    assert "21/tcp closed unknown" in text
    assert "22/tcp open   ssh" in text


def test_all_ports_ignored_says_so() -> None:
    ports = [port(n) for n in range(1, 101)]
    text = render_normal(report(localhost_with(ports), per_host=100))
    assert "All 100 scanned ports on localhost (127.0.0.1) are in ignored states." in text
    assert "Not shown: 100 closed tcp ports (conn-refused)" in text
    assert "PORT" not in text


def test_mixed_reasons_and_states_are_counted() -> None:
    ports = [port(n, PortState.FILTERED, Reason.NO_RESPONSE) for n in range(1, 41)]
    ports += [port(n, PortState.FILTERED, Reason.ADMIN_PROHIBITED) for n in range(41, 51)]
    ports += [port(n) for n in range(51, 81)]
    ports += [port(100, PortState.OPEN, Reason.SYN_ACK, "x")]
    text = render_normal(report(localhost_with(ports), per_host=81))
    assert (
        "Not shown: 50 filtered tcp ports (40 no-response, 10 admin-prohibited), "
        "30 closed tcp ports (conn-refused)"
    ) in text


def test_down_hosts_are_left_out_and_counted() -> None:
    down = HostResult(ip_address("192.0.2.9"), None, HostState.DOWN, Reason.NO_RESPONSE)
    up = localhost_with([port(22, PortState.OPEN, Reason.SYN_ACK, "ssh")])
    text = render_normal(report(up, down))
    assert "192.0.2.9" not in text
    assert text.endswith("portlib done: 2 IP addresses (1 host up) scanned in 0.42 seconds\n")


def test_all_down_gives_nmaps_hint() -> None:
    down = HostResult(ip_address("192.0.2.9"), None, HostState.DOWN, Reason.NO_RESPONSE)
    text = render_normal(report(down))
    assert "Note: Host seems down. If it is really up, but blocking our ping probes, try -Pn" in (
        text
    )
    assert "(0 hosts up)" in text


def test_open_only_and_reason_column() -> None:
    ports = [port(21), port(22, PortState.OPEN, Reason.SYN_ACK, "ssh")]
    text = render_normal(report(localhost_with(ports), per_host=2), open_only=True, reason=True)
    assert "21/tcp" not in text
    assert "Not shown: 1 closed tcp port (conn-refused)" in text
    assert "PORT   STATE SERVICE REASON\n22/tcp open  ssh     syn-ack\n" in text
    assert "Host is up, received localhost-response (0.00012s latency)." in text
    closed_only = localhost_with([port(21)])
    assert "localhost" not in render_normal(report(closed_only, per_host=1), open_only=True)


def test_ping_scan_and_interrupted_and_udp() -> None:
    host = HostResult(LOCAL, None, HostState.UP, Reason.USER_SET)
    text = render_normal(report(host, per_host=0))
    assert "portlib scan report for 127.0.0.1\nHost is up.\nportlib done" in text
    udp = port(53, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, "domain", Protocol.UDP)
    partial = render_normal(report(localhost_with([udp]), interrupted=True))
    assert "WARNING: the scan was interrupted" in partial
    assert "53/udp open|filtered domain" in partial


def test_format_seconds_two_significant_digits() -> None:
    assert format_seconds(0.000087) == "0.000087"
    assert format_seconds(0.00012) == "0.00012"
    assert format_seconds(0.12) == "0.12"
    assert format_seconds(1.5) == "1.5"
    assert format_seconds(0) == "0.00"


def test_folding_is_decided_per_state_across_protocols_like_the_xml() -> None:
    # 20 closed TCP + 10 closed UDP: 30 closed ports, so nmap folds them all,
    # though neither protocol alone has more than 25.
    ports = [port(n) for n in range(1, 21)]
    ports += [port(n, reason=Reason.PORT_UNREACH, protocol=Protocol.UDP) for n in range(1, 11)]
    ports.append(port(22, PortState.OPEN, Reason.SYN_ACK, "ssh"))
    text = render_normal(report(localhost_with(ports)))
    assert (
        "Not shown: 20 closed tcp ports (conn-refused), 10 closed udp ports (port-unreach)" in text
    )
    rows = [line.split() for line in text.splitlines() if "/tcp" in line or "/udp" in line]
    assert rows == [["22/tcp", "open", "ssh"]]
