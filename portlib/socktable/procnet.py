"""Pure parsing of the kernel's socket tables, ``/proc/net/{tcp,udp,raw}[6]`` and ``unix``.

No file access here: callers hand in text and say which table it came from.
The kernel prints each address as 32-bit words in host (little-endian) order,
``%08X`` each: one word for IPv4, four for IPv6. An IPv4-mapped IPv6 address
therefore stays an ``IPv6Address`` (``::ffff:127.0.0.1``), exactly as the
kernel holds it. Any malformed line raises :class:`~portlib.errors.ParseError`
naming the file and the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from portlib.errors import ParseError
from portlib.model import Endpoint, Family, Protocol, Socket, SocketState, UnixSocket

S = SocketState

# include/net/tcp_states.h; 12 (request sockets) and 13 (bound, not listening) are newer.
TCP_STATES: Mapping[int, SocketState] = MappingProxyType(
    {
        1: S.ESTABLISHED,
        2: S.SYN_SENT,
        3: S.SYN_RECV,
        4: S.FIN_WAIT1,
        5: S.FIN_WAIT2,
        6: S.TIME_WAIT,
        7: S.CLOSE,
        8: S.CLOSE_WAIT,
        9: S.LAST_ACK,
        10: S.LISTEN,
        11: S.CLOSING,
        12: S.NEW_SYN_RECV,
        13: S.BOUND_INACTIVE,
    }
)

# UDP and raw sockets reuse TCP's codes: unconnected is TCP_CLOSE, connected is
# TCP_ESTABLISHED; ss prints them as UNCONN and ESTAB.
DGRAM_STATES: Mapping[int, SocketState] = MappingProxyType({7: S.CLOSE, 1: S.ESTABLISHED})

STATES_BY_PROTOCOL: Mapping[Protocol, Mapping[int, SocketState]] = MappingProxyType(
    {Protocol.TCP: TCP_STATES, Protocol.UDP: DGRAM_STATES, Protocol.RAW: DGRAM_STATES}
)

# /proc/net/unix "Type" column (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET).
UNIX_TYPES: Mapping[int, str] = MappingProxyType({1: "stream", 2: "dgram", 5: "seqpacket"})

# /proc/net/unix "St" column: the socket's SS_* state. A listening socket is
# SS_UNCONNECTED with __SO_ACCEPTCON in its flags.
UNIX_STATES: Mapping[int, SocketState] = MappingProxyType(
    {1: S.CLOSE, 2: S.CONNECTING, 3: S.ESTABLISHED, 4: S.DISCONNECTING}
)
UNIX_ACCEPTCON = 0x10000

# Which file holds which table; the I/O layer and error messages share this.
INET_TABLE_FILES: Mapping[tuple[Protocol, Family], str] = MappingProxyType(
    {
        (Protocol.TCP, Family.INET): "tcp",
        (Protocol.TCP, Family.INET6): "tcp6",
        (Protocol.UDP, Family.INET): "udp",
        (Protocol.UDP, Family.INET6): "udp6",
        (Protocol.RAW, Family.INET): "raw",
        (Protocol.RAW, Family.INET6): "raw6",
    }
)

_HEX_LEN = MappingProxyType({Family.INET: 8, Family.INET6: 32})

# Busy hosts repeat the same few addresses and endpoints thousands of times;
# decoding each once keeps parsing linear in distinct values. Bounded so a
# host with a million peers does not grow them without end.
_CACHE_LIMIT = 1 << 16
_addresses: dict[str, IPv4Address | IPv6Address] = {}
_endpoints: dict[str, Endpoint] = {}


class _Malformed(ValueError):
    """A field failed validation; turned into ParseError with file and line."""


def decode_address(word: str, family: Family) -> IPv4Address | IPv6Address:
    """Decode the kernel's hex address (``0100007F`` is 127.0.0.1)."""
    address = _addresses.get(word)
    if address is not None and len(word) == _HEX_LEN[family]:
        return address
    if len(word) != _HEX_LEN[family]:
        raise _Malformed(f"address {word!r} is not {_HEX_LEN[family]} hex digits")
    raw = bytes.fromhex(word)
    if family is Family.INET:
        address = IPv4Address(raw[::-1])
    else:
        # Four 32-bit words, each little-endian: reverse bytes within each word.
        address = IPv6Address(raw[3::-1] + raw[7:3:-1] + raw[11:7:-1] + raw[15:11:-1])
    if len(_addresses) >= _CACHE_LIMIT:
        _addresses.clear()
    _addresses[word] = address
    return address


def decode_endpoint(field: str, family: Family) -> Endpoint:
    """Decode ``ADDR:PORT`` as the kernel prints it (``0100007F:0050`` is 127.0.0.1:80)."""
    endpoint = _endpoints.get(field)
    if endpoint is not None and len(field) == _HEX_LEN[family] + 5:
        return endpoint
    word, colon, port_hex = field.partition(":")
    if not colon or len(port_hex) != 4:
        raise _Malformed(f"endpoint {field!r} is not ADDR:PORT with a 4-digit hex port")
    endpoint = Endpoint(decode_address(word, family), int.from_bytes(bytes.fromhex(port_hex)))
    if len(_endpoints) >= _CACHE_LIMIT:
        _endpoints.clear()
    _endpoints[field] = endpoint
    return endpoint


def _hex_int(field: str, what: str) -> int:
    if not field or len(field) > 16:
        raise _Malformed(f"{what} {field!r} is not a hex number")
    return int.from_bytes(bytes.fromhex(field.zfill(len(field) + len(field) % 2)))


def _dec_int(field: str, what: str) -> int:
    if not field.isascii() or not field.isdigit():
        raise _Malformed(f"{what} {field!r} is not a decimal number")
    return int(field)


def parse_inet_line(
    line: str, protocol: Protocol, family: Family, *, source: str = "?", lineno: int = 0
) -> Socket:
    """Parse one data line of ``/proc/net/{tcp,udp,raw}[6]``.

    Columns used: local and remote ``ADDR:PORT``, state, ``tx:rx`` queues, uid,
    inode. For raw sockets the "port" is the IP protocol number, as in ``ss -w``.
    """
    try:
        fields = line.split()
        if len(fields) < 10:
            raise _Malformed(f"expected at least 10 columns, got {len(fields)}")
        if not fields[0].endswith(":"):
            raise _Malformed(f"slot {fields[0]!r} does not end with ':'")
        state_code = _hex_int(fields[3], "state")
        state = STATES_BY_PROTOCOL[protocol].get(state_code)
        if state is None:
            raise _Malformed(f"unknown {protocol} state code {fields[3]!r}")
        tx_hex, colon, rx_hex = fields[4].partition(":")
        if not colon:
            raise _Malformed(f"queues {fields[4]!r} are not TX:RX")
        return Socket(
            protocol,
            family,
            decode_endpoint(fields[1], family),
            decode_endpoint(fields[2], family),
            state,
            _dec_int(fields[9], "inode"),
            _dec_int(fields[7], "uid"),
            _hex_int(rx_hex, "rx queue"),
            _hex_int(tx_hex, "tx queue"),
        )
    except (ValueError, KeyError) as exc:
        raise ParseError(
            f"bad socket line {line.strip()!r}: {exc}", source=source, line=lineno
        ) from None


def parse_inet_table(
    text: str, protocol: Protocol, family: Family, *, source: str = "?"
) -> list[Socket]:
    """Parse a whole ``/proc/net/{tcp,udp,raw}[6]`` file: a header line, then one socket a line."""
    lines = text.splitlines()
    if lines and not lines[0].lstrip().startswith("sl"):
        raise ParseError(
            f"header {lines[0].strip()[:60]!r} does not start with 'sl'", source=source, line=1
        )
    return [
        parse_inet_line(line, protocol, family, source=source, lineno=number)
        for number, line in enumerate(lines[1:], start=2)
        if line.strip()
    ]


def parse_unix_line(line: str, *, source: str = "?", lineno: int = 0) -> UnixSocket:
    """Parse one data line of ``/proc/net/unix``.

    ``Num RefCount Protocol Flags Type St Inode [Path]``; the path may hold
    spaces, abstract names start with ``@``, unnamed sockets have none.
    """
    try:
        fields = line.rstrip("\n").split(None, 7)
        if len(fields) < 7:
            raise _Malformed(f"expected at least 7 columns, got {len(fields)}")
        if not fields[0].endswith(":"):
            raise _Malformed(f"slot {fields[0]!r} does not end with ':'")
        flags = _hex_int(fields[3], "flags")
        type_code = _hex_int(fields[4], "type")
        kind = UNIX_TYPES.get(type_code)
        if kind is None:
            raise _Malformed(f"unknown unix socket type {fields[4]!r}")
        state = UNIX_STATES.get(_hex_int(fields[5], "state"))
        if state is None:
            raise _Malformed(f"unknown unix socket state {fields[5]!r}")
        if state is S.CLOSE and flags & UNIX_ACCEPTCON:
            state = S.LISTEN
        path = fields[7] if len(fields) == 8 else None
        return UnixSocket(
            path,
            kind,
            state,
            _dec_int(fields[6], "inode"),
            flags,
            _hex_int(fields[1], "refcount"),
        )
    except ValueError as exc:
        raise ParseError(
            f"bad unix socket line {line.strip()!r}: {exc}", source=source, line=lineno
        ) from None


def parse_unix_table(text: str, *, source: str = "?") -> list[UnixSocket]:
    """Parse a whole ``/proc/net/unix`` file (a ``Num ...`` header, then one socket a line)."""
    lines = text.splitlines()
    if lines and not lines[0].lstrip().startswith("Num"):
        raise ParseError(
            f"header {lines[0].strip()[:60]!r} does not start with 'Num'", source=source, line=1
        )
    return [
        parse_unix_line(line, source=source, lineno=number)
        for number, line in enumerate(lines[1:], start=2)
        if line.strip()
    ]
