"""The /proc/net parsers and the netlink decoder, on text and bytes built here."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.errors import ParseError
from portlib.model import Endpoint, Family, Protocol, Socket, SocketState, UnixSocket
from portlib.socktable import procnet, sockdiag
from portlib.socktable.bytecode import bytecode_attribute
from portlib.socktable.filters import Comparison, PortMatch, Side

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
UNIX_HEADER = "Num       RefCount Protocol Flags    Type St Inode Path"


def kernel_hex(address: str) -> str:
    """The address as the kernel prints it: 32-bit words in little-endian order, %08X each."""
    packed = ip_address(address).packed
    words = [packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4)]
    return "".join(words)


def tcp_line(
    local: str,
    lport: int,
    remote: str,
    rport: int,
    state: int,
    *,
    inode: int = 12345,
    uid: int = 1000,
    tx: int = 0,
    rx: int = 0,
    slot: int = 0,
) -> str:
    return (
        f"{slot:4d}: {kernel_hex(local)}:{lport:04X} {kernel_hex(remote)}:{rport:04X} {state:02X} "
        f"{tx:08X}:{rx:08X} 00:00000000 00000000 {uid:5d}        0 {inode} 1"
        " 0000000000000000 100 0 0 10 0"
    )


def test_ipv4_line_decodes_little_endian_words() -> None:
    line = (
        "   0: 0100007F:1F40 0200007F:D431 01 00000010:00000020 00:00000000 00000000"
        "  1000        0 4242 1"
    )
    sock = procnet.parse_inet_line(line, Protocol.TCP, Family.INET)
    assert sock == Socket(
        Protocol.TCP,
        Family.INET,
        Endpoint(IPv4Address("127.0.0.1"), 8000),
        Endpoint(IPv4Address("127.0.0.2"), 54321),
        SocketState.ESTABLISHED,
        inode=4242,
        uid=1000,
        rx_queue=0x20,
        tx_queue=0x10,
    )


@pytest.mark.parametrize(("code", "state"), sorted(procnet.TCP_STATES.items()))
def test_every_tcp_state_code(code: int, state: SocketState) -> None:
    sock = procnet.parse_inet_line(
        tcp_line("192.0.2.1", 80, "192.0.2.2", 5555, code), Protocol.TCP, Family.INET
    )
    assert sock.state is state


def test_state_table_covers_kernel_states_and_ss_words() -> None:
    assert set(procnet.TCP_STATES) == set(range(1, 14))
    assert procnet.TCP_STATES[12] is SocketState.NEW_SYN_RECV
    assert procnet.TCP_STATES[13] is SocketState.BOUND_INACTIVE
    assert procnet.TCP_STATES[10] == "LISTEN"
    assert procnet.DGRAM_STATES[7] == "UNCONN"
    assert procnet.DGRAM_STATES[1] == "ESTAB"


@pytest.mark.parametrize(
    "address", ["::1", "2001:db8::1", "fe80::1:2:3:4", "::", "2001:db8:ffff:1234:5678:9abc:def0:1"]
)
def test_ipv6_addresses(address: str) -> None:
    sock = procnet.parse_inet_line(tcp_line(address, 443, "::", 0, 10), Protocol.TCP, Family.INET6)
    assert sock.local == Endpoint(IPv6Address(address), 443)
    assert sock.remote == Endpoint(IPv6Address("::"), 0)
    assert sock.family is Family.INET6


def test_ipv4_mapped_ipv6_stays_ipv6() -> None:
    # What the kernel prints for ::ffff:127.0.0.1 in /proc/net/tcp6.
    line = (
        "   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 "
        "00000000:00000000 00:00000000 00000000     0        0 777 1"
    )
    sock = procnet.parse_inet_line(line, Protocol.TCP, Family.INET6)
    assert sock.local.address == IPv6Address("::ffff:127.0.0.1")
    assert isinstance(sock.local.address, IPv6Address)
    assert sock.local.address.ipv4_mapped == IPv4Address("127.0.0.1")
    assert sock.local.port == 8080


def test_udp_and_raw_states_and_ports() -> None:
    unconn = procnet.parse_inet_line(
        tcp_line("0.0.0.0", 53, "0.0.0.0", 0, 7), Protocol.UDP, Family.INET
    )
    connected = procnet.parse_inet_line(
        tcp_line("127.0.0.1", 4000, "127.0.0.1", 53, 1), Protocol.UDP, Family.INET
    )
    raw = procnet.parse_inet_line(
        tcp_line("0.0.0.0", 1, "0.0.0.0", 0, 7), Protocol.RAW, Family.INET
    )
    assert (unconn.state, connected.state) == (SocketState.CLOSE, SocketState.ESTABLISHED)
    assert str(unconn.state) == "UNCONN"
    assert raw.local.port == 1  # the IP protocol number (ICMP), as ss -w shows it
    with pytest.raises(ParseError, match="state"):
        procnet.parse_inet_line(
            tcp_line("0.0.0.0", 53, "0.0.0.0", 0, 10), Protocol.UDP, Family.INET
        )


def test_time_wait_line_with_fewer_columns() -> None:
    line = (
        "   5: 0100007F:1F40 0100007F:9C40 06 00000000:00000000 03:00000F3B 00000000"
        "     0        0 0 3 0000000000000000"
    )
    sock = procnet.parse_inet_line(line, Protocol.TCP, Family.INET)
    assert (sock.state, sock.inode, sock.uid) == (SocketState.TIME_WAIT, 0, 0)


def test_whole_table_with_header_and_blank_lines() -> None:
    text = "\n".join(
        [
            TCP_HEADER,
            tcp_line("127.0.0.1", 22, "0.0.0.0", 0, 10),
            "",
            tcp_line("127.0.0.1", 80, "0.0.0.0", 0, 10, slot=1),
        ]
    )
    socks = procnet.parse_inet_table(text + "\n", Protocol.TCP, Family.INET, source="/proc/net/tcp")
    assert [s.local.port for s in socks] == [22, 80]
    assert procnet.parse_inet_table(TCP_HEADER + "\n", Protocol.TCP, Family.INET) == []
    assert procnet.parse_inet_table("", Protocol.TCP, Family.INET) == []


GOOD = "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1"


@pytest.mark.parametrize(
    "bad",
    [
        "   0: 0100007F:1F40",  # too few columns
        GOOD.replace("0100007F:1F40", "0100007F1F40"),  # no colon
        GOOD.replace("0100007F:", "0100007:"),  # 7 hex digits
        GOOD[:-4] + " x 1",  # inode
        GOOD.replace(" 0A ", " FF "),  # state
        GOOD.replace("00000000:00000000", "0000000000000000"),  # queues
        GOOD.replace("0100007F", "0100007G"),  # not hex
        GOOD.replace("0:", "0 ", 1),  # slot
    ],
)
def test_malformed_line_names_file_and_line(bad: str) -> None:
    text = "\n".join([TCP_HEADER, tcp_line("127.0.0.1", 22, "0.0.0.0", 0, 10), bad])
    with pytest.raises(ParseError) as info:
        procnet.parse_inet_table(text, Protocol.TCP, Family.INET, source="/proc/net/tcp")
    assert info.value.source == "/proc/net/tcp"
    assert info.value.line == 3
    assert str(info.value).startswith("/proc/net/tcp:3: ")


def test_ipv4_width_address_in_ipv6_table_is_an_error() -> None:
    with pytest.raises(ParseError, match="32 hex"):
        procnet.parse_inet_line(
            tcp_line("127.0.0.1", 1, "127.0.0.1", 2, 1), Protocol.TCP, Family.INET6
        )


def test_bad_header_is_an_error() -> None:
    with pytest.raises(ParseError, match="header"):
        procnet.parse_inet_table("garbage\n", Protocol.TCP, Family.INET, source="x")


# -- unix ----------------------------------------------------------------------------------


def unix_line(
    inode: int, *, kind: int = 1, state: int = 3, flags: int = 0, path: str | None = None
) -> str:
    tail = f" {path}" if path is not None else ""
    return (
        f"0000000000000000: 00000002 00000000 {flags:08X} {kind:04X} {state:02X} {inode:5d}{tail}"
    )


def test_unix_sockets_named_abstract_unnamed_listening() -> None:
    text = "\n".join(
        [
            UNIX_HEADER,
            unix_line(100, state=1, flags=0x10000, path="/run/app.sock"),
            unix_line(101, path="@abstract/name"),
            unix_line(102),
            unix_line(103, kind=2, state=1, path="/dev/log"),
            unix_line(104, kind=5, path="/tmp/with space.sock"),
            unix_line(105, state=2),
            unix_line(106, state=4),
        ]
    )
    socks = procnet.parse_unix_table(text, source="/proc/net/unix")
    assert socks[0] == UnixSocket("/run/app.sock", "stream", SocketState.LISTEN, 100, 0x10000, 2)
    assert (socks[1].path, socks[1].state) == ("@abstract/name", SocketState.ESTABLISHED)
    assert socks[2].path is None
    assert (socks[3].type, socks[3].state) == ("dgram", SocketState.CLOSE)
    assert (socks[4].type, socks[4].path) == ("seqpacket", "/tmp/with space.sock")
    assert socks[5].state is SocketState.CONNECTING
    assert socks[6].state is SocketState.DISCONNECTING
    assert all(s.family is Family.UNIX for s in socks)


@pytest.mark.parametrize(
    "bad",
    [
        "0000000000000000: 00000002 00000000 00000000 0001 03",  # no inode
        "0000000000000000: 00000002 00000000 00000000 0009 03 100",  # unknown type
        "0000000000000000: 00000002 00000000 00000000 0001 09 100",  # unknown state
        "0000000000000000  00000002 00000000 00000000 0001 03 100",  # slot
        "0000000000000000: 0000000Z 00000000 00000000 0001 03 100",  # refcount
    ],
)
def test_malformed_unix_line(bad: str) -> None:
    with pytest.raises(ParseError) as info:
        procnet.parse_unix_table(f"{UNIX_HEADER}\n{bad}\n", source="/proc/net/unix")
    assert (info.value.source, info.value.line) == ("/proc/net/unix", 2)


# -- property tests: any line parses or raises ParseError, nothing else -----------------------

hex_words = st.text(alphabet="0123456789ABCDEFabcdefxX:-+_ \t", max_size=40)
tokens = st.one_of(
    hex_words, st.text(max_size=12), st.sampled_from(["0:", "0A", "1", "00000000:00000000"])
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.text(max_size=200), st.lists(tokens, max_size=14).map(" ".join)),
    st.sampled_from(list(procnet.INET_TABLE_FILES)),
)
def test_any_inet_line_parses_or_raises_parse_error(
    line: str, table: tuple[Protocol, Family]
) -> None:
    try:
        sock = procnet.parse_inet_line(line, *table, source="f", lineno=7)
    except ParseError as exc:
        assert exc.line == 7
    else:
        assert isinstance(sock, Socket)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(tokens, max_size=10).map(" ".join)))
def test_any_unix_line_parses_or_raises_parse_error(line: str) -> None:
    try:
        sock = procnet.parse_unix_line(line, source="f", lineno=3)
    except ParseError as exc:
        assert exc.line == 3
    else:
        assert isinstance(sock, UnixSocket)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(procnet.TCP_STATES)),
    st.ip_addresses(v=6),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
)
def test_ipv6_round_trip(code: int, address: IPv6Address, port: int, inode: int) -> None:
    line = tcp_line(str(address), port, "::1", 1, code, inode=inode)
    sock = procnet.parse_inet_line(line, Protocol.TCP, Family.INET6)
    assert (sock.local, sock.inode, sock.state) == (
        Endpoint(address, port),
        inode,
        procnet.TCP_STATES[code],
    )


# -- netlink sock_diag decoding (pure) -------------------------------------------------------


def diag_message(
    family: int,
    state: int,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    *,
    inode: int,
    seq: int = 1,
    extra: bytes = b"",
) -> bytes:
    def raw(address: str) -> bytes:
        return ip_address(address).packed.ljust(16, b"\0")

    body = struct.pack("=BBBB", family, state, 0, 0)
    body += struct.pack(">HH", sport, dport) + raw(src) + raw(dst)
    body += struct.pack("=I8x", 0) + struct.pack("=IIIII", 0, 3, 128, 1000, inode) + extra
    return struct.pack("=IHHII", 16 + len(body), 20, 2, seq, 0) + body


def done_message(seq: int = 1, error: int = 0) -> bytes:
    return struct.pack("=IHHIIi", 20, 3, 2, seq, 0, error)


def test_request_encoding() -> None:
    request = sockdiag.encode_request(Protocol.UDP, Family.INET6, seq=9)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq) == (len(request), 20, 0x301, 9)
    assert request[16:18] == bytes([socket.AF_INET6, socket.IPPROTO_UDP])
    assert len(request) == 16 + 56


def test_decode_messages_and_listen_queue_semantics() -> None:
    data = (
        diag_message(
            2,
            10,
            "127.0.0.1",
            8000,
            "0.0.0.0",
            0,
            inode=11,
            extra=b"\x05\x00\x08\x00\x00\x00\x00\x00",
        )
        + diag_message(10, 1, "::ffff:127.0.0.1", 8000, "::1", 40000, inode=12)
        + done_message()
    )
    out: list[Socket] = []
    assert sockdiag.decode_messages(data, Protocol.TCP, out) is True
    listen, estab = out
    assert listen.local == Endpoint(IPv4Address("127.0.0.1"), 8000)
    assert (listen.state, listen.rx_queue, listen.tx_queue) == (SocketState.LISTEN, 3, 0)
    assert estab.local.address == IPv6Address("::ffff:127.0.0.1")
    assert (estab.remote.port, estab.tx_queue, estab.uid, estab.inode) == (40000, 128, 1000, 12)


def test_decode_needs_done_and_reports_errors() -> None:
    out: list[Socket] = []
    assert (
        sockdiag.decode_messages(
            diag_message(2, 7, "0.0.0.0", 53, "0.0.0.0", 0, inode=1), Protocol.UDP, out
        )
        is False
    )
    assert out[0].state is SocketState.CLOSE
    with pytest.raises(sockdiag.SockDiagError) as info:
        sockdiag.decode_messages(struct.pack("=IHHIIi", 20, 2, 0, 1, 0, -2), Protocol.UDP, out)
    assert info.value.errno == 2
    with pytest.raises(sockdiag.SockDiagError, match="truncated"):
        sockdiag.decode_messages(struct.pack("=IHHII", 500, 20, 0, 1, 0), Protocol.TCP, out)


def test_decode_skips_other_sequence_numbers() -> None:
    out: list[Socket] = []
    data = diag_message(2, 1, "127.0.0.1", 1, "127.0.0.1", 2, inode=5, seq=7) + done_message(seq=1)
    assert sockdiag.decode_messages(data, Protocol.TCP, out, seq=1) is True
    assert out == []


def test_ipv4_and_ipv6_wildcards_do_not_share_cache_entries() -> None:
    # 0.0.0.0 and :: both arrive as 16 zero bytes; each must keep its own family.
    data = (
        diag_message(2, 10, "0.0.0.0", 0, "0.0.0.0", 0, inode=1)
        + diag_message(10, 10, "::", 0, "::", 0, inode=2)
        + done_message()
    )
    out: list[Socket] = []
    sockdiag.decode_messages(data, Protocol.TCP, out)
    assert out[0].remote.address == IPv4Address("0.0.0.0")
    assert out[1].remote.address == IPv6Address("::")
    assert out[1].local.address == IPv6Address("::")


def test_request_carries_states_extensions_and_a_kernel_filter() -> None:
    program = bytecode_attribute(PortMatch(Side.SOURCE, Comparison.EQ, 8080))
    request = sockdiag.encode_request(
        Protocol.TCP, Family.INET, states=1 << 10, ext=0x42, bytecode=program
    )
    assert struct.unpack_from("=I", request)[0] == len(request) == 16 + 56 + len(program)
    assert struct.unpack_from("=BBBBI", request, 16) == (2, 6, 0x42, 0, 1 << 10)
    assert request[72:] == program
    assert struct.unpack_from("=HH", request, 72) == (16, 1)  # INET_DIAG_REQ_BYTECODE
    # sport = :8080 is a host condition on any address: S_COND, yes 12, no 16 (reject).
    assert struct.unpack_from("=BBHBBxxi", request, 76) == (7, 12, 16, 0, 0, 8080)
