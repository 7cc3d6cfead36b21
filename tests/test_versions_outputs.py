"""-sV in the scan: Scanner(versions=True), ``portlib scan -sV``, and the detected
services in every output (normal VERSION column, -oX valid against nmap's DTD and
read by libnmap, -oG's version field, JSON both ways)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import portlib
from portlib.model import (
    Certificate,
    DetectedService,
    DetectionMethod,
    PortState,
    ScanReport,
)
from portlib.output.formats import parse
from portlib.output.grepable import to_grepable
from portlib.output.jsonout import dumps
from portlib.output.nmapxml import to_nmap_xml
from portlib.output.normal import render_normal
from tests.report_samples import sample_report
from tests.test_nmapxml import dtd_errors
from tests.test_versions_loopback import BannerServers, portlib_cli

SSH = DetectedService(
    "ssh", DetectionMethod.PROBED, 10, "OpenSSH", "9.2p1 Debian 2+deb12u10", "protocol 2.0",
    os_hint="Linux", cpe=("cpe:/a:openbsd:openssh:9.2p1", "cpe:/o:linux:linux_kernel"),
    banner=b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n",
)  # fmt: skip
HTTPS = DetectedService(
    "http", DetectionMethod.PROBED, 10, "nginx", "1.22.1", 'title: a <"b"> & c', tunnel="ssl",
    banner=b"HTTP/1.1 200 OK\r\n\xff\x00",
    certificate=Certificate(
        "CN=lab.example", "CN=lab.example", ("lab.example", "192.0.2.10"),
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 31, tzinfo=dt.UTC), True,
    ),
)  # fmt: skip


def detected_report() -> ScanReport:
    """The sample report with 22 and 80 detected (80 as TLS, to exercise the tunnel)."""
    report = sample_report()
    host = report.hosts[0]
    found = {22: SSH, 80: HTTPS}
    ports = tuple(
        dataclasses.replace(p, detected=found[p.port]) if p.port in found else p for p in host.ports
    )
    hosts = (dataclasses.replace(host, ports=ports), *report.hosts[1:])
    return dataclasses.replace(report, hosts=hosts)


def test_normal_output_gets_nmaps_version_column() -> None:
    lines = render_normal(detected_report()).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PORT"))
    assert lines[header].split() == ["PORT", "STATE", "SERVICE", "VERSION"]
    rows = {line.split()[0]: line for line in lines[header + 1 :] if "/tcp" in line}
    assert rows["22/tcp"].split()[2:] == ["ssh", "OpenSSH", "9.2p1", "Debian", "2+deb12u10",
                                          "(protocol", "2.0)"]  # fmt: skip
    assert rows["80/tcp"].split()[2:5] == ["ssl/http", "nginx", "1.22.1"]
    assert "VERSION" not in render_normal(sample_report())  # no -sV, no column


def test_xml_is_dtd_valid_and_reads_back(tmp_path: Path) -> None:
    xml = to_nmap_xml(detected_report())
    assert dtd_errors(xml, tmp_path) == ""
    assert (
        '<service name="ssh" product="OpenSSH" version="9.2p1 Debian 2+deb12u10"'
        ' extrainfo="protocol 2.0" ostype="Linux" method="probed" conf="10">'
        "<cpe>cpe:/a:openbsd:openssh:9.2p1</cpe><cpe>cpe:/o:linux:linux_kernel</cpe></service>"
    ) in xml
    again = parse(xml)
    by_port = {p.port: p for p in again.hosts[0].all_ports()}
    # banners and certificates are not part of nmap's XML
    assert by_port[22].detected == dataclasses.replace(SSH, banner=b"")
    assert by_port[80].detected == dataclasses.replace(HTTPS, banner=b"", certificate=None)
    assert by_port[23].detected is None


def test_libnmap_reads_the_detected_services() -> None:
    libnmap = pytest.importorskip("libnmap.parser")
    parsed = libnmap.NmapParser.parse_fromstring(to_nmap_xml(detected_report()))
    services = {s.port: s for s in parsed.hosts[0].services}
    assert services[22].service == "ssh" and services[22].banner.startswith("product: OpenSSH")
    assert services[22].service_dict["version"] == "9.2p1 Debian 2+deb12u10"
    assert services[80].tunnel == "ssl" and services[80].service_dict["product"] == "nginx"


def test_grepable_carries_the_version() -> None:
    line = next(x for x in to_grepable(detected_report()).splitlines() if "Ports:" in x)
    assert "22/open/tcp//ssh//OpenSSH 9.2p1 Debian 2+deb12u10 (protocol 2.0)/" in line
    assert '80/open/tcp//ssl|http//nginx 1.22.1 (title: a <"b"> & c)/' in line


def test_json_carries_every_field_both_ways() -> None:
    report = detected_report()
    plain = json.loads(dumps(report))
    ssh = next(p for p in plain["hosts"][0]["ports"] if p["port"] == 22)["detected"]
    assert ssh["banner"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"
    assert ssh["method"] == "probed" and ssh["cpe"][0] == "cpe:/a:openbsd:openssh:9.2p1"
    assert parse(dumps(report)) == report  # banner bytes and certificate too


@pytest.fixture
def servers() -> Iterator[BannerServers]:
    made = BannerServers([b"SSH-2.0-dropbear_2022.83\r\n", b"RFB 003.008\n"])
    yield made
    made.close()


async def test_scanner_with_versions_streams_open_ports_detected(servers: BannerServers) -> None:
    closed = servers.ports[0] + 1 if servers.ports[0] + 1 not in servers.ports else 1
    streamed = []
    spec = [*servers.ports, closed]
    async with portlib.Scanner("127.0.0.1", spec, versions=True, discovery=False) as results:
        async for result in results:
            streamed.append(result)
    report = results.report()
    by_port = {p.port: p for p in report.hosts[0].ports}
    ssh, vnc = (by_port[p].detected for p in servers.ports)
    assert ssh is not None and (ssh.product, ssh.version) == ("Dropbear sshd", "2022.83")
    assert vnc is not None and vnc.name == "vnc"
    if by_port[closed].state is not PortState.OPEN:
        assert by_port[closed].detected is None
    assert {r.port: r for r in streamed} == by_port  # the stream saw the detected results


def test_scan_without_versions_detects_nothing(servers: BannerServers) -> None:
    report = portlib.scan("127.0.0.1", servers.ports, discovery=False)
    assert all(p.detected is None for p in report.hosts[0].ports)
    with pytest.raises(portlib.ScanError, match="version intensity"):
        portlib.scan("127.0.0.1", servers.ports, versions=True, version_intensity=11)
    with pytest.raises(portlib.ScanError, match="versions must be True or False"):
        portlib.Scanner("127.0.0.1", servers.ports, versions="yes")  # type: ignore[arg-type]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return portlib_cli("scan", *args)


def test_cli_scan_sv(servers: BannerServers, tmp_path: Path) -> None:
    spec = ",".join(map(str, servers.ports))
    done = _cli("-sV", "-Pn", "-p", spec, "127.0.0.1", "-oX", str(tmp_path / "out.xml"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("PORT"))
    assert header.split() == ["PORT", "STATE", "SERVICE", "VERSION"]
    assert any(line.split()[2:5] == ["ssh", "Dropbear", "sshd"] for line in lines)
    xml = (tmp_path / "out.xml").read_text()
    assert dtd_errors(xml, tmp_path) == ""
    assert 'product="Dropbear sshd" version="2022.83"' in xml
    light = _cli("-sV", "--version-light", "-Pn", "-p", spec, "127.0.0.1", "-oG", "-")
    assert "ssh//Dropbear sshd 2022.83 (protocol 2.0)/" in light.stdout


@pytest.mark.parametrize(
    "args", [("-sV", "--version-intensity", "10"), ("--version-all", "--version-light")]
)
def test_cli_scan_bad_version_flags(args: tuple[str, ...]) -> None:
    done = _cli(*args, "-p", "1", "127.0.0.1")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
