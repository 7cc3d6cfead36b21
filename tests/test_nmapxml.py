"""nmap XML (-oX): DTD-valid, read by python-libnmap, and read back by portlib (ours and nmap's)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portlib
from portlib.errors import ReportFormatError
from portlib.model import (
    HostResult,
    HostState,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)
from portlib.output import load, parse
from portlib.output.nmapxml import to_nmap_xml
from portlib.output.portsummary import expand_ports, summarise
from portlib.portspec import compress_ports
from tests.report_samples import LOCAL, port, reports, sample_report, verdicts

NMAP_DTD = Path("/usr/share/nmap/nmap.dtd")


def dtd_errors(xml: str, tmp_path: Path) -> str:
    """xmllint's complaints about ``xml`` against nmap's DTD ('' when valid)."""
    if shutil.which("xmllint") is None or not NMAP_DTD.exists():
        pytest.skip("needs xmllint and nmap's DTD (apt-get install libxml2-utils nmap)")
    path = tmp_path / "report.xml"
    path.write_text(xml)
    done = subprocess.run(
        ["xmllint", "--noout", "--dtdvalid", str(NMAP_DTD), str(path)],
        capture_output=True,
        text=True,
    )
    return "" if done.returncode == 0 else done.stderr or f"exit {done.returncode}"


# ------------------------------------------------------------------ the writer


def test_sample_validates_against_nmaps_dtd(tmp_path: Path) -> None:
    assert dtd_errors(to_nmap_xml(sample_report()), tmp_path) == ""


def test_awkward_text_stays_valid(tmp_path: Path) -> None:
    """Hostnames and argv come from outside: quotes, markup, control bytes, '--'."""
    host = HostResult(
        LOCAL,
        "a<b>&\"c'\x01\ttab\nline",
        HostState.UP,
        Reason.USER_SET,
        (port(1, PortState.OPEN, Reason.SYN_ACK, service='we"ird<&>'),),
    )
    report = sample_report(hosts=(host,), args=("portlib", "scan", "--top-ports", "5", "-->"))
    xml = to_nmap_xml(report)
    assert dtd_errors(xml, tmp_path) == ""
    back = parse(xml)
    assert back.hosts[0].hostname == "a<b>&\"c'?\ttab\nline"
    assert back.hosts[0].ports[0].service == 'we"ird<&>'
    assert back.args == report.args


def test_empty_and_ping_reports_validate(tmp_path: Path) -> None:
    assert dtd_errors(to_nmap_xml(sample_report(hosts=())), tmp_path) == ""
    ping = sample_report(
        method=ScanMethod.PING,
        protocols=(),
        hosts=(HostResult(LOCAL, None, HostState.UP, Reason.LOCALHOST_RESPONSE),),
    )
    xml = to_nmap_xml(ping)
    assert "<scaninfo" not in xml
    assert dtd_errors(xml, tmp_path) == ""
    back = parse(xml)
    assert back.method is ScanMethod.PING and back.protocols == ()
    assert [(h.address, h.state, h.reason) for h in back.hosts] == [
        (LOCAL, HostState.UP, Reason.LOCALHOST_RESPONSE)
    ]


def test_layout_matches_nmap() -> None:
    xml = to_nmap_xml(sample_report())
    assert '<nmaprun scanner="nmap" ' in xml
    assert '<scaninfo type="connect" protocol="tcp" numservices="130"' in xml
    assert 'services="1-100,200-219,300-309"/>' in xml
    assert '<scaninfo type="udp" protocol="udp" numservices="1" services="53"/>' in xml
    assert '<status state="up" reason="user-set" reason_ttl="0"/>' in xml
    assert '<address addr="::1" addrtype="ipv6"/>' in xml
    assert '<hostname name="localhost" type="user"/>' in xml
    assert (
        '<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="0"/>'
        '<service name="ssh" method="table" conf="3"/></port>'
    ) in xml
    # a port without a known service has no <service>, as in nmap's output
    assert '<port protocol="udp" portid="53"><state state="open|filtered"' in xml
    assert (
        'portid="53"><state state="open|filtered" reason="no-response" reason_ttl="0"/></port>'
        in xml
    )
    assert '<extraports state="closed" count="98">' in xml
    assert 'reason="conn-refused" count="98" proto="tcp" ports="1-21,23-79,81-100"/>' in xml
    assert '<extraports state="filtered" count="30">' in xml
    assert 'reason="no-response" count="20" proto="tcp" ports="200-219"' in xml
    assert 'reason="admin-prohibited" count="10" proto="tcp" ports="300-309"' in xml
    assert '<hosts up="1" down="1" total="2"/>' in xml
    assert 'elapsed="1.25" exit="success"' in xml


def test_interrupted_scan_is_an_error_exit() -> None:
    xml = to_nmap_xml(sample_report(interrupted=True))
    assert 'exit="error"' in xml
    assert parse(xml).interrupted
    assert not parse(to_nmap_xml(sample_report())).interrupted


@pytest.mark.parametrize("scan", [ScanMethod.CONNECT, ScanMethod.SYN, ScanMethod.ACK])
def test_scan_type_follows_the_method(scan: ScanMethod) -> None:
    xml = to_nmap_xml(sample_report(method=scan))
    assert f'<scaninfo type="{scan.value}" protocol="tcp"' in xml
    assert parse(xml).method is scan


# ------------------------------------------------------------- extraports rule


def test_twenty_five_closed_ports_are_listed_twenty_six_are_folded() -> None:
    listed = summarise([port(n) for n in range(1, 26)])
    assert len(listed.shown) == 25 and listed.folded == ()
    folded = summarise([port(n) for n in range(1, 27)])
    assert folded.shown == ()
    assert [(i.state, i.count) for i in folded.folded] == [(PortState.CLOSED, 26)]


def test_open_ports_are_never_folded() -> None:
    summary = summarise([port(n, PortState.OPEN, Reason.SYN_ACK) for n in range(1, 200)])
    assert len(summary.shown) == 199 and summary.folded == ()


def test_fold_counts_a_state_across_protocols() -> None:
    """As nmap: 20 closed TCP + 10 closed UDP = 30 closed ports, one <extraports>."""
    ports = [port(n) for n in range(1, 21)]
    ports += [port(n, reason=Reason.PORT_UNREACH, protocol=Protocol.UDP) for n in range(1, 11)]
    summary = summarise(ports)
    assert summary.shown == ()
    (closed,) = summary.folded
    assert closed.count == 30
    assert [(g.reason, g.protocol, g.count) for g in closed.reasons] == [
        (Reason.CONN_REFUSED, Protocol.TCP, 20),
        (Reason.PORT_UNREACH, Protocol.UDP, 10),
    ]


def test_compress_and_expand_are_inverse() -> None:
    assert compress_ports([1080, *range(1, 1025)]) == "1-1024,1080"
    assert expand_ports("1-3,80") == [1, 2, 3, 80]
    assert compress_ports([]) == ""
    for bad in ("1-", "x", "70000", "5-3"):
        with pytest.raises(ValueError):
            expand_ports(bad)


@given(st.sets(st.integers(0, 65535), max_size=200))
def test_compress_round_trips(ports: set[int]) -> None:
    assert expand_ports(compress_ports(ports)) == sorted(ports)


# ---------------------------------------------------------------- libnmap reads it


def test_libnmap_reads_the_same_hosts_ports_states_reasons_services() -> None:
    libnmap = pytest.importorskip("libnmap.parser")
    report = sample_report()
    parsed = libnmap.NmapParser.parse_fromstring(to_nmap_xml(report))
    assert parsed.hosts_total == 2 and parsed.hosts_up == 1
    assert parsed.scan_type == "udp"  # libnmap keeps the last <scaninfo>, for nmap's files too
    assert parsed.elapsed == 1.25
    up, down = parsed.hosts
    assert up.address == "127.0.0.1" and up.status == "up" and up.hostnames == ["localhost"]
    assert down.address == "::1" and down.status == "down"
    got = {(s.port, s.protocol, s.state, s.reason, s.service) for s in up.services}
    # libnmap sees the listed ports; the folded majority is in extraports
    assert got == {
        (22, "tcp", "open", "syn-ack", "ssh"),
        (80, "tcp", "open", "syn-ack", "http"),
        (53, "udp", "open|filtered", "no-response", ""),
    }
    assert up.extraports_state["state"]["state"] in {"closed", "filtered"}
    assert up.extraports_reasons


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_libnmap_agrees_on_every_listed_port(report: ScanReport) -> None:
    libnmap = pytest.importorskip("libnmap.parser")
    parsed = libnmap.NmapParser.parse_fromstring(to_nmap_xml(report))
    assert [h.address for h in parsed.hosts] == [str(h.address) for h in report.hosts]
    for ours, theirs in zip(report.hosts, parsed.hosts, strict=True):
        assert theirs.status == ours.state.value
        shown = summarise(ours.ports).shown
        assert [(s.port, s.protocol, s.state, s.reason, s.service) for s in theirs.services] == [
            (p.port, p.protocol.value, p.state.value, p.reason.value, p.service or "")
            for p in shown
        ]


# --------------------------------------------------------------- portlib reads it


def test_round_trip_keeps_every_verdict() -> None:
    report = sample_report()
    back = parse(to_nmap_xml(report))
    assert verdicts(back) == verdicts(report)
    assert [(h.address, h.hostname, h.state, h.reason) for h in back.hosts] == [
        (h.address, h.hostname, h.state, h.reason) for h in report.hosts
    ]
    assert back.method is ScanMethod.CONNECT
    assert back.protocols == (Protocol.TCP, Protocol.UDP)
    assert back.started == report.started
    assert back.elapsed == report.elapsed
    assert back.args == report.args
    # listed ports keep their service names
    assert {p.port: p.service for p in back.open_ports()} == {22: "ssh", 80: "http"}


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_round_trip_property(report: ScanReport) -> None:
    back = parse(to_nmap_xml(report))
    assert verdicts(back) == verdicts(report)
    assert [(h.address, h.state) for h in back.hosts] == [
        (h.address, h.state) for h in report.hosts
    ]
    assert back.method is report.method
    assert back.interrupted == report.interrupted


def test_reads_a_path_and_a_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    path.write_text(to_nmap_xml(sample_report()))
    assert verdicts(load(str(path))) == verdicts(sample_report())
    assert verdicts(load(path)) == verdicts(sample_report())
    assert verdicts(portlib.load_report(str(path))) == verdicts(sample_report())


NMAP_SCTP = """<?xml version="1.0"?><nmaprun scanner="nmap" start="0" version="7.93"
xmloutputversion="1.05"><scaninfo type="sctpinit" protocol="sctp" numservices="1"
services="80"/></nmaprun>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<nmaprun args="&b;"/>"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<nmaprun><host>", "not well-formed XML"),
        ("<html><body/></html>", "root element is <html>"),
        (BILLION_LAUGHS, "entities"),
        (NMAP_SCTP, "protocol 'sctp'"),
        ('<nmaprun start="0"><host><address addr="127.0.0.1"/></host></nmaprun>', "no <status>"),
        (
            '<nmaprun><host><status state="up" reason="x"/><address addr="1.2.3.999"/></host>'
            "</nmaprun>",
            "bad host address",
        ),
        (
            '<nmaprun><host><status state="up" reason="x"/><address addr="127.0.0.1"/><ports>'
            '<port protocol="tcp" portid="70000"><state state="open" reason="syn-ack"/></port>'
            "</ports></host></nmaprun>",
            "bad port number '70000'",
        ),
        (
            '<nmaprun><host><status state="up" reason="x"/><address addr="127.0.0.1"/><ports>'
            '<port protocol="tcp" portid="7"><state state="ajar" reason="syn-ack"/></port>'
            "</ports></host></nmaprun>",
            "unknown port state 'ajar'",
        ),
    ],
)
def test_bad_input_is_a_report_format_error(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ReportFormatError, match="<report text>") as caught:
        parse(text)
    assert message in str(caught.value)
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(ReportFormatError, match=str(path)):
        load(str(path))


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportFormatError, match=r"nope\.xml: cannot read"):
        load(str(tmp_path / "nope.xml"))


def test_unknown_reason_reads_as_unknown_response() -> None:
    xml = to_nmap_xml(sample_report()).replace('reason="syn-ack"', 'reason="fin-ack"')
    back = parse(xml)
    assert {p.reason for p in back.open_ports()} == {Reason.UNKNOWN_RESPONSE}


@settings(max_examples=200)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: "<" + t))
def test_any_input_parses_or_raises_report_format_error(data: bytes | str) -> None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    if text.lstrip()[:1] not in {"<", "{", "["}:
        text = "<" + text
    with contextlib.suppress(ReportFormatError):
        parse(text)


# ------------------------------------------------------------ real nmap output


def run_nmap(*args: str) -> str:
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed (apt-get install nmap)")
    done = subprocess.run(["nmap", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.live
def test_reads_real_nmap_connect_scan() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ours = listener.getsockname()[1]
        xml = run_nmap("-sT", "-p", f"1-1024,{ours}", "-n", "-Pn", "-oX", "-", "127.0.0.1")
    report = parse(xml)
    assert report.method is ScanMethod.CONNECT
    (host,) = report.hosts
    assert str(host.address) == "127.0.0.1" and host.state is HostState.UP
    found = {p.port: p for p in host.all_ports()}
    # every scanned port is in the report, the folded closed ones too (extrareasons ports=),
    # and those stay folded: one range, not a thousand verdicts
    assert set(found) == {*range(1, 1025), ours}
    assert [p.port for p in host.ports] == [ours]
    (closed,) = host.extra_ports
    assert closed.state is PortState.CLOSED and closed.count == 1024
    assert found[ours].state is PortState.OPEN and found[ours].reason is Reason.SYN_ACK
    assert all(p.state in {PortState.OPEN, PortState.CLOSED} for p in host.all_ports()), (
        "loopback has no filtered ports"
    )
    assert report.args[:2] == ("nmap", "-sT")


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0, reason="nmap -sS -sU needs root")
def test_reads_real_nmap_syn_and_udp_scan() -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        tport, uport = tcp.getsockname()[1], udp.getsockname()[1]
        xml = run_nmap(
            "-sS", "-sU", "-p", f"T:{tport},U:{uport}", "-n", "-Pn", "-oX", "-", "127.0.0.1"
        )
    report = parse(xml)
    assert report.method is ScanMethod.SYN
    assert report.protocols == (Protocol.TCP, Protocol.UDP)
    found = {(p.port, p.protocol): p for p in report.hosts[0].ports}
    assert found[(tport, Protocol.TCP)].state is PortState.OPEN
    # a bound UDP socket that never answers: no ICMP error, so open|filtered
    assert found[(uport, Protocol.UDP)].state is PortState.OPEN_FILTERED


@pytest.mark.live
def test_nmap_and_portlib_xml_of_the_same_ports_read_alike(tmp_path: Path) -> None:
    """nmap's file and ours, read back, agree on every verdict of a loopback scan."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ours = listener.getsockname()[1]
        nmap_report = parse(
            run_nmap("-sT", "-p", f"1-40,{ours}", "-n", "-Pn", "-oX", "-", "127.0.0.1")
        )
    rewritten = parse(to_nmap_xml(nmap_report))
    assert verdicts(rewritten) == verdicts(nmap_report)
    assert dtd_errors(to_nmap_xml(nmap_report), tmp_path) == ""
