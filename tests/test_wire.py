"""Pure tests of the raw engine's wire format: checksums, templates, cookies, classification.

scapy is the oracle: it computes checksums and builds the replies independently.
"""

from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrFragment,
)

from portlib.model import PortState, Reason
from portlib.scanning.icmp import UNREACH_REASONS
from portlib.scanning.raw import bpf, templates
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.replies import Classifier
from portlib.scanning.raw.wire import (
    Probe,
    ProbeTemplate,
    checksum,
    checksum_update,
    ipv4_header_checksum,
    pseudo_header_sum,
)

ME4, TARGET4, ROUTER4 = "192.0.2.1", "192.0.2.10", "192.0.2.254"
ME6, TARGET6, ROUTER6 = "2001:db8::1", "2001:db8::10", "2001:db8::fe"
SPORT = 45678
COOKIE = Cookie(b"test secret")


def packed(address: str) -> bytes:
    return ip_address(address).packed


def probe(kind: Probe, me: str, target: str, dport: int, payload: bytes = b"") -> bytes:
    tmpl = ProbeTemplate(templates.build_template(kind, ip_address(me), SPORT, payload), kind)
    dst = packed(target)
    return bytes(tmpl.bind(dst).patch(dport, COOKIE(dst, dport, SPORT)))


# --- checksums ------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_checksum_matches_the_rfc1071_definition(data: bytes) -> None:
    padded = data + b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert checksum(data) == ~total & 0xFFFF


@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0), st.data())
def test_incremental_update_equals_recomputation(data: bytes, draw: st.DataObject) -> None:
    offset = draw.draw(st.integers(0, len(data) // 2 - 1)) * 2
    new_word = draw.draw(st.integers(0, 0xFFFF))
    old_word = struct.unpack_from("!H", data, offset)[0]
    changed = bytearray(data)
    struct.pack_into("!H", changed, offset, new_word)
    updated = checksum_update(checksum(data), old_word, new_word)
    # One's complement has two zeros: 0x0000 and 0xFFFF verify the same way.
    assert fold_equal(updated, checksum(changed))


def fold_equal(a: int, b: int) -> bool:
    return a == b or {a, b} == {0, 0xFFFF}


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize(("src", "dst"), [(ME4, TARGET4), (ME6, TARGET6)])
def test_transport_checksum_matches_scapy(proto: str, src: str, dst: str) -> None:
    ip = IP(src=src, dst=dst) if ":" not in src else IPv6(src=src, dst=dst)
    l4 = TCP(sport=1234, dport=80, seq=77, flags="S") if proto == "tcp" else UDP(sport=5, dport=53)
    wire = bytes(ip / l4 / b"odd-length payload!")
    expected = (IP if ":" not in src else IPv6)(wire)[1].chksum
    segment = bytearray(wire[20 if ":" not in src else 40 :])
    at = 16 if proto == "tcp" else 6
    segment[at : at + 2] = b"\0\0"
    number = 6 if proto == "tcp" else 17
    pseudo = pseudo_header_sum(packed(src), packed(dst), number, len(segment))
    assert checksum(segment, pseudo) == expected


def test_ipv4_header_checksum_matches_scapy() -> None:
    wire = bytes(IP(src=ME4, dst=TARGET4, id=4242, ttl=33) / TCP())
    assert ipv4_header_checksum(wire) == IP(wire).chksum


# --- templates ------------------------------------------------------------------


@pytest.mark.parametrize(("me", "target"), [(ME4, TARGET4), (ME6, TARGET6)])
@pytest.mark.parametrize("kind", list(Probe))
@pytest.mark.parametrize("dport", [1, 53, 443, 65535])
def test_patched_probe_is_valid_for_scapy(me: str, target: str, kind: Probe, dport: int) -> None:
    payload = templates.payloads_for(dport)[0] if kind is Probe.UDP else b""
    wire = probe(kind, me, target, dport, payload)
    parsed = (IP if ":" not in me else IPv6)(wire)
    l4 = parsed[1]
    assert parsed.dst == target and parsed.src == me
    assert l4.dport == dport and l4.sport == SPORT
    claimed = l4.chksum
    claimed_ip = parsed.chksum if ":" not in me else None
    del l4.chksum
    if ":" not in me:
        del parsed.chksum
    rebuilt = (IP if ":" not in me else IPv6)(bytes(parsed))
    assert claimed == rebuilt[1].chksum
    if ":" not in me:  # the IPv4 header checksum too: packet sockets send it as is
        assert claimed_ip == rebuilt.chksum
    cookie = COOKIE(packed(target), dport, SPORT)
    if kind is Probe.SYN:
        assert (l4.seq, str(l4.flags)) == (cookie, "S")
    elif kind is Probe.ACK:
        assert (l4.ack, str(l4.flags)) == (cookie, "A")
    elif ":" in me:
        assert parsed.fl == cookie & 0xFFFFF
    else:
        assert parsed.id == ((cookie & 0xFFFF) or 1)


@given(st.integers(1, 65535), st.integers(0, 0xFFFFFFFF), st.sampled_from(list(Probe)))
def test_repatching_one_bound_probe_equals_a_fresh_build(
    dport: int, cookie: int, kind: Probe
) -> None:
    tmpl = ProbeTemplate(templates.build_template(kind, ip_address(ME6), SPORT), kind)
    bound = tmpl.bind(packed(TARGET6))
    bound.patch(7, 0xDEADBEEF)  # an earlier probe leaves nothing behind
    again = bytes(bound.patch(dport, cookie))
    assert again == bytes(tmpl.bind(packed(TARGET6)).patch(dport, cookie))
    parsed = IPv6(again)
    claimed = parsed[1].chksum
    del parsed[1].chksum
    assert IPv6(bytes(parsed))[1].chksum == claimed


def test_ipv4_udp_mark_is_never_zero() -> None:
    # With IP_HDRINCL the kernel replaces an IPv4 ID of 0 by its own: the quote
    # of an ICMP error would then never match. A cookie ending in 0x0000 marks 1.
    from portlib.scanning.raw.wire import ipv4_mark

    secret = next(
        s
        for s in (i.to_bytes(4, "big") for i in range(1 << 20))
        if Cookie(s)(packed(TARGET4), 9, SPORT) & 0xFFFF == 0
    )
    cookie = Cookie(secret)
    c = cookie(packed(TARGET4), 9, SPORT)
    assert ipv4_mark(c) == 1
    tmpl = ProbeTemplate(templates.build_template(Probe.UDP, ip_address(ME4), SPORT), Probe.UDP)
    wire = bytes(tmpl.bind(packed(TARGET4)).patch(9, c))
    assert IP(wire).id == 1
    error = bytes(IP(src=TARGET4, dst=ME4) / ICMP(type=3, code=3) / wire[:28])
    event = Classifier(Probe.UDP, SPORT, cookie).classify(error)
    assert event is not None and event.state is PortState.CLOSED


def test_own_looped_probe_is_not_a_reply() -> None:
    # Scanning our own source port on this host: our probe comes back to us.
    tmpl = ProbeTemplate(templates.build_template(Probe.UDP, ip_address(ME4), SPORT), Probe.UDP)
    own = bytes(tmpl.bind(packed(ME4)).patch(SPORT, COOKIE(packed(ME4), SPORT, SPORT)))
    assert classify(Probe.UDP, own) is None
    reply = bytes(IP(src=ME4, dst=ME4, id=12345) / UDP(sport=SPORT, dport=SPORT) / b"x")
    if IP(reply).id != ((COOKIE(packed(ME4), SPORT, SPORT) & 0xFFFF) or 1):
        assert classify(Probe.UDP, reply) is not None


def test_bind_rejects_the_wrong_family() -> None:
    tmpl = ProbeTemplate(templates.build_template(Probe.SYN, ip_address(ME4), SPORT), Probe.SYN)
    with pytest.raises(ValueError, match="family"):
        tmpl.bind(packed(TARGET6))


def test_udp_payload_table_has_the_common_services() -> None:
    table = templates.udp_payloads()
    for port in (53, 123, 137, 161, 1900, 5353):
        assert table[port] and all(table[port])
    assert len(table[161]) == 2  # SNMP v1 and v2c
    assert templates.payloads_for(40000) == (b"",)
    from scapy.layers.dns import DNS
    from scapy.layers.ntp import NTP

    assert DNS(table[53][0]).qd[0].qname == b"version.bind."
    assert NTP(table[123][0]).mode == 3


# --- cookies --------------------------------------------------------------------


def test_cookie_is_keyed_and_covers_every_input() -> None:
    dst = packed(TARGET4)
    base = COOKIE(dst, 80, SPORT)
    assert base == Cookie(b"test secret")(dst, 80, SPORT)
    assert base != Cookie(b"other secret")(dst, 80, SPORT)
    assert base != COOKIE(packed(ROUTER4), 80, SPORT)
    assert base != COOKIE(dst, 81, SPORT)
    assert base != COOKIE(dst, 80, SPORT + 1)
    assert 0 <= base < 1 << 32


@given(st.lists(st.integers(0, 65535), max_size=300), st.integers(1, 65535))
def test_cookie_table_equals_single_cookies(ports: list[int], sport: int) -> None:
    dst = packed(TARGET6)
    table = COOKIE.for_ports(dst, sport, ports)
    assert list(table) == [COOKIE(dst, p, sport) for p in ports]


def test_cookie_table_of_every_port_has_no_repeating_pattern() -> None:
    table = COOKIE.for_ports(packed(TARGET4), SPORT, range(65536))
    assert len(table) == 65536
    assert len(set(table)) > 65000  # 32-bit values: a handful of collisions at most
    assert table[0:16] != table[16:32]  # neighbouring blocks come from different digests


# --- classification -------------------------------------------------------------


def classify(kind: Probe, reply: bytes):  # type: ignore[no-untyped-def]
    return Classifier(kind, SPORT, COOKIE).classify(reply)


def tcp_reply(target: str, me: str, dport: int, flags: str, *, seq: int = 0, ack: int = 0) -> bytes:
    ip = IP(src=target, dst=me, ttl=61) if ":" not in me else IPv6(src=target, dst=me, hlim=61)
    return bytes(ip / TCP(sport=dport, dport=SPORT, flags=flags, seq=seq, ack=ack))


@pytest.mark.parametrize(("me", "target"), [(ME4, TARGET4), (ME6, TARGET6)])
def test_syn_replies(me: str, target: str) -> None:
    c = COOKIE(packed(target), 22, SPORT)
    open_ = classify(Probe.SYN, tcp_reply(target, me, 22, "SA", seq=9, ack=c + 1))
    assert open_ is not None
    assert (open_.host, open_.port, open_.state, open_.reason, open_.ttl) == (
        packed(target),
        22,
        PortState.OPEN,
        Reason.SYN_ACK,
        61,
    )
    closed = classify(Probe.SYN, tcp_reply(target, me, 22, "RA", ack=c + 1))
    assert closed is not None and (closed.state, closed.reason) == (PortState.CLOSED, Reason.RESET)
    # strays: wrong ack, ack of the cookie itself, wrong port, RST without ACK, bare ACK
    assert classify(Probe.SYN, tcp_reply(target, me, 22, "SA", ack=c + 2)) is None
    assert classify(Probe.SYN, tcp_reply(target, me, 22, "SA", ack=c)) is None
    assert classify(Probe.SYN, tcp_reply(target, me, 23, "SA", ack=c + 1)) is None
    assert classify(Probe.SYN, tcp_reply(target, me, 22, "R", seq=c + 1)) is None
    assert classify(Probe.SYN, tcp_reply(target, me, 22, "A", ack=c + 1)) is None
    # a reply from another host than the one probed carries another cookie
    other = ROUTER4 if ":" not in me else ROUTER6
    assert classify(Probe.SYN, tcp_reply(other, me, 22, "SA", ack=c + 1)) is None
    # a TCP reply means nothing to a UDP scan
    assert classify(Probe.UDP, tcp_reply(target, me, 22, "SA", ack=c + 1)) is None


def test_syn_ack_wraps_at_32_bits() -> None:
    secret = next(
        s for s in (bytes([i]) for i in range(256)) if Cookie(s)(packed(TARGET4), 22, SPORT) > 0
    )
    cookie = Cookie(secret)
    c = cookie(packed(TARGET4), 22, SPORT)
    reply = tcp_reply(TARGET4, ME4, 22, "SA", ack=(c + 1) & 0xFFFFFFFF)
    assert Classifier(Probe.SYN, SPORT, cookie).classify(reply) is not None


@pytest.mark.parametrize(("me", "target"), [(ME4, TARGET4), (ME6, TARGET6)])
def test_ack_scan_replies(me: str, target: str) -> None:
    c = COOKIE(packed(target), 80, SPORT)
    rst = classify(Probe.ACK, tcp_reply(target, me, 80, "R", seq=c))
    assert rst is not None and (rst.state, rst.reason) == (PortState.UNFILTERED, Reason.RESET)
    assert classify(Probe.ACK, tcp_reply(target, me, 80, "R", seq=c + 1)) is None
    assert classify(Probe.ACK, tcp_reply(target, me, 80, "SA", seq=c)) is None


@pytest.mark.parametrize(("me", "target"), [(ME4, TARGET4), (ME6, TARGET6)])
def test_udp_reply_is_open(me: str, target: str) -> None:
    ip = IP(src=target, dst=me) if ":" not in me else IPv6(src=target, dst=me)
    event = classify(Probe.UDP, bytes(ip / UDP(sport=53, dport=SPORT) / b"answer"))
    assert event is not None
    assert (event.port, event.state, event.reason) == (53, PortState.OPEN, Reason.UDP_RESPONSE)
    assert classify(Probe.UDP, bytes(ip / UDP(sport=53, dport=SPORT + 1))) is None
    assert classify(Probe.SYN, bytes(ip / UDP(sport=53, dport=SPORT))) is None


def icmp4_error(
    kind: Probe, code: int, dport: int, *, src: str = TARGET4, type_: int = 3, tamper: bool = False
) -> bytes:
    quoted = probe(kind, ME4, TARGET4, dport)
    if tamper:  # change the cookie-bearing field of the quoted probe
        b = bytearray(quoted)
        at = 4 if kind is Probe.UDP else 20 + 4
        b[at] ^= 0xFF
        quoted = bytes(b)
    return bytes(IP(src=src, dst=ME4) / ICMP(type=type_, code=code) / quoted[:28])


@pytest.mark.parametrize(("code", "reason"), sorted(UNREACH_REASONS[4].items()))
def test_icmp4_unreachable_table(code: int, reason: Reason) -> None:
    syn = classify(Probe.SYN, icmp4_error(Probe.SYN, code, 25))
    assert syn is not None
    assert (syn.host, syn.port, syn.state, syn.reason) == (
        packed(TARGET4),
        25,
        PortState.FILTERED,
        reason,
    )
    udp = classify(Probe.UDP, icmp4_error(Probe.UDP, code, 25))
    expected = PortState.CLOSED if code == 3 else PortState.FILTERED
    assert udp is not None and (udp.state, udp.reason) == (expected, reason)
    ack = classify(Probe.ACK, icmp4_error(Probe.ACK, code, 25))
    assert ack is not None and ack.state is PortState.FILTERED


def test_icmp4_errors_must_quote_our_probe() -> None:
    for kind in Probe:
        assert classify(kind, icmp4_error(kind, 3, 25, tamper=True)) is None
    # a router's port unreachable does not make the port closed
    routed = classify(Probe.UDP, icmp4_error(Probe.UDP, 3, 25, src=ROUTER4))
    assert routed is not None and routed.state is PortState.FILTERED
    expired = classify(Probe.SYN, icmp4_error(Probe.SYN, 0, 25, src=ROUTER4, type_=11))
    assert expired is not None and expired.reason is Reason.TIME_EXCEEDED
    # echo replies, redirects and other ICMP are not answers to port probes
    assert classify(Probe.SYN, icmp4_error(Probe.SYN, 0, 25, type_=0)) is None
    assert classify(Probe.SYN, icmp4_error(Probe.SYN, 1, 25, type_=5)) is None
    # an ICMP error about a UDP probe means nothing to a SYN scan, and vice versa
    assert classify(Probe.SYN, icmp4_error(Probe.UDP, 3, 25)) is None
    assert classify(Probe.UDP, icmp4_error(Probe.SYN, 3, 25)) is None


def test_truncated_and_garbage_packets_are_strays() -> None:
    full = icmp4_error(Probe.SYN, 13, 25)
    for cut in range(len(full)):
        event = classify(Probe.SYN, full[:cut])
        assert event is None or cut >= 20 + 8 + 20 + 8
    assert classify(Probe.SYN, b"\x00" * 60) is None
    assert classify(Probe.SYN, b"") is None


def test_quoted_probe_header_through_scapy_error_layers() -> None:
    # scapy's own error layers build an equivalent quote: IP + first 8 bytes of TCP.
    c = COOKIE(packed(TARGET4), 443, SPORT)
    quote = IPerror(src=ME4, dst=TARGET4) / TCPerror(sport=SPORT, dport=443, seq=c)
    event = classify(Probe.SYN, bytes(IP(src=TARGET4, dst=ME4) / ICMP(type=3, code=13) / quote))
    assert event is not None and event.reason is Reason.ADMIN_PROHIBITED
    c = COOKIE(packed(TARGET4), 161, SPORT)
    quote_udp = IPerror(src=ME4, dst=TARGET4, id=(c & 0xFFFF) or 1) / UDPerror(
        sport=SPORT, dport=161
    )
    udp = classify(Probe.UDP, bytes(IP(src=TARGET4, dst=ME4) / ICMP(type=3, code=3) / quote_udp))
    assert udp is not None and (udp.port, udp.state) == (161, PortState.CLOSED)


def icmp6_error(kind: Probe, layer: object, dport: int, *, src: str = TARGET6) -> bytes:
    quoted = probe(kind, ME6, TARGET6, dport)
    return bytes(IPv6(src=src, dst=ME6) / layer / quoted)  # type: ignore[operator]


@pytest.mark.parametrize(("code", "reason"), sorted(UNREACH_REASONS[6].items()))
def test_icmp6_unreachable_table(code: int, reason: Reason) -> None:
    syn = classify(Probe.SYN, icmp6_error(Probe.SYN, ICMPv6DestUnreach(code=code), 25))
    assert syn is not None and (syn.state, syn.reason) == (PortState.FILTERED, reason)
    udp = classify(Probe.UDP, icmp6_error(Probe.UDP, ICMPv6DestUnreach(code=code), 25))
    expected = PortState.CLOSED if code == 4 else PortState.FILTERED
    assert udp is not None and (udp.host, udp.state, udp.reason) == (
        packed(TARGET6),
        expected,
        reason,
    )


def test_icmp6_other_errors_and_strays() -> None:
    expired = classify(Probe.UDP, icmp6_error(Probe.UDP, ICMPv6TimeExceeded(), 9, src=ROUTER6))
    assert expired is not None and expired.reason is Reason.TIME_EXCEEDED
    problem = classify(Probe.SYN, icmp6_error(Probe.SYN, ICMPv6ParamProblem(code=1), 9))
    assert problem is not None and problem.reason is Reason.PARAM_PROBLEM
    # wrong flow label in the quote: not our probe
    quoted = bytearray(probe(Probe.UDP, ME6, TARGET6, 9))
    quoted[3] ^= 0x01
    forged = bytes(IPv6(src=TARGET6, dst=ME6) / ICMPv6DestUnreach(code=4) / bytes(quoted))
    assert classify(Probe.UDP, forged) is None
    # a packet with an extension header before TCP is not parsed as TCP
    frag = bytes(IPv6(src=TARGET6, dst=ME6) / IPv6ExtHdrFragment() / TCP(dport=SPORT))
    assert classify(Probe.SYN, frag) is None


# --- BPF assembly ---------------------------------------------------------------


def test_bpf_program_encodes_labels_as_forward_skips() -> None:
    prog = bpf.reply_filter((6,), 4242)
    assert len(prog) % 8 == 0
    insns = [struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8)]
    assert insns[-2] == (0x06, 0, 0, bpf.SNAPLEN)  # accept: keep SNAPLEN bytes
    assert insns[-1] == (0x06, 0, 0, 0)  # drop
    assert any(code == 0x15 and k == 4242 for code, _jt, _jf, k in insns)
    for i, (code, jt, jf, _k) in enumerate(insns):
        if code & 0x07 == 0x05:  # jumps stay inside the program
            assert i + 1 + max(jt, jf) < len(insns)
    with pytest.raises(KeyError):
        bpf.assemble([bpf.Insn(0x15, 1, "nowhere", 0)])


# --- privileged discovery: pure parts -------------------------------------------


ROUTE_V4 = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "br0\t000200C0\t00000000\t0001\t0\t0\t0\t80FFFFFF\t0\t0\t0\n"
    "br1\t800200C0\t00000000\t0000\t0\t0\t0\t80FFFFFF\t0\t0\t0\n"
)
ROUTE_V6 = (
    "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001 br0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "20010db8000000000000000000000001 00000400 00000002 00000000 00000003 eth0\n"
)


def test_on_link_lookup_from_kernel_route_tables() -> None:
    from portlib.scanning.raw.routes import on_link_interface, parse_route_v4, parse_route_v6

    v4 = parse_route_v4(ROUTE_V4)
    assert on_link_interface(ip_address("192.0.2.10"), v4) == "br0"
    assert on_link_interface(ip_address("192.0.2.200"), v4) is None  # route is down: gateway
    assert on_link_interface(ip_address("198.51.100.1"), v4) is None  # via the gateway
    v6 = parse_route_v6(ROUTE_V6)
    assert on_link_interface(ip_address("2001:db8::10"), v6) == "br0"
    assert on_link_interface(ip_address("2001:db8:5::1"), v6) is None


def test_discovery_replies_are_validated() -> None:
    from portlib.model import HostState
    from portlib.scanning.discovery import packets as rd

    me, target = packed(ME4), packed(TARGET4)
    ident, seq = rd.icmp_id_seq(COOKIE(target, 0, rd.ECHO))
    echo = bytes(IP(src=TARGET4, dst=ME4) / ICMP(type=0, id=ident, seq=seq))
    assert rd.classify_reply(echo, 0x0800, COOKIE, SPORT) == (
        target,
        HostState.UP,
        Reason.ECHO_REPLY,
    )
    forged = bytes(IP(src=TARGET4, dst=ME4) / ICMP(type=0, id=ident, seq=seq + 1))
    assert rd.classify_reply(forged, 0x0800, COOKIE, SPORT) is None
    ident, seq = rd.icmp_id_seq(COOKIE(target, 0, rd.TIMESTAMP))
    stamp = bytes(IP(src=TARGET4, dst=ME4) / ICMP(type=14, id=ident, seq=seq))
    assert rd.classify_reply(stamp, 0x0800, COOKIE, SPORT)[2] is Reason.TIMESTAMP_REPLY
    c = COOKIE(target, rd.SYN_PORT, SPORT)
    synack = tcp_reply(TARGET4, ME4, rd.SYN_PORT, "SA", ack=c + 1)
    assert rd.classify_reply(synack, 0x0800, COOKIE, SPORT)[2] is Reason.SYN_ACK
    assert (
        rd.classify_reply(tcp_reply(TARGET4, ME4, 443, "SA", ack=c), 0x800, COOKIE, SPORT) is None
    )
    rst = tcp_reply(TARGET4, ME4, rd.ACK_PORT, "R", seq=COOKIE(target, rd.ACK_PORT, SPORT))
    assert rd.classify_reply(rst, 0x0800, COOKIE, SPORT)[2] is Reason.RESET
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + b"\x02" * 6 + target + b"\x04" * 6 + me
    assert rd.classify_reply(arp, 0x0806, COOKIE, SPORT) == (
        target,
        HostState.UP,
        Reason.ARP_RESPONSE,
    )
    assert rd.classify_reply(arp[:7] + b"\x01" + arp[8:], 0x0806, COOKIE, SPORT) is None
    # an unreachable quoting our SYN says the host is down, and why
    quote = probe(Probe.SYN, ME4, TARGET4, 443)[:28]
    unreach = bytes(IP(src=ME4, dst=ME4) / ICMP(type=3, code=1) / quote)
    assert rd.classify_reply(unreach, 0x0800, COOKIE, SPORT) == (
        target,
        HostState.DOWN,
        Reason.HOST_UNREACH,
    )


def test_discovery_probe_bytes_are_valid_for_scapy() -> None:
    from scapy.layers.inet6 import ICMPv6EchoRequest

    from portlib.scanning.discovery import packets as rd

    me, target = packed(ME4), packed(TARGET4)
    for wire in (
        rd.icmp4_probe(me, target, 8, 0x12345678),
        rd.icmp4_probe(me, target, 13, 0x12345678),
        rd.tcp_probe(me, target, SPORT, 443, 0x02, 99),
        rd.tcp_probe(me, target, SPORT, 80, 0x10, 99),
    ):
        parsed = IP(wire)
        claimed = (parsed.chksum, parsed[1].chksum)
        del parsed.chksum
        del parsed[1].chksum
        rebuilt = IP(bytes(parsed))
        assert claimed == (rebuilt.chksum, rebuilt[1].chksum)
    echo6 = IPv6(rd.icmp6_echo(packed(ME6), packed(TARGET6), 0xABCD0001))
    assert echo6[ICMPv6EchoRequest].id == 0xABCD and echo6[ICMPv6EchoRequest].seq == 1
    claimed = echo6[ICMPv6EchoRequest].cksum
    del echo6[ICMPv6EchoRequest].cksum
    assert IPv6(bytes(echo6))[ICMPv6EchoRequest].cksum == claimed
    message, group = rd.neighbor_solicitation(packed(ME6), packed(TARGET6), b"\x02" * 6)
    assert str(ip_address(group)) == "ff02::1:ff00:10"
    assert message[0] == 135 and message[8:24] == packed(TARGET6)


def test_neighbor_mac_from_the_arp_table() -> None:
    from portlib.scanning.raw.io.txring import ethernet_header
    from portlib.scanning.raw.routes import neighbor_mac_v4

    table = (
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.0.2.10       0x1         0x2         02:aa:bb:cc:dd:ee     *        br0\n"
        "192.0.2.11       0x1         0x0         00:00:00:00:00:00     *        br0\n"
        "192.0.2.12       0x1         0x2         02:11:22:33:44:55     *        eth9\n"
    )
    assert neighbor_mac_v4("192.0.2.10", "br0", table) == bytes.fromhex("02aabbccddee")
    assert neighbor_mac_v4("192.0.2.11", "br0", table) is None  # incomplete
    assert neighbor_mac_v4("192.0.2.12", "br0", table) is None  # other interface
    assert neighbor_mac_v4("192.0.2.99", "br0", table) is None
    header = ethernet_header(b"\x02" * 6, b"\x04" * 6, 6)
    assert header == b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd"
