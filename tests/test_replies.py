"""The raw engine's inline reply path and the general classifier agree on every frame.

``ReplyReader.read`` reads the common replies by fixed offsets for speed and
hands everything else to ``Classifier``; a frame must get the same verdict
(or none) either way. Frames are built byte by byte (no sockets), close
enough to real replies that the cookie and port checks are what decides.
"""

from __future__ import annotations

import struct
from array import array
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.model import PortState, Reason
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.replies import Answer, Classifier, FirstTry, ReplyReader
from portlib.scanning.raw.wire import Probe, ipv4_mark

SPORT = 40404
COOKIE = Cookie(b"replies property test")
HOSTS = [ip_address("192.0.2.10").packed, ip_address("192.0.2.11").packed]
STRANGER = ip_address("192.0.2.99").packed
ME = ip_address("192.0.2.1").packed
PORTS = [22, 53, 80, 443, 8080]


def cookie_of(host: bytes, port: int) -> int:
    return COOKIE(host, port, SPORT)


def ipv4(
    src: bytes, dst: bytes, proto: int, payload: bytes, *, ihl: int = 5, frag: int = 0
) -> bytes:
    options = b"\x01" * (4 * (ihl - 5))  # NOPs
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        20 + len(options) + len(payload),
        1,
        frag,
        64,
        proto,
        0,
        src,
        dst,
    )
    return header + options + payload


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 1024, 0, 0)


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def quoted_udp_probe(target: bytes, dport: int, mark: int, sport: int = SPORT) -> bytes:
    """The first 28 bytes of our UDP probe, as an ICMP error quotes it."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, mark, 0, 64, 17, 0, ME, target) + udp(
        sport, dport
    )


def quoted_tcp_probe(target: bytes, dport: int, seq: int) -> bytes:
    return (
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, ME, target)
        + tcp(SPORT, dport, seq, 0, 0x02)[:8]
    )


u32 = st.integers(0, 0xFFFFFFFF)


def usually(value: object, other: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """``value`` seven times in eight, else something drawn from ``other``."""
    return st.integers(0, 7).flatmap(lambda n: st.just(value) if n else other)


@st.composite
def replies(draw: st.DrawFn) -> tuple[Probe, bytes]:
    """A probe kind and a frame: mostly a plausible answer, with something off now and then."""
    kind = draw(st.sampled_from(list(Probe)))
    host = draw(usually(draw(st.sampled_from(HOSTS)), st.just(STRANGER)))
    port = draw(usually(draw(st.sampled_from(PORTS)), st.sampled_from([9999, SPORT])))
    cookie = cookie_of(host, port)
    natural = "udp" if kind is Probe.UDP else "tcp"
    icmp = "icmp-udp" if kind is Probe.UDP else "icmp-tcp"
    shape = draw(st.sampled_from([natural, natural, icmp, icmp, "tcp", "udp", "noise"]))
    ihl = draw(usually(5, st.just(6)))
    frag = draw(usually(0, st.sampled_from([0x4000, 1, 0x2000])))
    dport = draw(usually(SPORT, st.just(SPORT + 1)))
    if shape == "tcp":
        seq = draw(st.sampled_from([cookie, draw(u32)]))
        ack = draw(st.sampled_from([(cookie + 1) & 0xFFFFFFFF, cookie, draw(u32)]))
        flags = draw(st.sampled_from([0x12, 0x14, 0x04, 0x10, 0x02, draw(st.integers(0, 255))]))
        frame = ipv4(host, ME, 6, tcp(port, dport, seq, ack, flags), ihl=ihl, frag=frag)
    elif shape == "udp":
        frame = ipv4(host, ME, 17, udp(port, dport, b"answer"), ihl=ihl, frag=frag)
    elif shape in ("icmp-udp", "icmp-tcp"):
        # The error comes from the target itself or from a router on the way.
        target = host if draw(st.booleans()) else draw(st.sampled_from(HOSTS))
        qcookie = cookie_of(target, port)
        icmp_type = draw(usually(3, st.sampled_from([11, 0, 5])))
        code = draw(usually(3, st.sampled_from([1, 13, 10, 4])))
        if shape == "icmp-udp":
            mark = draw(st.sampled_from([ipv4_mark(qcookie), draw(st.integers(0, 0xFFFF))]))
            quote = quoted_udp_probe(target, port, mark, draw(usually(SPORT, st.just(7))))
        else:
            quote = quoted_tcp_probe(target, port, draw(usually(qcookie, u32)))
        body = struct.pack("!BBHI", icmp_type, code, 0, 0) + quote
        frame = ipv4(host, ME, 1, body, ihl=ihl, frag=frag)
    else:
        frame = draw(st.binary(max_size=80))
    cut = draw(usually(None, st.integers(0, 80)))
    return kind, frame if cut is None else frame[:cut]


def reader_for(kind: Probe, tries: int) -> ReplyReader:
    nports = len(PORTS)
    count = len(HOSTS) * nports
    cookies = array("I", [cookie_of(h, p) for h in HOSTS for p in PORTS])
    return ReplyReader(
        Classifier(kind, SPORT, COOKIE),
        host_index={h: i for i, h in enumerate(HOSTS)},
        port_index={p: i for i, p in enumerate(PORTS)},
        cookies=cookies,
        sends=bytearray([tries]) * count,
        decided=bytearray(count),
        fast=bytearray([1]) * len(HOSTS),
        icmp_untracked=bytearray([1]) * len(HOSTS),
    )


def general_verdict(kind: Probe, frame: bytes) -> tuple[int, PortState, Reason] | None:
    event = Classifier(kind, SPORT, COOKIE).classify(frame)
    if event is None or event.host not in HOSTS or event.port not in PORTS:
        return None
    return HOSTS.index(event.host) * len(PORTS) + PORTS.index(event.port), event.state, event.reason


@settings(max_examples=1000, deadline=None)
@given(replies(), st.sampled_from([1, 2, 0]))
def test_inline_path_and_classifier_agree(reply: tuple[Probe, bytes], tries: int) -> None:
    kind, frame = reply
    reader = reader_for(kind, tries)
    first: list[FirstTry] = []
    later: list[Answer] = []
    reader.read([(frame, 0, len(frame))], first, later, lambda: 0.0)
    found = [(idx, state, reason) for idx, state, reason, _ in first]
    found += [(idx, state, reason) for idx, _, state, reason, _ in later]
    expected = general_verdict(kind, frame)
    if tries == 0:
        expected = None  # never probed: an answer to it is a spoof or a stray
    assert found == ([] if expected is None else [expected])
    if tries > 1:
        assert not first  # a retry's answer always takes the full path


def test_frames_inside_a_shared_buffer_are_read_at_their_offsets() -> None:
    """A ring hands frames as (buffer, offset, length): what precedes a frame is not read."""
    reply = ipv4(
        HOSTS[1], ME, 6, tcp(80, SPORT, 5, (cookie_of(HOSTS[1], 80) + 1) & 0xFFFFFFFF, 0x12)
    )
    buffer = b"\xff" * 37 + reply + b"\xee" * 11
    reader = reader_for(Probe.SYN, 1)
    first: list[FirstTry] = []
    reader.read([(buffer, 37, len(reply))], first, [], lambda: 1.0)
    assert [(idx, state) for idx, state, _, _ in first] == [(len(PORTS) + 2, PortState.OPEN)]


def test_a_duplicate_in_one_drain_is_answered_once() -> None:
    reply = ipv4(
        HOSTS[0], ME, 6, tcp(22, SPORT, 0, (cookie_of(HOSTS[0], 22) + 1) & 0xFFFFFFFF, 0x14)
    )
    for tries in (1, 2):
        reader = reader_for(Probe.SYN, tries)
        first: list[FirstTry] = []
        later: list[Answer] = []
        reader.read([(reply, 0, len(reply))] * 3, first, later, lambda: 0.0)
        assert len(first) + len(later) == 1
