"""The raw engine's column path, inline reply path and general classifier agree.

``ReplyReader.read`` reads the common replies by fixed offsets for speed and
hands everything else to ``Classifier``; ``ReplyReader.read_blocks`` reads a
uniform ring block of TCP replies by columns and the rest frame by frame; a
frame must get the same verdict (or none) every way. Frames are built byte by
byte (no sockets), close enough to real replies that the cookie and port
checks are what decides.
"""

from __future__ import annotations

import struct
from array import array
from collections import Counter
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.model import PortState, Reason
from portlib.scanning.raw.bpf import TCP_SNAP
from portlib.scanning.raw.columns import SNAP
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.io.rxring import block_frames, uniform_stride
from portlib.scanning.raw.replies import Answer, Block, Classifier, FirstTries, ReplyReader
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


def reader_for(
    kind: Probe, tries: int, ports: list[int] = PORTS, fast: bytes = b"\x01\x01"
) -> ReplyReader:
    nports = len(ports)
    count = len(HOSTS) * nports
    cookies = array("I", [cookie_of(h, p) for h in HOSTS for p in ports])
    return ReplyReader(
        Classifier(kind, SPORT, COOKIE),
        host_index={h: i for i, h in enumerate(HOSTS)},
        port_index={p: i for i, p in enumerate(ports)},
        cookies=cookies,
        sends=bytearray([tries]) * count,
        decided=bytearray(count),
        fast=bytearray(fast),
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
    first = FirstTries()
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
    first = FirstTries()
    reader.read([(buffer, 37, len(reply))], first, [], lambda: 1.0)
    assert [(idx, state) for idx, state, _, _ in first] == [(len(PORTS) + 2, PortState.OPEN)]


def test_a_duplicate_in_one_drain_is_answered_once() -> None:
    reply = ipv4(
        HOSTS[0], ME, 6, tcp(22, SPORT, 0, (cookie_of(HOSTS[0], 22) + 1) & 0xFFFFFFFF, 0x14)
    )
    for tries in (1, 2):
        reader = reader_for(Probe.SYN, tries)
        first = FirstTries()
        later: list[Answer] = []
        reader.read([(reply, 0, len(reply))] * 3, first, later, lambda: 0.0)
        assert len(first) + len(later) == 1


# --- whole ring blocks, by columns ----------------------------------------------

BLOCK_PORTS = list(range(1000, 1040))
NET = 96  # where a TPACKET_V3 frame's network header starts (SOCK_DGRAM)


def ring_block(frames: list[bytes], snap: int = TCP_SNAP) -> bytes:
    """TPACKET_V3-like frames: header, packet (cut as the filter cuts it) at ``NET``, padding."""
    out = bytearray()
    for i, frame in enumerate(frames):
        packet = frame[:snap]
        step = -(-(NET + len(packet)) // 8) * 8
        last = i == len(frames) - 1
        header = struct.pack(
            "=IIIIIIHH", 0 if last else step, 0, 0, len(packet), len(frame), 1, 0, NET
        )
        out += (header.ljust(NET, b"\0") + packet).ljust(step, b"\0")
    return bytes(out)


def as_block(buf: bytes, count: int, snap: int = TCP_SNAP) -> Block:
    stride, ip = uniform_stride(buf, 0, count, snap)
    return block_frames(buf, 0, count), buf, ip, count, stride


def answer(
    kind: Probe,
    host: bytes,
    port: int,
    flags: int,
    sender: bytes | None = None,
    forged: int = 0,
) -> bytes:
    """A TCP answer (``flags``); for UDP an ICMP unreachable (code ``flags``) from ``sender``.

    ``forged``: the proof (ack, sequence number or quoted IPv4 ID) is off by that
    much, bit-wise: the answer of someone who never saw our probe.
    """
    cookie = cookie_of(host, port)
    if kind is Probe.UDP:
        mark = ipv4_mark(cookie) ^ forged
        body = struct.pack("!BBHI", 3, flags, 0, 0) + quoted_udp_probe(host, port, mark)
        return ipv4(sender or host, ME, 1, body + b"payload quoted too")
    seq, ack = (cookie, 0) if kind is Probe.ACK else (7, (cookie + 1) & 0xFFFFFFFF)
    seq, ack = (seq ^ forged, ack) if kind is Probe.ACK else (seq, ack ^ forged)
    return ipv4(host, ME, 6, tcp(port, SPORT, seq, ack, flags))


PLAIN = {Probe.SYN: [0x14, 0x12], Probe.ACK: [0x04], Probe.UDP: [3]}
ODD_FLAGS = {
    Probe.SYN: [0x12, 0x14, 0x04, 0x10, 0x16, 0x1C],
    Probe.ACK: [0x04, 0x14, 0x10, 0x02],
    Probe.UDP: [3, 1, 13, 10],
}


ODDITIES = ["flags", "host", "router", "forged", "extra", "tries", "slow", "tracked"]
FORGERIES = [1, 0x100, 0x8000, 0x10000, 0x80000000]


@st.composite
def blocks(draw: st.DrawFn) -> tuple[Probe, list[bytes], list[int], bytes, bytes]:
    """A kind, a block's frames, the book's tries per probe, the hosts' fast and ICMP flags.

    Half the blocks are the plain case (distinct first-try answers from one
    host); the rest may have some of the ``ODDITIES``, a few frames or the book
    each: odd flags, other senders, forged proofs, extra frames, other tries.
    """
    kind = draw(st.sampled_from(list(Probe)))
    count = draw(st.integers(1, 24))
    ports = draw(st.permutations(BLOCK_PORTS))[:count]
    # Which oddities this block may have (none: only what the column path reads);
    # one kind alone must make the column path decline, or agree, by itself.
    odd = draw(st.sets(st.sampled_from(ODDITIES), max_size=2)) if draw(st.booleans()) else set()

    def maybe(oddity: str, plain: object, other: st.SearchStrategy[object]) -> object:
        return draw(usually(plain, other)) if oddity in odd else plain

    frames = []
    for port in ports:
        flags = maybe("flags", draw(st.sampled_from(PLAIN[kind])), st.sampled_from(ODD_FLAGS[kind]))
        host = maybe("host", HOSTS[0], st.sampled_from([HOSTS[1], STRANGER]))
        sender = maybe("router", None, st.just(HOSTS[1]))  # a router's port unreachable
        forged = maybe("forged", 0, st.sampled_from(FORGERIES))  # a proof off by a bit
        if kind is Probe.UDP:
            forged &= 0xFFFF  # type: ignore[operator]  # the quoted IPv4 ID has 16 bits
        frames.append(answer(kind, host, port, flags, sender, forged))  # type: ignore[arg-type]
    for _ in range(draw(st.integers(0, 2)) if "extra" in odd else 0):
        extra = draw(
            st.one_of(
                replies().map(lambda reply: reply[1]),
                st.sampled_from(frames),  # a duplicate
                st.binary(min_size=SNAP[kind], max_size=SNAP[kind]),
                st.just(frames[0][:-4] + b"\0\0\0\1"),  # a TCP checksum and urgent pointer
                st.just(frames[0][:32] + b"\0\1" + frames[0][34:]),  # wrong mark (UDP)
            )
        )
        frames.insert(draw(st.integers(0, len(frames))), extra)
    # The book's oddities, when this block has them: some tries not the first,
    # a host whose answers must not go in bulk, or whose ICMP answers count.
    some_tries = st.lists(st.sampled_from([0, 1, 2]), min_size=80, max_size=80)
    tries = draw(some_tries) if "tries" in odd else None
    fast = draw(st.sampled_from([b"\x00\x01", b"\x01\x00"])) if "slow" in odd else b"\x01\x01"
    untracked = b"\x00\x01" if "tracked" in odd else b"\x01\x01"
    return kind, frames, [1] * 80 if tries is None else tries, fast, untracked  # type: ignore[return-value]


def block_reader(
    kind: Probe, tries: list[int], fast: bytes, untracked: bytes = b"\x01\x01"
) -> ReplyReader:
    reader = reader_for(kind, 1, BLOCK_PORTS, fast)
    reader.sends[:] = bytes(tries)
    reader.icmp_untracked[:] = untracked
    return reader


def found(first: FirstTries, later: list[Answer]) -> list[tuple[int, PortState, Reason]]:
    return [(i, s, r) for i, s, r, _ in first] + [(i, s, r) for i, _, s, r, _ in later]


@settings(max_examples=800, deadline=None)
@given(blocks(), st.integers(0, 79))
def test_column_path_frame_path_and_classifier_agree(
    block: tuple[Probe, list[bytes], list[int], bytes, bytes], decided: int
) -> None:
    kind, frames, tries, fast, untracked = block
    snap = SNAP[kind]
    buf = ring_block(frames, snap)
    by_columns = block_reader(kind, tries, fast, untracked)
    by_frames = block_reader(kind, tries, fast, untracked)
    for reader in (by_columns, by_frames):
        if decided % 3 == 0:
            reader.decided[decided] = 1  # answered in an earlier drain
    col_first = FirstTries()
    col_later: list[Answer] = []
    block_read = as_block(buf, len(frames), snap)
    by_columns.read_blocks([block_read], col_first, col_later, lambda: 0.0)
    frame_first = FirstTries()
    frame_later: list[Answer] = []
    by_frames.read(block_frames(buf, 0, len(frames)), frame_first, frame_later, lambda: 0.0)
    assert list(col_first) == list(frame_first) and col_later == frame_later
    assert by_columns.decided == by_frames.decided
    # The classifier, frame by frame, with the book's rules: probed, undecided, once.
    classify = Classifier(kind, SPORT, COOKIE).classify
    expected = []
    seen = set()
    nports = len(BLOCK_PORTS)
    for frame in frames:
        event = classify(frame[:snap])
        if event is None or event.host not in HOSTS or event.port not in BLOCK_PORTS:
            continue
        idx = HOSTS.index(event.host) * nports + BLOCK_PORTS.index(event.port)
        if (decided % 3 == 0 and idx == decided) or not tries[idx] or idx in seen:
            continue
        seen.add(idx)
        expected.append((idx, event.state, event.reason))
    assert sorted(found(col_first, col_later)) == sorted(expected)


def test_a_plain_block_is_read_by_columns_and_an_odd_one_is_not() -> None:
    """Sixteen first-try answers by columns; each kind of oddity declines the block, unchanged."""
    for kind in Probe:
        plain = PLAIN[kind][0]
        snap = SNAP[kind]
        frames = [answer(kind, HOSTS[0], port, plain) for port in BLOCK_PORTS[:16]]
        if kind is Probe.SYN:
            frames[3] = answer(kind, HOSTS[0], BLOCK_PORTS[3], 0x12)  # one open port
        buf = ring_block(frames, snap)
        _, _, ip, count, stride = as_block(buf, 16, snap)
        assert stride == -(-(NET + snap) // 8) * 8 and ip == NET
        reader = block_reader(kind, [1] * 80, b"\x01\x01")
        first = FirstTries()
        assert reader.columns.block(buf, ip, count, stride, first, lambda: 2.0)
        expected = Counter({PortState.OPEN: 1, PortState.CLOSED: 15})
        if kind is not Probe.SYN:
            expected = Counter(
                {PortState.UNFILTERED if kind is Probe.ACK else PortState.CLOSED: 16}
            )
        assert Counter(state for _, state, _, _ in first) == expected
        assert [i for i, _, _, _ in first] == list(range(16))
        assert bytes(reader.decided[:16]) == b"\x01" * 16
        odd_flags = 0x10 if kind is not Probe.UDP else 1  # a TCP ACK; ICMP host unreachable
        oddities = [
            [*frames[:15], frames[0]],  # a duplicate
            [*frames[:15], answer(kind, HOSTS[1], 1020, plain)],  # a second host
            [*frames[:15], answer(kind, HOSTS[0], 1020, odd_flags)],  # an answer of another kind
            [*frames[:15], answer(kind, HOSTS[0], 9999, plain)],  # a port not scanned
        ]
        if kind is Probe.UDP:
            mark = ipv4_mark(cookie_of(HOSTS[0], 1020))  # right for the sender, not the quote
            quote = quoted_udp_probe(HOSTS[1], 1020, mark)
            misquoted = ipv4(HOSTS[0], ME, 1, struct.pack("!BBHI", 3, 3, 0, 0) + quote)
            oddities += [
                [*frames[:15], frames[15][:32] + b"\0\1" + frames[15][34:]],  # not our mark
                [*frames[:15], answer(kind, HOSTS[0], 1020, plain, HOSTS[1])],  # a router's
                [*frames[:15], misquoted],  # quoting a probe to another host
            ]
        else:
            oddities.append([*frames[:15], frames[15][:-8] + b"\0" * 8])  # not our cookie
        for odd in oddities:
            reader = block_reader(kind, [1] * 80, b"\x01\x01")
            first = FirstTries()
            assert not reader.columns.block(ring_block(odd, snap), NET, 16, stride, first, time0)
            assert not first and not any(reader.decided)
        for tries, fast, untracked in (
            ([2] + [1] * 79, b"\x01\x01", b"\x01\x01"),  # a retry
            ([1] * 80, b"\x00\x01", b"\x01\x01"),  # a host whose answers are not yet fast
            ([1] * 80, b"\x01\x01", b"\x00\x01"),  # ICMP answers counted one by one (UDP)
        ):
            if kind is not Probe.UDP and untracked != b"\x01\x01":
                continue
            reader = block_reader(kind, tries, fast, untracked)
            assert not reader.columns.block(buf, NET, 16, stride, first, time0)


def time0() -> float:
    return 0.0


def test_a_block_with_a_frame_of_another_length_has_no_stride() -> None:
    frames = [answer(Probe.SYN, HOSTS[0], port, 0x14) for port in BLOCK_PORTS[:10]]
    assert uniform_stride(ring_block(frames), 0, 10, TCP_SNAP) == (136, NET)
    frames[6] = frames[6][:36]
    assert uniform_stride(ring_block(frames), 0, 10, TCP_SNAP) == (0, 0)
    frames[6] = ipv4(HOSTS[0], ME, 17, udp(1000, SPORT))  # 28 bytes, then a TCP one again
    assert uniform_stride(ring_block(frames), 0, 10, TCP_SNAP) == (0, 0)
