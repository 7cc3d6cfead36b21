"""Grepable output (-oG): nmap's documented field layout, and line for line nmap's own."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings

from portlib.model import HostResult, HostState, PortState, Protocol, Reason, ScanReport
from portlib.output import load
from portlib.output.grepable import to_grepable
from portlib.output.portsummary import summarise
from tests.report_samples import LOCAL, port, reports, sample_report


def fields(line: str) -> dict[str, str]:
    """A host line's tab-separated ``Name: value`` fields (nmap's documented layout)."""
    out = {}
    for field in line.split("\t"):
        name, sep, value = field.partition(": ")
        assert sep, f"field without 'Name: ': {field!r}"
        out[name] = value
    return out


def port_entries(ports_field: str) -> list[list[str]]:
    """Entries of a Ports field: ', '-separated, each 7 '/'-subfields ending in '/'."""
    if not ports_field:
        return []
    entries = []
    for entry in ports_field.split(", "):
        parts = entry.split("/")
        assert len(parts) == 8 and parts[7] == "", entry
        entries.append(parts[:7])
    return entries


def test_sample_layout() -> None:
    lines = to_grepable(sample_report()).splitlines()
    assert lines[0].startswith("# portlib ") and " scan initiated " in lines[0]
    assert lines[0].endswith(" as: portlib scan -p 1-100,200-219,300-309,U:53 localhost")
    assert lines[1] == "Host: 127.0.0.1 (localhost)\tStatus: Up"
    host = fields(lines[2])
    assert host["Host"] == "127.0.0.1 (localhost)"
    assert port_entries(host["Ports"]) == [
        ["22", "open", "tcp", "", "ssh", "", ""],
        ["80", "open", "tcp", "", "http", "", ""],
        ["53", "open|filtered", "udp", "", "", "", ""],
    ]
    # closed and filtered were both folded: nmap then writes no Ignored State
    assert "Ignored State" not in host
    assert lines[3] == "Host: ::1 ()\tStatus: Down"
    assert lines[4].startswith("# portlib done at ")
    assert lines[4].endswith(" -- 2 IP addresses (1 host up) scanned in 1.25 seconds")
    assert len(lines) == 5


def test_one_folded_state_is_named() -> None:
    ports = (
        *(port(n) for n in range(1, 1000)),
        port(1000, PortState.OPEN, Reason.SYN_ACK, service="cadlock2"),
    )
    host = HostResult(LOCAL, None, HostState.UP, Reason.USER_SET, ports)
    line = to_grepable(sample_report(hosts=(host,))).splitlines()[2]
    assert line == (
        "Host: 127.0.0.1 ()\tPorts: 1000/open/tcp//cadlock2///\tIgnored State: closed (999)"
    )


def test_everything_folded_leaves_an_empty_ports_field() -> None:
    host = HostResult(LOCAL, None, HostState.UP, Reason.USER_SET, tuple(port(n) for n in range(30)))
    line = to_grepable(sample_report(hosts=(host,))).splitlines()[2]
    assert line == "Host: 127.0.0.1 ()\tPorts: \tIgnored State: closed (30)"


def test_separators_in_free_text_cannot_break_the_layout() -> None:
    host = HostResult(
        LOCAL,
        "evil\tname\nwith: colons",
        HostState.UP,
        Reason.USER_SET,
        (port(7, PortState.OPEN, Reason.SYN_ACK, service="a/b, c\td"),),
    )
    text = to_grepable(sample_report(hosts=(host,), args=("portlib", "scan", "x\ny")))
    lines = text.splitlines()
    assert len(lines) == 4
    entry = port_entries(fields(lines[2])["Ports"])
    assert entry == [["7", "open", "tcp", "", "a|b| c|d", "", ""]]


def test_interrupted_scan_says_so() -> None:
    assert to_grepable(sample_report(interrupted=True)).rstrip().endswith("(interrupted)")


@settings(max_examples=60)
@given(reports())
def test_every_shown_port_is_an_entry(report: ScanReport) -> None:
    lines = to_grepable(report).splitlines()
    assert lines[0].startswith("# ") and lines[-1].startswith("# ")
    body = lines[1:-1]
    for host in report.hosts:
        status = fields(body.pop(0))
        assert status["Host"].startswith(f"{host.address} (")
        assert status["Status"] == host.state.value.capitalize()
        if host.state is HostState.UP and host.ports:
            got = fields(body.pop(0))
            summary = summarise(host.ports)
            assert [e[:3] for e in port_entries(got["Ports"])] == [
                [str(p.port), p.state.value, p.protocol.value] for p in summary.shown
            ]
            assert ("Ignored State" in got) == (len(summary.folded) == 1)
    assert body == []


def test_tcp_ports_come_before_udp() -> None:
    ports = (
        port(53, PortState.OPEN, Reason.UDP_RESPONSE, protocol=Protocol.UDP),
        port(80, PortState.OPEN, Reason.SYN_ACK),
    )
    host = HostResult(LOCAL, None, HostState.UP, Reason.USER_SET, ports)
    line = to_grepable(sample_report(hosts=(host,))).splitlines()[2]
    assert "Ports: 80/open/tcp/////, 53/open/udp/////" in line


@pytest.mark.live
def test_same_host_lines_as_nmap(tmp_path: Path) -> None:
    """nmap -oG and portlib's -oG of nmap's own verdicts (read from its -oX) are identical."""
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed (apt-get install nmap)")
    xml_path = tmp_path / "scan.xml"
    listeners = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            listeners.append(s)
        spec = "1-30," + ",".join(str(s.getsockname()[1]) for s in listeners)
        for extra in ("1-20", spec):  # few closed ports (listed) and many (folded)
            done = subprocess.run(
                [
                    *("nmap", "-sT", "-p", f"{extra},22,80", "-n", "-Pn"),
                    *("-oX", str(xml_path), "-oG", "-", "127.0.0.1"),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            theirs = [ln for ln in done.stdout.splitlines() if not ln.startswith("#")]
            ours = [
                ln for ln in to_grepable(load(str(xml_path))).splitlines() if not ln.startswith("#")
            ]
            assert ours == theirs
    finally:
        for s in listeners:
            s.close()
