"""UDP scans of lab hosts that rate-limit ICMP errors: exact whatever their bucket holds.

Linux sends at most one port unreachable per ``icmp_ratelimit`` to a peer, after
a burst of 6 (a fresh peer starts with a full bucket). The scanner must call
every closed port closed whether the target's bucket starts full or was just
emptied by someone else, and must calibrate its pace from the answers (a
250 ms limit is probed about four times as often as the 1 s default). The
target's own counter (``OutRateLimitHost`` in its /proc/net/snmp) proves that
the limit really bit. Few ports per test: one token a second is the floor.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from portlib.model import PortState, Reason

pytestmark = pytest.mark.lab

UDP_OPEN = (PortState.OPEN, Reason.UDP_RESPONSE)
UDP_CLOSED = (PortState.CLOSED, Reason.PORT_UNREACH)
UDP_SILENT = (PortState.OPEN_FILTERED, Reason.NO_RESPONSE)


# --- run in the scanner namespace by lab.call -----------------------------------------


async def limited_scan(host: str, ports: list[int]) -> tuple[dict[int, tuple[str, str]], dict]:
    """Drive RawEngine (UDP, T4); each port's (state, reason), and the engine's figures."""
    from portlib.model import PortResult, Protocol, ScanMethod
    from portlib.scanning.contract import ScanWork
    from portlib.scanning.raw.engine import RawEngine
    from portlib.scanning.timing import preset

    found: dict[int, tuple[str, str]] = {}

    async def emit(result: PortResult) -> None:
        assert result.port not in found, f"port {result.port} reported twice"
        found[result.port] = (result.state.value, result.reason.value)

    engine = RawEngine(ScanMethod.UDP)
    work = ScanWork((ip_address(host),), tuple(ports), Protocol.UDP, preset(4), seed=5)
    await engine.run(work, emit)
    intervals = {str(a): s for a, s in engine.icmp_intervals.items()}
    return found, {"intervals": intervals, "probes_sent": engine.probes_sent}


def drain(host: str, ports: list[int]) -> None:
    """Empty the target's ICMP bucket for us: datagrams to closed ports, all at once."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for port in ports:
            sock.sendto(b"", (host, port))


# --- helpers --------------------------------------------------------------------------


def rate_limited(host, family: str = "v4") -> int:  # type: ignore[no-untyped-def]
    """ICMP errors the target held back because of the per-peer limit, so far."""
    if family == "v6":
        for line in host.exec(["cat", "/proc/net/snmp6"]).stdout.splitlines():
            name, _, value = line.partition(" ")
            if name == "Icmp6OutRateLimitHost":
                return int(value)
        raise AssertionError("no Icmp6OutRateLimitHost in /proc/net/snmp6")
    rows = [r.split() for r in host.exec(["cat", "/proc/net/snmp"]).stdout.splitlines()]
    names, values = (r for r in rows if r[0] == "Icmp:")
    return int(dict(zip(names, values, strict=True))["OutRateLimitHost"])


def as_enums(found: dict[int, tuple[str, str]]) -> dict[int, tuple[PortState, Reason]]:
    return {p: (PortState(s), Reason(r)) for p, (s, r) in found.items()}


CLOSED = list(range(3000, 3015))  # 15 closed ports
PORTS = [53, 161, *CLOSED]
EXPECTED = {53: UDP_OPEN, 161: UDP_SILENT} | dict.fromkeys(CLOSED, UDP_CLOSED)
DRAIN = list(range(4000, 4020))  # closed too, not scanned


def target(lab, name: str, ratelimit_ms: int | None = None):  # type: ignore[no-untyped-def]
    host = lab.add_host(name)
    host.serve_udp({53: "dns"})
    host.drop([161], proto="udp")
    if ratelimit_ms is not None:
        host.sysctl("net.ipv4.icmp_ratelimit", str(ratelimit_ms))
    return host


def drained(lab, host, family: str = "v4") -> None:  # type: ignore[no-untyped-def]
    before = rate_limited(host, family)
    lab.call(drain, str(getattr(host, family)), DRAIN)
    assert rate_limited(host, family) - before >= len(DRAIN) - 6, "the bucket is not empty"


# --- tests ----------------------------------------------------------------------------


def test_full_bucket_default_limit_exact(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = target(module_lab, "full")  # a fresh peer: 6 tokens waiting
    found, figures = module_lab.call(limited_scan, str(host.v4), PORTS, timeout_s=300)
    assert as_enums(found) == EXPECTED
    assert rate_limited(host) > 0  # the limit did hold errors back
    assert 0.9 <= figures["intervals"][str(host.v4)] <= 1.0


def test_empty_bucket_default_limit_exact(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = target(module_lab, "empty")
    drained(module_lab, host)
    found, figures = module_lab.call(limited_scan, str(host.v4), PORTS, timeout_s=300)
    assert as_enums(found) == EXPECTED
    assert 0.9 <= figures["intervals"][str(host.v4)] <= 1.0


def test_scanned_twice_back_to_back_exact(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = target(module_lab, "twice", ratelimit_ms=250)
    for _ in range(2):  # the second scan starts on the bucket the first one emptied
        found, _ = module_lab.call(limited_scan, str(host.v4), PORTS, timeout_s=300)
        assert as_enums(found) == EXPECTED


def test_faster_limit_is_calibrated(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = target(module_lab, "fast", ratelimit_ms=250)
    drained(module_lab, host)
    found, figures = module_lab.call(limited_scan, str(host.v4), PORTS, timeout_s=300)
    assert as_enums(found) == EXPECTED
    # Paced at about the true 250 ms, not the 1 s assumed before the answers showed it.
    assert 0.25 <= figures["intervals"][str(host.v4)] <= 0.4


def test_ipv6_limit_exact_and_calibrated(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = target(module_lab, "six")  # net.ipv6.icmp.ratelimit: 100 ms by default
    drained(module_lab, host, "v6")
    found, figures = module_lab.call(limited_scan, str(host.v6), PORTS, timeout_s=300)
    assert as_enums(found) == EXPECTED
    assert figures["intervals"][str(host.v6)] <= 0.2


def test_host_dropping_everything_is_not_paced(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = module_lab.add_host("dropall")
    host.iptables("-A", "INPUT", "-p", "udp", "-j", "DROP")
    ports = list(range(5000, 5060))
    found, figures = module_lab.call(limited_scan, str(host.v4), ports, timeout_s=120)
    assert as_enums(found) == dict.fromkeys(ports, UDP_SILENT)
    assert figures["intervals"] == {}  # no sign of a limit
    # The blast, one round after a token was certainly back, the retry: no train.
    assert figures["probes_sent"] <= 3 * len(ports)
