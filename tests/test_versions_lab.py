"""Service detection against real Debian daemons in a lab namespace, with nmap as oracle.

One target runs every daemon of ``tests.lab.daemons`` with a configuration written
here, on its standard port and (through an iptables REDIRECT) on an unusual one; a
second target runs hostile servers. Detection runs in the scanner namespace through
``lab.call``; ``nmap -sV`` runs there too, at the same time, on the same ports.
"""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import pytest

from portlib.model import DetectionMethod, PortResult, PortState, Protocol
from tests.lab.daemons import DAEMONS, DaemonSet, missing_daemons
from tests.lab.netns import ns_argv
from tests.lab.oracle import disagreements, nmap_argv, nmap_services
from tests.lab.procs import python_module_argv

pytestmark = pytest.mark.lab

SERVICE_HOST = "192.0.2.10"
ODD_HOST = "192.0.2.11"
SILENT, CLOSES, NOISE, TLS_ONLY, PRINTER = 7000, 7001, 7002, 7003, 9100


def _ports(protocol: str) -> list[int]:
    return sorted({p for d in DAEMONS if d.protocol == protocol for p in (d.port, d.unusual)})


# ---- run inside the scanner namespace (via lab.call) -------------------------------------


def detect_in_lab(pairs: list[tuple[str, int, str]], **options: object) -> tuple[PortResult, ...]:
    import portlib

    return portlib.detect_services(pairs, **options)  # type: ignore[arg-type]


def timed_detect(pairs: list[tuple[str, int, str]], **options: object) -> tuple[object, float]:
    import time

    import portlib

    started = time.monotonic()
    found = portlib.detect_services(pairs, **options)  # type: ignore[arg-type]
    return found, time.monotonic() - started


def scan_then_detect(target: str, ports: str) -> object:
    import portlib

    return portlib.detect_services(portlib.scan(target, ports, timing=4))


# ---- the lab -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(module_lab):  # type: ignore[no-untyped-def]
    missing = missing_daemons()
    if missing:
        pytest.skip(f"lab daemons not installed (tools/ci-deps.sh installs them): {missing}")
    host = module_lab.add_host("svc", v4=SERVICE_HOST)
    daemons = DaemonSet(host)
    try:
        daemons.start_all()
        yield module_lab, host, daemons
    finally:
        daemons.stop()


@pytest.fixture(scope="module")
def detected_and_nmap(services):  # type: ignore[no-untyped-def]
    """portlib's detection of every daemon port, then nmap's (TCP and UDP at once).

    One after the other: some daemons serve few connections at a time (dnsmasq's TCP
    children), and nmap holds its connections open for seconds."""
    lab, _, _ = services
    tcp, udp = _ports("tcp"), _ports("udp")
    pairs = [(SERVICE_HOST, p, "tcp") for p in tcp] + [(SERVICE_HOST, p, "udp") for p in udp]
    ours = lab.call(detect_in_lab, pairs, timeout_s=120)
    oracles = [
        subprocess.Popen(
            ns_argv(lab.scanner_ns, nmap_argv(SERVICE_HOST, proto, ports)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for proto, ports in (("tcp", tcp), ("udp", udp))
    ]
    outputs = [proc.communicate(timeout=400)[0] for proc in oracles]
    theirs: dict[tuple[int, str], dict[str, str]] = {}
    for text in outputs:
        theirs.update(nmap_services(text))
    return {(r.port, str(r.protocol)): r for r in ours}, theirs


def test_every_daemon_is_identified_on_its_own_and_an_unusual_port(detected_and_nmap) -> None:  # type: ignore[no-untyped-def]
    ours, _ = detected_and_nmap
    for daemon in DAEMONS:
        for port in (daemon.port, daemon.unusual):
            result = ours[(port, daemon.protocol)]
            found = result.detected
            assert found is not None, result
            assert (found.name, found.tunnel) == (daemon.service, daemon.tunnel), (port, found)
            assert found.method is DetectionMethod.PROBED and found.confidence == 10, found
            assert found.product, (port, found)
            assert found.banner, (port, found)


def test_answers_agree_with_nmap(detected_and_nmap) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = detected_and_nmap
    problems = [
        problem
        for key, result in sorted(ours.items())
        for problem in disagreements(result, theirs.get(key, {}))
    ]
    assert not problems, problems
    # nmap was really asked and really answered (what it identifies varies a little
    # from run to run, on the unusual ports above all)
    assert sum(1 for s in theirs.values() if s.get("method") == "probed") >= len(theirs) // 2


def test_tls_certificate_facts(detected_and_nmap) -> None:  # type: ignore[no-untyped-def]
    ours, _ = detected_and_nmap
    for port in (443, 8444):
        found = ours[(port, "tcp")].detected
        assert found is not None and found.certificate is not None
        cert = found.certificate
        assert cert.subject == "CN=lab.example,O=portlib lab" and cert.self_signed
        assert cert.alt_names == ("lab.example", "www.lab.example", "192.0.2.10")
        assert cert.not_after is not None and cert.not_before is not None


def test_details_from_real_daemons(detected_and_nmap) -> None:  # type: ignore[no-untyped-def]
    ours, _ = detected_and_nmap
    smtp = ours[(25, "tcp")].detected
    assert smtp is not None and smtp.extra_info == "STARTTLS"
    ssh = ours[(2222, "tcp")].detected
    assert ssh is not None and ssh.os_hint == "Linux" and ssh.extra_info == "protocol 2.0"
    snmp = ours[(161, "udp")].detected
    assert snmp is not None and snmp.os_hint == "Linux"
    ntp = ours[(123, "udp")].detected
    assert ntp is not None and (ntp.version, ntp.extra_info) == ("v4", "unsynchronized")


def test_ipv6_and_a_port_nothing_listens_on(services) -> None:  # type: ignore[no-untyped-def]
    lab, host, _ = services
    pairs = [(str(host.v6), 22, "tcp"), (str(host.v6), 443, "tcp"), (SERVICE_HOST, 9, "tcp")]
    ssh, https, closed = lab.call(detect_in_lab, pairs, timeout_s=60)
    assert ssh.detected is not None and ssh.detected.product == "OpenSSH"
    assert ssh.host == ip_address(str(host.v6))
    assert https.detected is not None and (https.detected.tunnel, https.detected.product) == (
        "ssl",
        "nginx",
    )
    assert (closed.state, closed.detected) == (PortState.CLOSED, None)


def test_detect_services_on_a_scan_report(services) -> None:  # type: ignore[no-untyped-def]
    lab, _, _ = services
    report = lab.call(scan_then_detect, SERVICE_HOST, "21,22,23,6379", timeout_s=60)
    by_port = {p.port: p for p in report.hosts[0].ports}
    assert by_port[23].state is PortState.CLOSED and by_port[23].detected is None
    assert [by_port[p].detected.name for p in (21, 22, 6379)] == ["ftp", "ssh", "redis"]
    assert by_port[6379].detected.version == "7.0.15"


def test_cli_service_host_port(services) -> None:  # type: ignore[no-untyped-def]
    lab, _, _ = services
    out = lab.exec([sys.executable, "-m", "portlib", "service", f"{SERVICE_HOST}:443"]).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["PORT", "STATE", "SERVICE", "VERSION"]
    assert lines[1].split()[:5] == ["443/tcp", "open", "ssl/http", "nginx", "1.22.1"]
    assert "| tls subject: CN=lab.example,O=portlib lab" in lines
    udp = lab.exec([sys.executable, "-m", "portlib", "service", f"{SERVICE_HOST}:53/udp"]).stdout
    assert udp.splitlines()[1].split()[:5] == ["53/udp", "open", "domain", "dnsmasq", "2.90"]
    bad = lab.exec([sys.executable, "-m", "portlib", "service", "192.0.2.10:99999"], check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


# ---- hostile servers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_host(services, tmp_path_factory):  # type: ignore[no-untyped-def]
    lab, _, daemons = services
    host = lab.add_host("odd", v4=ODD_HOST)
    host.serve_tcp([SILENT], keep=True)
    host.serve_tcp([CLOSES])
    cert, key = daemons.certificate()
    record = tmp_path_factory.mktemp("printer") / "received"
    argv = python_module_argv(
        host.ns,
        "tests.lab.hostile",
        ["--noise", str(NOISE), "--tls", f"{TLS_ONLY}:{cert}:{key}",
         "--record", f"{PRINTER}:{record}", "--parent", "0"],
    )  # fmt: skip
    helper = lab._start_helper(argv, "hostile")
    yield lab, record
    helper.stop()


def test_hostile_ports_get_bounded_sensible_verdicts(odd_host) -> None:  # type: ignore[no-untyped-def]
    lab, record = odd_host
    pairs = [(ODD_HOST, p, "tcp") for p in (SILENT, CLOSES, NOISE, TLS_ONLY, PRINTER)]
    # the call's own time limit is the bound: a hang or an unbounded read fails it
    silent, closes, noise, tls_only, printer = lab.call(
        detect_in_lab, pairs, intensity=9, timeout_s=60
    )
    assert silent.detected is not None and silent.detected.method is DetectionMethod.TABLE
    assert silent.detected.banner == b""
    assert closes.detected is not None and closes.detected.name == "tcpwrapped"
    assert noise.detected is not None and noise.detected.method is DetectionMethod.TABLE
    assert 0 < len(noise.detected.banner) <= 512
    assert tls_only.detected is not None
    assert (tls_only.detected.name, tls_only.detected.tunnel) == ("ssl", "ssl")
    assert tls_only.detected.certificate is not None
    assert printer.detected is not None and printer.detected.method is DetectionMethod.TABLE
    received = Path(record).read_text().split()
    assert received and set(received) == {"0"}, received  # connected, sent nothing


def test_host_timeout_holds(odd_host) -> None:  # type: ignore[no-untyped-def]
    lab, _ = odd_host
    # rtt=0.5 makes every wait 2.5 s: all probes on a silent port would take half a minute
    (silent,), elapsed = lab.call(
        timed_detect, [(ODD_HOST, SILENT, "tcp")], intensity=9, rtt=0.5, host_timeout=0.5,
        timeout_s=60,
    )  # fmt: skip
    assert silent.detected is not None and silent.detected.method is DetectionMethod.TABLE
    assert elapsed < 5, elapsed


def test_udp_detection_without_an_answer_is_the_registry(services) -> None:  # type: ignore[no-untyped-def]
    lab, _, _ = services
    (quiet,) = lab.call(detect_in_lab, [(SERVICE_HOST, 1900, "udp")], timeout_s=60)
    assert quiet.protocol is Protocol.UDP
    assert quiet.detected is not None and quiet.detected.method is DetectionMethod.TABLE
    assert quiet.detected.name == "upnp"


def test_cli_scan_sv_on_real_daemons(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from portlib.output.formats import parse
    from tests.test_nmapxml import dtd_errors

    lab, _, _ = services
    argv = [sys.executable, "-m", "portlib", "scan", "-sS", "-sU", "-sV", "-Pn",
            "-p", "T:22,25,443,6379,U:53,161", SERVICE_HOST, "-oX", "-"]  # fmt: skip
    xml = lab.exec(argv, timeout=120).stdout
    assert dtd_errors(xml, tmp_path) == ""
    found = {(p.port, str(p.protocol)): p.detected for p in parse(xml).hosts[0].ports}
    assert {k: (d.name, d.product) for k, d in found.items() if d is not None} == {
        (22, "tcp"): ("ssh", "OpenSSH"),
        (25, "tcp"): ("smtp", "Exim smtpd"),
        (443, "tcp"): ("http", "nginx"),
        (6379, "tcp"): ("redis", "Redis key-value store"),
        (53, "udp"): ("domain", "dnsmasq"),
        (161, "udp"): ("snmp", "net-snmp"),
    }
