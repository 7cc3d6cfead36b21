"""The Scanner against real hosts in network namespaces (tests/lab): exact results.

One lab per module: three live hosts in 192.0.2.16/28 (the other addresses of that
/28 have no host and are down), one with open, closed, DROPped, admin-prohibited
and tcp-reset ports. Every scan runs inside the lab's scanner namespace through
``lab.call``, which calls the module-level helpers below there.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from ipaddress import ip_address, ip_network

import pytest

from portlib.model import HostState, PortState, Reason, ScanReport

pytestmark = pytest.mark.lab

BLOCK = "192.0.2.16/28"
LIVE = {"t1": "192.0.2.17", "t2": "192.0.2.20", "t3": "192.0.2.25"}
T1_OPEN = [22, 80, 443]
T1_EXPECTED = {
    22: (PortState.OPEN, Reason.SYN_ACK),
    80: (PortState.OPEN, Reason.SYN_ACK),
    443: (PortState.OPEN, Reason.SYN_ACK),
    81: (PortState.FILTERED, Reason.NO_RESPONSE),
    83: (PortState.FILTERED, Reason.ADMIN_PROHIBITED),
    84: (PortState.CLOSED, Reason.CONN_REFUSED),
    8080: (PortState.CLOSED, Reason.CONN_REFUSED),
}
PORTS = sorted(T1_EXPECTED)
FAST = {"timing": 4, "retries": 1}


@pytest.fixture(scope="module")
def hosts(module_lab):
    lab = module_lab
    made = {name: lab.add_host(name, v4=v4) for name, v4 in LIVE.items()}
    t1 = made["t1"]
    t1.serve_tcp(T1_OPEN)
    t1.drop([81], proto="tcp")
    t1.reject([83], proto="tcp", with_="icmp-admin-prohibited")
    t1.reject([84], proto="tcp", with_="tcp-reset")
    made["t2"].serve_tcp([8080])
    made["t3"].serve_tcp([22])
    return made


# ---- run inside the scanner namespace (via lab.call) -------------------------------


def scan_in_lab(targets: str, ports: str, **options: object) -> ScanReport:
    import portlib

    return portlib.scan(targets, ports, **options)


async def cancel_mid_scan(target: str) -> tuple[int, int, int, bool, int]:
    """Scan every port, stop after 300 verdicts; fd counts before, during, after."""
    from portlib import Scanner

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    during = 0
    got = 0
    async with Scanner(target, "1-65535", discovery=False, timing=4) as results:
        async for _ in results:
            got += 1
            if got == 300:
                during = fds()
                break
    await asyncio.sleep(0)
    report = results.report()
    return before, during, fds(), report.interrupted, len(report.hosts[0].all_ports())


# ---- tests -------------------------------------------------------------------------


def _up(report: ScanReport) -> set[str]:
    return {str(h.address) for h in report.hosts if h.state is HostState.UP}


@pytest.mark.parametrize("discovery", ["connect", True])
def test_block_with_down_hosts_reports_exact_live_set(module_lab, hosts, discovery) -> None:
    report = module_lab.call(scan_in_lab, BLOCK, "22,80", discovery=discovery, **FAST)
    assert [h.address for h in report.hosts] == list(ip_network(BLOCK))
    assert _up(report) == set(LIVE.values())
    for host in report.hosts:
        if host.state is HostState.UP:
            assert host.reason in {Reason.SYN_ACK, Reason.CONN_REFUSED, Reason.RESET,
                                   Reason.ECHO_REPLY, Reason.ARP_RESPONSE}  # fmt: skip
            assert len(host.all_ports()) == 2
        else:
            assert host.state is HostState.DOWN and host.ports == ()
    assert not report.interrupted


def test_ports_exact_across_hosts(module_lab, hosts) -> None:
    targets = " ".join(LIVE.values())
    report = module_lab.call(scan_in_lab, targets, ",".join(map(str, PORTS)), **FAST)
    by_host = {str(h.address): h for h in report.hosts}
    t1 = by_host[LIVE["t1"]]
    assert {p.port: (p.state, p.reason) for p in t1.all_ports()} == T1_EXPECTED
    assert [p.port for p in by_host[LIVE["t2"]].open_ports()] == [8080]
    assert [p.port for p in by_host[LIVE["t3"]].open_ports()] == [22]
    for host in report.hosts:
        assert [p.port for p in host.all_ports()] == PORTS
    assert next(p for p in t1.all_ports() if p.port == 22).service == "ssh"


@pytest.mark.parametrize("discovery", ["connect", True])
def test_ipv6_target(module_lab, hosts, discovery) -> None:
    v6 = str(hosts["t1"].v6)
    report = module_lab.call(
        scan_in_lab, v6, ",".join(map(str, PORTS)), discovery=discovery, **FAST
    )
    (host,) = report.hosts
    assert host.address == ip_address(v6) and host.state is HostState.UP
    assert {p.port: (p.state, p.reason) for p in host.all_ports()} == T1_EXPECTED


def test_no_discovery_scans_down_hosts_too(module_lab, hosts) -> None:
    report = module_lab.call(scan_in_lab, "192.0.2.17 192.0.2.18", "22", discovery=False, **FAST)
    states = {str(h.address): (h.state, h.reason) for h in report.hosts}
    assert states == {
        "192.0.2.17": (HostState.UP, Reason.USER_SET),
        "192.0.2.18": (HostState.UP, Reason.USER_SET),
    }
    down_port = report.hosts[1].all_ports()[0]
    assert down_port.state is PortState.FILTERED  # no host answers for it


def test_shards_with_down_hosts_partition_the_live_ports(module_lab, hosts) -> None:
    # Shards split the target list as given; each one drops its probes of down hosts.
    seen: list[tuple[str, int]] = []
    for shard in ("1/2", "2/2"):
        report = module_lab.call(
            scan_in_lab, BLOCK, "22,80,8080", shard=shard, seed=3, discovery="connect", **FAST
        )
        assert _up(report) == set(LIVE.values())
        for host in report.hosts:
            if host.state is not HostState.UP:
                assert host.ports == ()
        seen += [(str(h.address), p.port) for h in report.hosts for p in h.all_ports()]
    assert sorted(seen) == sorted((a, p) for a in LIVE.values() for p in (22, 80, 8080))


def test_cancellation_mid_scan_leaves_no_socket_open(module_lab, hosts) -> None:
    before, during, after, interrupted, decided = module_lab.call(
        cancel_mid_scan, LIVE["t1"], timeout_s=120
    )
    assert during > before  # sockets were open while the scan ran
    assert after == before
    assert interrupted and 300 <= decided < 65535


def test_cli_ping_scan_in_lab(module_lab, hosts) -> None:
    proc = module_lab.exec([sys.executable, "-m", "portlib", "scan", "-sn", BLOCK], timeout=120)
    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode == 0, proc.stderr
    reported = {
        line.split()[-1]
        for line in proc.stdout.splitlines()
        if line.startswith("portlib scan report")
    }
    assert reported == set(LIVE.values())
    assert "16 IP addresses (3 hosts up)" in proc.stdout
