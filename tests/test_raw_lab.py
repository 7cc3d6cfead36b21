"""The raw engine against lab hosts in network namespaces: exact verdicts (needs root).

The scanner code runs inside the lab's scanner namespace (``lab.call``); the
targets' ports are opened, dropped and rejected by the test, so every verdict
is known in advance.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from portlib.model import HostState, PortState, Reason

pytestmark = pytest.mark.lab

OPEN = (PortState.OPEN, Reason.SYN_ACK)
CLOSED = (PortState.CLOSED, Reason.RESET)
DROPPED = (PortState.FILTERED, Reason.NO_RESPONSE)
PROHIBITED = (PortState.FILTERED, Reason.ADMIN_PROHIBITED)
UNFILTERED = (PortState.UNFILTERED, Reason.RESET)


# --- run in the scanner namespace by lab.call -----------------------------------------


async def engine_scan(
    method: str, host: str, ports: list[int], timing: dict[str, float] | None = None
) -> dict[int, tuple[str, str]]:
    """Drive RawEngine directly; each port's (state, reason), and fail on a duplicate."""
    from portlib.model import PortResult, Protocol, ScanMethod
    from portlib.scanning.contract import ScanWork
    from portlib.scanning.raw.engine import RawEngine
    from portlib.scanning.timing import preset

    found: dict[int, tuple[str, str]] = {}

    async def emit(result: PortResult) -> None:
        assert result.port not in found, f"port {result.port} reported twice"
        found[result.port] = (result.state.value, result.reason.value)

    protocol = Protocol.UDP if method == "udp" else Protocol.TCP
    profile = preset(4).with_overrides(**(timing or {}))
    work = ScanWork((ip_address(host),), tuple(ports), protocol, profile, seed=3)
    await RawEngine(ScanMethod(method)).run(work, emit)
    return found


async def discover(hosts: list[str]) -> dict[str, tuple[str, str]]:
    from portlib.scanning.discovery.raw import discover_raw
    from portlib.scanning.timing import preset

    timing = preset(4).with_overrides(retries=1)
    found = await discover_raw([ip_address(h) for h in hosts], timing)
    return {str(a): (s.value, r.value) for a, (s, r) in found.items()}


def as_enums(found: dict[int, tuple[str, str]]) -> dict[int, tuple[PortState, Reason]]:
    return {p: (PortState(s), Reason(r)) for p, (s, r) in found.items()}


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    from tests.lab import Lab, lab_available

    reason = lab_available()
    if reason:
        pytest.skip(reason)
    with Lab() as built:
        yield built


TCP_PORTS = [22, 80, 443, 81, 82, 83, 84, 85, 86]
SYN_EXPECTED = {22: OPEN, 80: OPEN, 443: OPEN, 81: DROPPED, 82: DROPPED, 83: PROHIBITED}
SYN_EXPECTED |= {84: CLOSED, 85: CLOSED, 86: CLOSED}
ACK_EXPECTED = {22: UNFILTERED, 80: UNFILTERED, 443: UNFILTERED, 81: DROPPED, 82: DROPPED}
ACK_EXPECTED |= {83: PROHIBITED, 84: UNFILTERED, 85: UNFILTERED, 86: UNFILTERED}


def tcp_target(lab, name: str, *, delayed: bool = False):  # type: ignore[no-untyped-def]
    host = lab.add_delayed_host(name, delay=0.05, jitter=0.01) if delayed else lab.add_host(name)
    host.serve_tcp([22, 80, 443])
    host.drop([81, 82], proto="tcp")
    host.reject([83], proto="tcp", with_="icmp-admin-prohibited")
    host.reject([84], proto="tcp", with_="tcp-reset")
    return host


@pytest.fixture(scope="module")
def t1(lab):  # type: ignore[no-untyped-def]
    return tcp_target(lab, "t1")


@pytest.fixture(scope="module")
def lossy(lab):  # type: ignore[no-untyped-def]
    host = tcp_target(lab, "lossy")
    host.loss(0.10)
    return host


@pytest.fixture(scope="module")
def slow(lab):  # type: ignore[no-untyped-def]
    return tcp_target(lab, "slow", delayed=True)


# --- TCP ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize(("method", "expected"), [("syn", SYN_EXPECTED), ("ack", ACK_EXPECTED)])
def test_tcp_exact(lab, t1, family: str, method: str, expected) -> None:  # type: ignore[no-untyped-def]
    found = lab.call(engine_scan, method, str(getattr(t1, family)), TCP_PORTS)
    assert as_enums(found) == expected


@pytest.mark.parametrize(("method", "expected"), [("syn", SYN_EXPECTED), ("ack", ACK_EXPECTED)])
def test_tcp_exact_with_ten_percent_loss(lab, lossy, method: str, expected) -> None:  # type: ignore[no-untyped-def]
    found = lab.call(engine_scan, method, str(lossy.v4), TCP_PORTS)
    assert as_enums(found) == expected


@pytest.mark.parametrize(("method", "expected"), [("syn", SYN_EXPECTED), ("ack", ACK_EXPECTED)])
def test_tcp_exact_with_50ms_delay(lab, slow, method: str, expected) -> None:  # type: ignore[no-untyped-def]
    found = lab.call(engine_scan, method, str(slow.v4), TCP_PORTS)
    assert as_enums(found) == expected


def test_syn_full_range_with_dropped_ports(lab, t1) -> None:  # type: ignore[no-untyped-def]
    found = as_enums(lab.call(engine_scan, "syn", str(t1.v4), list(range(1, 65536))))
    assert len(found) == 65535
    expected = dict.fromkeys(range(1, 65536), CLOSED) | SYN_EXPECTED
    assert found == expected


# --- UDP ------------------------------------------------------------------------------

UDP_OPEN = (PortState.OPEN, Reason.UDP_RESPONSE)
UDP_CLOSED = (PortState.CLOSED, Reason.PORT_UNREACH)
UDP_SILENT = (PortState.OPEN_FILTERED, Reason.NO_RESPONSE)


@pytest.fixture(scope="module")
def u1(lab):  # type: ignore[no-untyped-def]
    host = lab.add_host("u1")
    host.serve_udp({53: "dns", 123: "ntp", 7: "echo"})
    host.drop([161, 162], proto="udp")
    host.sysctl("net.ipv4.icmp_ratelimit", "0")
    host.sysctl("net.ipv6.icmp.ratelimit", "0")
    return host


UDP_PORTS = [7, 53, 123, 161, 162, *range(1000, 1020)]
UDP_EXPECTED = {7: UDP_OPEN, 53: UDP_OPEN, 123: UDP_OPEN, 161: UDP_SILENT, 162: UDP_SILENT}
UDP_EXPECTED |= dict.fromkeys(range(1000, 1020), UDP_CLOSED)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_udp_exact(lab, u1, family: str) -> None:  # type: ignore[no-untyped-def]
    found = lab.call(engine_scan, "udp", str(getattr(u1, family)), UDP_PORTS)
    assert as_enums(found) == UDP_EXPECTED


def test_udp_exact_with_default_icmp_rate_limit(lab) -> None:  # type: ignore[no-untyped-def]
    host = lab.add_host("limited")  # net.ipv4.icmp_ratelimit left at the kernel default
    host.serve_udp({53: "dns", 123: "ntp"})
    host.drop([161], proto="udp")
    ports = [53, 123, 161, *range(2000, 2016)]
    expected = {53: UDP_OPEN, 123: UDP_OPEN, 161: UDP_SILENT}
    expected |= dict.fromkeys(range(2000, 2016), UDP_CLOSED)
    found = lab.call(engine_scan, "udp", str(host.v4), ports, timeout_s=300)
    assert as_enums(found) == expected


# --- noise ----------------------------------------------------------------------------

NOISE = textwrap.dedent(
    """
    import random, socket, struct, sys, time
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, ICMPv6DestUnreach

    spoofed, victim, spoofed6, victim6 = sys.argv[1:5]
    rng = random.Random(1)
    s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sports = [22, 80, 443, 81, 82, 83, 84, 85, 86, 7, 53, 123, 161, 162, 1000, 1001]

    def build(kind, sport, dport, seq, ack):
        ip = IP(src=spoofed, dst=victim)
        if kind in (0, 1):
            flags = "SA" if kind == 0 else "RA"
            return ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        if kind == 2:
            quote = IP(src=victim, dst=spoofed, id=seq & 0xFFFF) / UDP(sport=dport, dport=sport)
            return ip / ICMP(type=3, code=rng.choice([1, 3, 13])) / bytes(quote)[:28]
        quote = IPv6(src=victim6, dst=spoofed6) / TCP(sport=dport, dport=sport, seq=seq)
        return IPv6(src=spoofed6, dst=victim6) / ICMPv6DestUnreach(code=4) / bytes(quote)[:48]

    # scapy is slow: build 2,000 random packets, then aim copies at every port in
    # 40000-59999 (where the scanner holds its source port) with fixed checksums.
    packets = []
    for i in range(2000):
        kind = i % 4
        p = build(kind, rng.choice(sports), 40000, rng.getrandbits(32), rng.getrandbits(32))
        packets.append((kind, bytes(p), str(p.dst)))

    def csum(data):
        if len(data) % 2:
            data += b"\\0"
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    def retarget(kind, raw, port):
        b = bytearray(raw)
        if kind in (0, 1):  # TCP to the scanner: dport at 22, checksum over pseudo header
            b[22:24] = struct.pack("!H", port)
            b[36:38] = b"\\0\\0"
            pseudo = bytes(b[12:20]) + struct.pack("!BBH", 0, 6, len(b) - 20)
            b[36:38] = struct.pack("!H", csum(pseudo + bytes(b[20:])))
        elif kind == 2:  # ICMP quoting a UDP probe from that port
            b[48:50] = struct.pack("!H", port)
            b[22:24] = b"\\0\\0"
            b[22:24] = struct.pack("!H", csum(bytes(b[20:])))
        else:  # ICMPv6 quoting a TCP probe from that port
            b[88:90] = struct.pack("!H", port)
            b[42:44] = b"\\0\\0"
            pseudo = bytes(b[8:40]) + struct.pack("!IxxxB", len(b) - 40, 58)
            b[42:44] = struct.pack("!H", csum(pseudo + bytes(b[40:])))
        return bytes(b)

    print("READY", flush=True)
    port = 40000
    while True:
        for kind, raw, dst in packets:
            port = 40000 + (port - 40000 + 1) % 20000
            try:
                (s6 if kind == 3 else s4).sendto(retarget(kind, raw, port), (dst, 0))
            except OSError:
                time.sleep(0.001)
    """
)


def test_noise_changes_nothing(lab, t1, u1) -> None:  # type: ignore[no-untyped-def]
    noise = lab.add_host("noise")
    # The noise's spoofed SYN-ACKs make the scanner's kernel send RSTs to t1, which
    # t1's REJECT rule answers with ICMP: without this, that would spend t1's ICMP
    # rate-limit tokens and legitimately turn admin-prohibited into no-response.
    t1.sysctl("net.ipv4.icmp_ratelimit", "0")
    t1.sysctl("net.ipv6.icmp.ratelimit", "0")
    procs = []
    try:
        for target in (t1, u1):
            argv = ["ip", "netns", "exec", noise.ns, sys.executable, "-c", NOISE]
            argv += [str(target.v4), str(lab.scanner_v4), str(target.v6), str(lab.scanner_v6)]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            procs.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"READY"
        for _ in range(2):
            assert as_enums(lab.call(engine_scan, "syn", str(t1.v4), TCP_PORTS)) == SYN_EXPECTED
            assert as_enums(lab.call(engine_scan, "ack", str(t1.v4), TCP_PORTS)) == ACK_EXPECTED
            assert as_enums(lab.call(engine_scan, "syn", str(t1.v6), TCP_PORTS)) == SYN_EXPECTED
            assert as_enums(lab.call(engine_scan, "udp", str(u1.v4), UDP_PORTS)) == UDP_EXPECTED
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# --- discovery ------------------------------------------------------------------------


def test_discovery_on_a_slash_28_finds_exactly_the_live_hosts(lab) -> None:  # type: ignore[no-untyped-def]
    live = {"192.0.2.49", "192.0.2.52", "192.0.2.60"}
    for i, address in enumerate(sorted(live)):
        lab.add_host(f"d{i}", v4=address, v6=f"2001:db8::d{i}")
    lab.add_host("dfw", v4="192.0.2.55", v6="2001:db8::dff").iptables(
        "-A", "INPUT", "-p", "icmp", "-j", "DROP"
    )  # no ICMP answers: SYN 443 / ACK 80 / ARP must find it
    live.add("192.0.2.55")
    hosts = [str(ip_address("192.0.2.48") + i) for i in range(1, 15)]
    found = lab.call(discover, hosts, timeout_s=120)
    up = {h for h, (state, _) in found.items() if state == HostState.UP.value}
    assert up == live
    assert set(found) == set(hosts)
    assert found["192.0.2.49"][1] in {"arp-response", "echo-reply", "syn-ack", "reset"}


def test_discovery_ipv6_and_reasons(lab, t1) -> None:  # type: ignore[no-untyped-def]
    found = lab.call(discover, [str(t1.v6), str(t1.v4), "2001:db8::abc"], timeout_s=120)
    assert found[str(t1.v6)][0] == "up" and found[str(t1.v4)][0] == "up"
    assert found["2001:db8::abc"][0] == "down"
