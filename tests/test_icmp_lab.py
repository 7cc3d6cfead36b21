"""The same ICMP error, the same reason: -sT, -sS and -sU against real rejects (needs root).

A lab host rejects ports with every ICMP error iptables can send; each method scans
them over IPv4 and IPv6 through the public ``portlib.scan``. The only difference
allowed is nmap's own: a TCP connect probe refused by an ICMP port unreachable is
``conn-refused`` (the kernel reports ``ECONNREFUSED``), and only UDP calls it closed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.lab

# port -> (reject type as tests/lab names it, reason over IPv4, reason over IPv6)
REJECTS = {
    2001: ("icmp-admin-prohibited", "admin-prohibited", "admin-prohibited"),
    2002: ("icmp-port-unreachable", "port-unreach", "port-unreach"),
    2003: ("icmp-host-unreachable", "host-unreach", "host-unreach"),
    2004: ("icmp-net-unreachable", "net-unreach", "no-route"),
}


def scan_reasons(host: str, ports: list[int], method: str) -> dict[int, tuple[str, str]]:
    """Run in the scanner namespace: each port's (state, reason) from ``portlib.scan``."""
    import portlib

    spec = ",".join(map(str, ports))
    report = portlib.scan(host, spec, method=method, discovery=False, timing=4, retries=1)
    return {p.port: (p.state.value, p.reason.value) for p in report.hosts[0].all_ports()}


@pytest.fixture(scope="module")
def rejecting(module_lab) -> Iterator[object]:  # type: ignore[no-untyped-def]
    host = module_lab.add_host("rejects")
    host.sysctl("net.ipv4.icmp_ratelimit", "0")  # every probe gets its error
    host.sysctl("net.ipv6.icmp.ratelimit", "0")
    for port, (how, _, _) in REJECTS.items():
        for proto in ("tcp", "udp"):
            host.reject([port], proto=proto, with_=how)
    yield host


@pytest.mark.parametrize("version", [4, 6])
def test_every_method_names_an_icmp_error_alike(module_lab, rejecting, version: int) -> None:  # type: ignore[no-untyped-def]
    address = str(rejecting.v4 if version == 4 else rejecting.v6)
    ports = sorted(REJECTS)
    found = {
        method: module_lab.call(scan_reasons, address, ports, method)
        for method in ("connect", "syn", "udp")
    }
    for port, (how, reason4, reason6) in REJECTS.items():
        reason = reason4 if version == 4 else reason6
        if reason == "port-unreach":
            assert found["connect"][port] == ("closed", "conn-refused"), how
            assert found["syn"][port] == ("filtered", "port-unreach"), how
            assert found["udp"][port] == ("closed", "port-unreach"), how
        else:
            for method in ("connect", "syn", "udp"):
                assert found[method][port] == ("filtered", reason), (method, how)
