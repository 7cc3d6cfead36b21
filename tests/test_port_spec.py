"""parse_ports and PortList: nmap's -p syntax, every accepted form and every error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.errors import PortSpecError
from portlib.model import Protocol
from portlib.portspec import PortList, parse_ports
from portlib.services import service_port, top_ports

ALL = tuple(range(1, 65536))


@pytest.mark.parametrize(
    ("spec", "tcp", "udp"),
    [
        ("22", (22,), (22,)),
        ("22,80,1000-1003", (22, 80, 1000, 1001, 1002, 1003), (22, 80, 1000, 1001, 1002, 1003)),
        ("-", ALL, ALL),
        ("65530-", tuple(range(65530, 65536)), tuple(range(65530, 65536))),
        ("-5", (1, 2, 3, 4, 5), (1, 2, 3, 4, 5)),  # an open start is 1, not 0
        ("0", (0,), (0,)),  # port 0 when named
        ("0-3", (0, 1, 2, 3), (0, 1, 2, 3)),
        ("T:80,443,U:53,161", (80, 443), (53, 161)),
        ("U:53,T:80", (80,), (53,)),
        ("22,T:80,U:53", (22, 80), (22, 53)),  # unprefixed ports are for both
        ("t:80,u:53", (80,), (53,)),
        ("T:,80", (80,), ()),
        ("T:1-3,U:-2", (1, 2, 3), (1, 2)),
        ("443,80,443,80-81", (443, 80, 81), (443, 80, 81)),  # user order, no duplicates
        (" 22 , 80 ", (22, 80), (22, 80)),
        ("65535", (65535,), (65535,)),
    ],
)
def test_accepted_forms(spec: str, tcp: tuple[int, ...], udp: tuple[int, ...]) -> None:
    ports = parse_ports(spec)
    assert ports == PortList(tcp=tcp, udp=udp)


def test_service_names() -> None:
    ports = parse_ports("http,ssh")
    assert ports.tcp == (80, 22)
    assert ports.udp == (service_port("http", "udp"), service_port("ssh", "udp"))
    # Names follow the prefix in force, and a name only one protocol knows stays there.
    assert parse_ports("T:https,U:snmp") == PortList(tcp=(443,), udp=(161,))
    assert parse_ports("U:domain,T:domain") == PortList(tcp=(53,), udp=(53,))
    assert parse_ports("WWW").tcp == (80,)  # aliases, any case


def test_name_known_to_one_protocol_only() -> None:
    # nmap's table has http-proxy (8080) for TCP only and bootps (67) for UDP only.
    assert parse_ports("http-proxy") == PortList(tcp=(8080,), udp=())
    assert parse_ports("bootps,http-proxy") == PortList(tcp=(8080,), udp=(67,))
    with pytest.raises(PortSpecError, match=r"bad port spec 'U:http-proxy'.*udp") as caught:
        parse_ports("U:http-proxy")
    assert "8080/tcp" in str(caught.value)  # the registry says where it does exist


def test_int_and_iterable_specs() -> None:
    assert parse_ports(80) == PortList(tcp=(80,), udp=(80,))
    assert parse_ports([443, 80, 443]) == PortList(tcp=(443, 80), udp=(443, 80))
    assert parse_ports(range(1, 4)).tcp == (1, 2, 3)
    assert parse_ports((0,)).tcp == (0,)


def test_none_means_top_1000() -> None:
    ports = parse_ports(None)
    assert ports.tcp == top_ports(1000, "tcp") and ports.udp == top_ports(1000, "udp")
    assert len(ports.tcp) == 1000 and 80 in ports.tcp and 53 in ports.udp


BAD_SPECS = [
    ("65536", "65536", "port 65536 is out of range 0-65535"),
    ("22,99999", "99999", "port 99999 is out of range"),
    ("10-5", "10-5", "range 10-5 is reversed"),
    ("1-2-3", "1-2-3", "not a port or a range"),
    ("abc", "abc", "unknown service name 'abc'"),
    ("22,nosuchservice", "nosuchservice", "unknown service name"),
    ("U:", "U:", "protocol prefix 'U:' has no ports"),
    ("U:53,T:", "T:", "protocol prefix 'T:' has no ports"),
    ("T:U:53", "T:U:53", "not a port"),
    ("22,,80", "22,,80", "empty item"),
    ("22,", "22,", "empty item"),
    ("S:80", "S:80", "SCTP"),
    ("P:6", "P:6", "IP protocol numbers"),
    ("X:80", "X:80", "unknown protocol prefix 'X:'"),
    ("http*", "http*", "wildcards"),
    ("22 80", "22 80", "not a port"),
    ("٣", "٣", "not a port"),
    ("-1", "-1", None),  # an open range ending at 1 is fine: handled below
]


@pytest.mark.parametrize(("spec", "part", "fragment"), [b for b in BAD_SPECS if b[2]])
def test_bad_specs_name_the_part(spec: str, part: str, fragment: str) -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports(spec)
    message = str(caught.value)
    assert f"bad port spec {part!r}" in message
    assert fragment in message


def test_open_range_to_one_is_port_one() -> None:
    assert parse_ports("-1").tcp == (1,)


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec(spec: str) -> None:
    with pytest.raises(PortSpecError, match="empty port specification"):
        parse_ports(spec)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ([], "empty port list"),
        ([70000], "out of range"),
        ([-1], "out of range"),
        ([True], "integers"),
        (["80"], "integers"),
        (True, "spec string"),
        (3.5, "spec string"),
        (b"80", "spec string"),
    ],
)
def test_bad_non_string_specs(spec: Any, fragment: str) -> None:
    with pytest.raises(PortSpecError, match=fragment):
        parse_ports(spec)


def test_port_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_ports("65536")


def test_portlist_helpers() -> None:
    ports = parse_ports("T:22,80,U:53")
    assert ports.for_protocol("tcp") == (22, 80)
    assert ports.for_protocol(Protocol.UDP) == (53,)
    assert ports.protocols == (Protocol.TCP, Protocol.UDP)
    assert parse_ports("U:53").protocols == (Protocol.UDP,)
    assert len(ports) == 3 and bool(ports)
    assert not PortList() and len(PortList()) == 0
    with pytest.raises(PortSpecError, match="unknown protocol"):
        ports.for_protocol("sctp")
    with pytest.raises(AttributeError):
        ports.tcp = ()  # type: ignore[misc]


def test_to_spec_is_compact() -> None:
    assert parse_ports("T:25,22-24,80,U:53").to_spec() == "T:22-25,80,U:53"
    assert parse_ports("-").to_spec() == "T:1-65535,U:1-65535"


# ------------------------------------------------------------------ properties


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=30),
        st.text(alphabet="0123456789,-TUSP: tu", max_size=30),
    )
)
def test_property_any_text_parses_or_raises_port_error(text: str) -> None:
    try:
        ports = parse_ports(text)
    except PortSpecError:
        return
    assert ports  # a spec that parses always names at least one port
    assert all(0 <= p <= 65535 for p in ports.tcp + ports.udp)
    assert len(set(ports.tcp)) == len(ports.tcp) and len(set(ports.udp)) == len(ports.udp)


port_numbers = st.integers(min_value=0, max_value=65535)


@settings(max_examples=200, deadline=None)
@given(st.lists(port_numbers, min_size=1, max_size=30))
def test_property_order_kept_duplicates_collapse(numbers: list[int]) -> None:
    ports = parse_ports(",".join(map(str, numbers)))
    expected = tuple(dict.fromkeys(numbers))
    assert ports == PortList(tcp=expected, udp=expected)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(port_numbers, port_numbers), min_size=1, max_size=8),
    st.sampled_from(["", "T:", "U:"]),
)
def test_property_ranges(pairs: list[tuple[int, int]], prefix: str) -> None:
    spec = prefix + ",".join(f"{min(a, b)}-{max(a, b)}" for a, b in pairs)
    expected = tuple(dict.fromkeys(p for a, b in pairs for p in range(min(a, b), max(a, b) + 1)))
    ports = parse_ports(spec)
    assert ports.tcp == (expected if prefix != "U:" else ())
    assert ports.udp == (expected if prefix != "T:" else ())


@settings(max_examples=200, deadline=None)
@given(st.sets(port_numbers, max_size=50), st.sets(port_numbers, max_size=50))
def test_property_to_spec_round_trips(tcp: set[int], udp: set[int]) -> None:
    ports = PortList(tcp=tuple(sorted(tcp)), udp=tuple(sorted(udp)))
    if not ports:
        assert ports.to_spec() == ""
        return
    again = parse_ports(ports.to_spec())
    assert again == ports
