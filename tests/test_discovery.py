"""Host discovery: the pure verdict rules, local addresses, -Pn, and connect pings on loopback.

Lab tests (tests/test_scanner_lab.py) cover remote hosts, up and down, for real.
"""

from __future__ import annotations

import socket
from ipaddress import ip_address

import pytest

from portlib.errors import PrivilegeError, ScanError
from portlib.model import HostState, PortResult, PortState, Protocol, Reason
from portlib.scanning import discovery, privilege
from portlib.scanning.discovery import (
    DiscoveryMode,
    discover,
    host_status_from_probes,
    is_local_address,
)
from portlib.scanning.privilege import has_raw_privilege
from portlib.scanning.report import HostStatus
from portlib.scanning.timing import preset

HOST = ip_address("192.0.2.7")


def probe(port: int, state: PortState, reason: Reason, rtt: float | None = None) -> PortResult:
    return PortResult(HOST, port, Protocol.TCP, state, reason, rtt)


@pytest.mark.parametrize(
    ("probes", "expected"),
    [
        (
            [probe(80, PortState.OPEN, Reason.SYN_ACK, 0.002)],
            HostStatus(HostState.UP, Reason.SYN_ACK, 0.002),
        ),
        (
            [
                probe(80, PortState.FILTERED, Reason.NO_RESPONSE),
                probe(443, PortState.CLOSED, Reason.CONN_REFUSED, 0.001),
            ],
            HostStatus(HostState.UP, Reason.CONN_REFUSED, 0.001),
        ),
        (  # the faster answer gives reason and latency
            [
                probe(80, PortState.OPEN, Reason.SYN_ACK, 0.005),
                probe(443, PortState.CLOSED, Reason.CONN_REFUSED, 0.001),
            ],
            HostStatus(HostState.UP, Reason.CONN_REFUSED, 0.001),
        ),
        (
            [
                probe(80, PortState.FILTERED, Reason.NO_RESPONSE),
                probe(443, PortState.FILTERED, Reason.HOST_UNREACH),
            ],
            HostStatus(HostState.DOWN, Reason.HOST_UNREACH),
        ),
        (
            [probe(80, PortState.FILTERED, Reason.ADMIN_PROHIBITED)],
            HostStatus(HostState.DOWN, Reason.ADMIN_PROHIBITED),
        ),
        (
            [
                probe(80, PortState.FILTERED, Reason.NO_RESPONSE),
                probe(443, PortState.FILTERED, Reason.NO_RESPONSE),
            ],
            HostStatus(HostState.DOWN, Reason.NO_RESPONSE),
        ),
        ([], HostStatus(HostState.DOWN, Reason.NO_RESPONSE)),
    ],
)
def test_host_status_from_probes(probes, expected) -> None:
    assert host_status_from_probes(probes) == expected


def test_local_addresses_are_recognized_without_probing() -> None:
    assert is_local_address(ip_address("127.0.0.1"))
    assert is_local_address(ip_address("127.3.2.1"))
    assert is_local_address(ip_address("::1"))
    assert not is_local_address(ip_address("192.0.2.200"))
    assert not is_local_address(ip_address("2001:db8::dead"))
    assert not is_local_address(ip_address("224.0.0.1"))


async def test_no_discovery_marks_every_host_user_set() -> None:
    hosts = [ip_address("192.0.2.1"), ip_address("2001:db8::1")]
    statuses = await discover(hosts, preset(3), mode="none")
    assert statuses == dict.fromkeys(hosts, HostStatus(HostState.UP, Reason.USER_SET))


@pytest.mark.parametrize("mode", ["auto", "connect", "raw"])
async def test_loopback_is_up_with_localhost_response(mode: DiscoveryMode) -> None:
    hosts = [ip_address("127.0.0.1"), ip_address("::1")]
    statuses = await discover(hosts, preset(3), mode=mode)
    assert statuses == dict.fromkeys(hosts, HostStatus(HostState.UP, Reason.LOCALHOST_RESPONSE))


async def test_bad_mode_is_a_scan_error() -> None:
    with pytest.raises(ScanError, match="discovery must be one of"):
        await discover([HOST], preset(3), mode="icmp")  # type: ignore[arg-type]


async def test_raw_mode_without_privilege_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privilege, "has_raw_privilege", lambda: False)
    with pytest.raises(PrivilegeError, match="CAP_NET_RAW"):
        await discover([HOST], preset(3), mode="raw")


def test_raw_privilege_matches_capabilities() -> None:
    with open("/proc/self/status") as status:
        cap_eff = next(line for line in status if line.startswith("CapEff:"))
    assert has_raw_privilege() == bool(int(cap_eff.split()[1], 16) & (1 << 13))


def _listener(family: int, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def _closed_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
async def test_connect_pings_on_loopback(monkeypatch: pytest.MonkeyPatch, family, host) -> None:
    # Loopback is "local" and never pinged by discover(); the connect pinger itself
    # is exercised here on listener ports standing in for 80 and 443.
    with _listener(family, host) as listening:
        open_port = listening.getsockname()[1]
        closed = _closed_port(family, host)
        address = ip_address(host)
        monkeypatch.setattr(discovery, "DISCOVERY_PORTS", (open_port, closed))
        statuses = await discovery._connect_discovery([address], preset(4), seed=1)
        assert statuses[address].state is HostState.UP
        assert statuses[address].reason in {Reason.SYN_ACK, Reason.CONN_REFUSED}
        assert statuses[address].latency is not None
        monkeypatch.setattr(discovery, "DISCOVERY_PORTS", (closed,))
        statuses = await discovery._connect_discovery([address], preset(4), seed=1)
        assert statuses[address] == HostStatus(
            HostState.UP, Reason.CONN_REFUSED, statuses[address].latency
        )


def test_raw_discovery_round_ends_earlier_once_live_hosts_answer() -> None:
    # Silent (down) hosts must not hold a round for the initial 1 s guess once
    # live hosts have shown a sub-millisecond RTT.
    from portlib.scanning.discovery.raw import round_deadline
    from portlib.scanning.timing import PRESETS, RttEstimator

    estimator = RttEstimator.for_profile(PRESETS[3])
    assert round_deadline(0.0, estimator) == PRESETS[3].initial_rtt_timeout
    for _ in range(3):
        estimator.observe(0.0003)
    assert round_deadline(0.0, estimator) == PRESETS[3].min_rtt_timeout
