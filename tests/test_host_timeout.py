"""``host_timeout`` (nmap's ``--host-timeout``): a host not finished in time is reported
with no ports and marked timed out, in every output as nmap writes it."""

from __future__ import annotations

import datetime as dt
import json
from ipaddress import ip_address
from pathlib import Path

import pytest

from portlib.errors import ScanError
from portlib.model import HostState, PortResult, PortState, Protocol, Reason, ScanMethod
from portlib.output import parse, render
from portlib.scanning import Scanner
from portlib.scanning.report import HostStatus
from tests.report_samples import build_report
from tests.test_nmapxml import dtd_errors

SLOW = ip_address("192.0.2.10")
FAST = ip_address("192.0.2.11")


def report_with_a_timed_out_host():  # type: ignore[no-untyped-def]
    up = HostStatus(HostState.UP, Reason.USER_SET)
    results = [
        PortResult(SLOW, 22, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK),
        PortResult(FAST, 22, Protocol.TCP, PortState.CLOSED, Reason.RESET),
    ]
    return build_report(
        [(SLOW, None), (FAST, None)],
        {SLOW: up, FAST: up},
        results,
        method=ScanMethod.SYN,
        protocols=(Protocol.TCP,),
        started=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        elapsed=3.0,
        ports_per_host=1,
        timed_out=frozenset({SLOW}),
    )


def test_a_timed_out_host_keeps_no_ports() -> None:
    slow, fast = report_with_a_timed_out_host().hosts
    assert slow.timed_out and slow.ports == () and slow.state is HostState.UP
    assert not fast.timed_out and [p.port for p in fast.ports] == [22]


def test_outputs_write_it_as_nmap_does(tmp_path: Path) -> None:
    report = report_with_a_timed_out_host()
    normal = render(report, "normal")
    assert "Skipping host 192.0.2.10 due to host timeout" in normal
    assert "Skipping host 192.0.2.11" not in normal
    grepable = render(report, "grepable")
    assert "Host: 192.0.2.10 ()\tStatus: Up\nHost: 192.0.2.10 ()\tStatus: Timeout\n" in grepable
    xml = render(report, "xml")
    assert dtd_errors(xml, tmp_path) == ""
    assert xml.count('timedout="true"') == 1
    for text in (xml, render(report, "json")):
        back = parse(text)
        assert [h.timed_out for h in back.hosts] == [True, False]
    assert json.loads(render(report, "json"))["hosts"][0]["timed_out"] is True


def test_nmaps_own_timed_out_host_reads_back() -> None:
    """The host element nmap 7.93 wrote for ``--host-timeout 3s`` (recorded in a lab)."""
    xml = (
        '<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap -sT --host-timeout 3s"'
        ' start="1796146463" version="7.93" xmloutputversion="1.05">'
        '<scaninfo type="connect" protocol="tcp" numservices="1" services="22"/>'
        '<host starttime="1796146463" endtime="1796146466" timedout="true">'
        '<status state="up" reason="user-set" reason_ttl="0"/>'
        '<address addr="192.0.2.10" addrtype="ipv4"/><hostnames>\n</hostnames></host>'
        '<runstats><finished time="1796146466" elapsed="3.03" exit="success"/>'
        '<hosts up="1" down="0" total="1"/></runstats></nmaprun>'
    )
    (host,) = parse(xml).hosts
    assert host.timed_out and host.ports == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [(0, "must be positive"), (-1, "must be positive"), ("5s", "number of seconds")],
)
def test_bad_host_timeouts_are_refused(value: object, message: str) -> None:
    with pytest.raises(ScanError, match=message):
        Scanner("127.0.0.1", "22", host_timeout=value)  # type: ignore[arg-type]


def test_host_timeout_and_shards_do_not_mix() -> None:
    with pytest.raises(ScanError, match="cannot be combined with shard"):
        Scanner("127.0.0.1", "22", host_timeout=5, shard="1/2")


# --------------------------------------------------------------- in the lab (root)


def timed_scan(hosts: list[str], method: str) -> list[tuple[str, bool, int]]:
    """Run in the scanner namespace: (host, timed out, ports) for each host."""
    import dataclasses

    import portlib
    from portlib.scanning.timing import preset

    # Every silent probe waits 2 s, however fast the other host answers; and every
    # probe of both hosts fits in flight at once, so the silent ones hold nothing up.
    patient = dataclasses.replace(
        preset(3),
        initial_rtt_timeout=2.0,
        min_rtt_timeout=2.0,
        max_rtt_timeout=2.0,
        min_parallelism=1000,
    )
    report = portlib.scan(hosts, "1-300", method=method, discovery=False, timing=patient,
                          host_timeout=1.0)  # fmt: skip
    return [(str(h.address), h.timed_out, len(h.all_ports())) for h in report.hosts]


@pytest.fixture(scope="module")
def slow_and_fast(module_lab):  # type: ignore[no-untyped-def]
    slow = module_lab.add_host("slowhost")
    slow.drop(range(1, 300), proto="tcp")  # silent: each probe waits out its timeout
    slow.serve_tcp([300])
    fast = module_lab.add_host("fasthost")
    fast.serve_tcp([22])  # the rest are closed: answered at once
    return slow, fast


@pytest.mark.lab
@pytest.mark.parametrize("method", ["connect", "syn"])
def test_the_slow_host_times_out_and_the_fast_one_does_not(  # type: ignore[no-untyped-def]
    module_lab, slow_and_fast, method: str
) -> None:
    slow, fast = slow_and_fast
    found = module_lab.call(timed_scan, [str(slow.v4), str(fast.v4)], method, timeout_s=60)
    assert found == [(str(slow.v4), True, 0), (str(fast.v4), False, 300)]


@pytest.mark.lab
def test_nmap_times_out_the_same_host(module_lab, slow_and_fast, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slow, fast = slow_and_fast
    out = tmp_path / "nmap.xml"
    module_lab.exec(
        ["nmap", "-sT", "-Pn", "-n", "-p", "1-300", "--max-rtt-timeout", "2s",
         "--min-rtt-timeout", "2s", "--host-timeout", "1s", "-oX", str(out),
         str(slow.v4), str(fast.v4)],
        timeout=120,
    )  # fmt: skip
    hosts = parse(out.read_text()).hosts
    assert [(str(h.address), h.timed_out) for h in hosts] == [
        (str(slow.v4), True),
        (str(fast.v4), False),
    ]
