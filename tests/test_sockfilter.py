"""ss's filter language: parsing, errors, Python evaluation and the kernel bytecode (pure parts).

The bytecode is checked against a model of the kernel's own checker and
interpreter (net/ipv4/inet_diag.c: ``inet_diag_bc_audit`` and
``inet_diag_bc_run``) written here from their documented behaviour; the live
tests (test_sockfilter_live.py) then check the real kernel agrees.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.errors import SocketQueryError
from portlib.model import Endpoint, Family, Protocol, Socket, SocketState, UnixSocket
from portlib.socktable import parse_socket_filter
from portlib.socktable.bytecode import compile_expression, state_mask
from portlib.socktable.filterparse import FilterSyntaxError, parse_filter
from portlib.socktable.filters import (
    AddressMatch,
    And,
    Comparison,
    Expression,
    Not,
    Or,
    PortMatch,
    Side,
    SocketFilter,
    dport,
    dst,
    matches,
    sport,
    src,
    ss_states,
)

S = SocketState


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dport = :443", PortMatch(Side.DESTINATION, Comparison.EQ, 443)),
        ("dport :443", PortMatch(Side.DESTINATION, Comparison.EQ, 443)),
        ("dport eq 443", PortMatch(Side.DESTINATION, Comparison.EQ, 443)),
        ("sport != :22", PortMatch(Side.SOURCE, Comparison.NE, 22)),
        ("sport neq :22", PortMatch(Side.SOURCE, Comparison.NE, 22)),
        ("sport ne :22", PortMatch(Side.SOURCE, Comparison.NE, 22)),
        ("dport > :1024", PortMatch(Side.DESTINATION, Comparison.GT, 1024)),
        ("dport gt :1024", PortMatch(Side.DESTINATION, Comparison.GT, 1024)),
        ("dport >= :1024", PortMatch(Side.DESTINATION, Comparison.GE, 1024)),
        ("dport geq :1024", PortMatch(Side.DESTINATION, Comparison.GE, 1024)),
        ("dport ge :1024", PortMatch(Side.DESTINATION, Comparison.GE, 1024)),
        ("dport < :1024", PortMatch(Side.DESTINATION, Comparison.LT, 1024)),
        ("dport lt :1024", PortMatch(Side.DESTINATION, Comparison.LT, 1024)),
        ("dport <= :1024", PortMatch(Side.DESTINATION, Comparison.LE, 1024)),
        ("dport le :1024", PortMatch(Side.DESTINATION, Comparison.LE, 1024)),
        ("dport leq :1024", PortMatch(Side.DESTINATION, Comparison.LE, 1024)),
        ("dport == :ssh", PortMatch(Side.DESTINATION, Comparison.EQ, 22)),
        ("dst 127.0.0.1", AddressMatch(Side.DESTINATION, ip_network("127.0.0.1/32"))),
        ("dst = 10.0.0.0/8", AddressMatch(Side.DESTINATION, ip_network("10.0.0.0/8"))),
        ("dst 10.1.2.3/8", AddressMatch(Side.DESTINATION, ip_network("10.0.0.0/8"))),
        ("src 127.0.0.1:80", AddressMatch(Side.SOURCE, ip_network("127.0.0.1/32"), 80)),
        ("src *:80", AddressMatch(Side.SOURCE, None, 80)),
        ("src :80", AddressMatch(Side.SOURCE, None, 80)),
        ("src *", AddressMatch(Side.SOURCE)),
        ("dst [::1]:443", AddressMatch(Side.DESTINATION, ip_network("::1/128"), 443)),
        ("dst [2001:db8::/32]", AddressMatch(Side.DESTINATION, ip_network("2001:db8::/32"))),
        ("dst ::1", AddressMatch(Side.DESTINATION, ip_network("::1/128"))),
        ("dst inet6:[::1]", AddressMatch(Side.DESTINATION, ip_network("::1/128"))),
        ("dst inet:127.0.0.1", AddressMatch(Side.DESTINATION, ip_network("127.0.0.1/32"))),
        ("dst != 127.0.0.1", Not(AddressMatch(Side.DESTINATION, ip_network("127.0.0.1/32")))),
        ("not dport = :1", Not(PortMatch(Side.DESTINATION, Comparison.EQ, 1))),
        ("! dport = :1", Not(PortMatch(Side.DESTINATION, Comparison.EQ, 1))),
    ],
)
def test_predicates(text: str, expected: Expression) -> None:
    assert parse_socket_filter(text).expression == expected


def p(port: int) -> PortMatch:
    return PortMatch(Side.SOURCE, Comparison.EQ, port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sport = :1 sport = :2", And((p(1), p(2)))),  # no operator means and
        ("sport = :1 & sport = :2 && sport = :3", And((p(1), p(2), p(3)))),
        ("sport = :1 | sport = :2 || sport = :3", Or((p(1), p(2), p(3)))),
        # ss reads and/or left to right with equal weight (its grammar; checked against ss
        # itself in the live tests), whatever its manual says.
        ("sport = :1 or sport = :2 and sport = :3", And((Or((p(1), p(2))), p(3)))),
        ("sport = :1 and sport = :2 or sport = :3", Or((And((p(1), p(2))), p(3)))),
        ("sport = :1 or ( sport = :2 and sport = :3 )", Or((p(1), And((p(2), p(3)))))),
        ("(sport = :1 or sport = :2)", Or((p(1), p(2)))),  # brackets may touch words
        ("not sport = :1 and sport = :2", And((Not(p(1)), p(2)))),
        ("not ( sport = :1 and sport = :2 )", Not(And((p(1), p(2))))),
    ],
)
def test_grouping(text: str, expected: Expression) -> None:
    assert parse_socket_filter(text).expression == expected


def test_words_may_come_as_command_line_arguments() -> None:
    words = ["state", "established", "( dport = :443 or dport = :80 )"]
    assert parse_filter(words) == parse_filter(" ".join(words))


@pytest.mark.parametrize(
    ("text", "states"),
    [
        ("state established", {S.ESTABLISHED}),
        ("state listening state unconnected", {S.LISTEN, S.CLOSE}),
        ("state closed", {S.CLOSE}),
        ("state syn-recv", {S.SYN_RECV, S.NEW_SYN_RECV}),
        ("state SYN-RCV", {S.SYN_RECV, S.NEW_SYN_RECV}),
        ("state bucket", {S.SYN_RECV, S.NEW_SYN_RECV, S.TIME_WAIT}),
        ("exclude listening exclude unconnected", ss_states("connected")),
        ("state all exclude time-wait", ss_states("all") - {S.TIME_WAIT}),
        ("excl all", set()),
        ("state bound-inactive", {S.BOUND_INACTIVE}),
    ],
)
def test_states(text: str, states: set[SocketState]) -> None:
    assert parse_socket_filter(text).states == states


def test_state_groups_are_ss_groups() -> None:
    every = ss_states("all")
    assert S.BOUND_INACTIVE not in every  # ss -a and /proc leave those out (ss 6.1)
    assert ss_states("connected") == every - {S.LISTEN, S.CLOSE}
    assert ss_states("synchronized") == ss_states("connected") - {S.SYN_SENT}
    assert ss_states("big") == every - ss_states("bucket")
    assert ss_states("established", "time-wait") == {S.ESTABLISHED, S.TIME_WAIT}


@pytest.mark.parametrize(
    ("text", "token", "column", "words"),
    [
        ("state establised", "establised", 7, "unknown state"),
        ("dport = :nosuchservice", ":nosuchservice", 9, "unknown service"),
        ("dst 300.1.1.1", "300.1.1.1", 5, "IP address"),
        ("dst localhost", "localhost", 5, "not looked up"),
        ("dport = :70000", ":70000", 9, "at most 65535"),
        ("( dport = :1", None, 13, "expected ')'"),
        ("dport = :1 )", ")", 12, "unexpected ')'"),
        ("dst > 127.0.0.1", ">", 5, "= or !="),
        ("dev eth0", "dev", 1, "not supported"),
        ("dport = :1 state listening", "state", 12, "states come first"),
        ("dport=:443", "dport=:443", 1, "put blanks around"),
        ("dport", None, 6, "expected a port"),
        ("dst [::1", "[::1", 5, "expected ']'"),
        ("dst inet:[::1]", "inet:[::1]", 5, "not an inet address"),
        ("dst unix:/run/x", "unix:/run/x", 5, "only inet"),
        ("dport = *", "*", 9, "not '*'"),
    ],
)
def test_errors_point_at_the_word(text: str, token: str | None, column: int, words: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_socket_filter(text)
    assert (info.value.token, info.value.column) == (token, column)
    assert words in str(info.value) and text in str(info.value)
    assert isinstance(info.value, SocketQueryError)


@given(
    st.text(alphabet=st.sampled_from(list("dstporne=!<>:*()[]0123456789.:/ abclqg")), max_size=40)
)
@settings(max_examples=400, deadline=None)
def test_any_text_parses_or_raises_filter_syntax_error(text: str) -> None:
    try:
        result = parse_filter(text)
    except FilterSyntaxError:
        return
    assert isinstance(result, SocketFilter)
    assert parse_filter(str(result)) == result


# -- random expressions ---------------------------------------------------------------------

PORTS = st.sampled_from([0, 1, 22, 80, 443, 1023, 1024, 8000, 40000, 65535])
NETWORKS = st.sampled_from(
    [
        ip_network("127.0.0.1/32"),
        ip_network("127.0.0.0/8"),
        ip_network("0.0.0.0/0"),
        ip_network("10.0.0.0/9"),
        ip_network("::1/128"),
        ip_network("::/0"),
        ip_network("2001:db8::/33"),
        ip_network("::ffff:127.0.0.1/128"),
    ]
)
SIDES = st.sampled_from(list(Side))
LEAVES = st.one_of(
    st.builds(PortMatch, SIDES, st.sampled_from(list(Comparison)), PORTS),
    st.builds(AddressMatch, SIDES, st.none() | NETWORKS, st.none() | PORTS),
)


def _combine(children: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
    pairs = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda t: Not(t), children),
        pairs.map(lambda ab: ab[0] & ab[1]),
        pairs.map(lambda ab: ab[0] | ab[1]),
    )


EXPRESSIONS = st.recursive(LEAVES, _combine, max_leaves=8)
SINGLE_STATES = ["established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait"]
SINGLE_STATES += ["unconnected", "close-wait", "last-ack", "listening", "closing"]
STATE_SETS = st.none() | st.lists(st.sampled_from(SINGLE_STATES), min_size=1).map(
    lambda names: ss_states(*names)
)


@given(EXPRESSIONS, STATE_SETS)
@settings(max_examples=300, deadline=None)
def test_text_round_trip(expression: Expression, states: frozenset[SocketState] | None) -> None:
    made = SocketFilter(expression, states)
    assert parse_filter(str(made)) == made


ADDRESSES = st.sampled_from(
    [
        "127.0.0.1",
        "127.0.0.2",
        "10.1.2.3",
        "0.0.0.0",
        "192.0.2.1",
        "::1",
        "::",
        "2001:db8::5",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "fe80::1",
    ]
)


@st.composite
def sockets(draw: st.DrawFn) -> Socket:
    local, remote = ip_address(draw(ADDRESSES)), ip_address(draw(ADDRESSES))
    if local.version != remote.version:
        remote = ip_address("::") if local.version == 6 else ip_address("0.0.0.0")
    family = Family.INET6 if local.version == 6 else Family.INET
    state = draw(st.sampled_from([S.ESTABLISHED, S.LISTEN, S.TIME_WAIT, S.CLOSE]))
    return Socket(
        Protocol.TCP,
        family,
        Endpoint(local, draw(PORTS)),
        Endpoint(remote, draw(PORTS)),
        state,
        1,
        0,
        0,
        0,
    )


# A model of the kernel's checker and interpreter, written from inet_diag.c's behaviour.
_OP = struct.Struct("=BBH")
_HOST = struct.Struct("=BBxxi")


def kernel_audit(program: bytes) -> bool:
    def valid_target(target: int) -> bool:  # lands on an op reached by yes-steps, or the end
        at = 0
        while at < target:
            yes = _OP.unpack_from(program, at)[1]
            if yes < 4 or yes % 4:
                return False
            at += yes
        return at == target

    at = 0
    while at < len(program):
        left = len(program) - at
        code, yes, no = _OP.unpack_from(program, at)
        size = {7: 12, 8: 12, 2: 8, 3: 8, 4: 8, 5: 8, 1: 4}.get(code)
        if size is None:
            return False
        if code in (7, 8):
            family, prefix, _port = _HOST.unpack_from(program, at + 4)
            address = {0: 0, 2: 4, 10: 16}.get(family)
            if address is None or prefix > 8 * address:
                return False
            size += address
        if no < size or no > left + 4 or no % 4 or (no < left and not valid_target(at + no)):
            return False
        if yes < size or yes > left + 4 or yes % 4:
            return False
        at += yes
    return at == len(program)


def _bits(address: IPv4Address | IPv6Address) -> bytes:
    return address.packed


def _prefix_match(have: bytes, want: bytes, prefix: int) -> bool:
    full, rest = divmod(prefix, 8)
    if have[:full] != want[:full]:
        return False
    mask = (0xFF << (8 - rest)) & 0xFF
    return rest == 0 or (have[full] & mask) == (want[full] & mask)


def kernel_run(program: bytes, sock: Socket) -> bool:
    at, left = 0, len(program)
    while left > 0:
        code, yes_step, no_step = _OP.unpack_from(program, at)
        if code == 1:
            ok = False
        elif code in (2, 3, 4, 5):
            value = _OP.unpack_from(program, at + 4)[2]
            port = sock.local.port if code in (2, 3) else sock.remote.port
            ok = port >= value if code in (2, 4) else port <= value
        else:
            family, prefix, port = _HOST.unpack_from(program, at + 4)
            end = sock.local if code == 7 else sock.remote
            want = program[at + 12 : at + 12 + {0: 0, 2: 4, 10: 16}[family]]
            ok = True
            if port != -1 and port != end.port:
                ok = False
            elif family:
                have = _bits(end.address)
                own = 2 if sock.family is Family.INET else 10
                if family != own:
                    mapped = own == 10 and family == 2 and have[:12] == bytes(10) + b"\xff\xff"
                    ok = mapped and _prefix_match(have[12:], want, prefix)
                elif prefix:
                    ok = _prefix_match(have, want, prefix)
        step = yes_step if ok else no_step
        at, left = at + step, left - step
    return left == 0


@given(EXPRESSIONS, st.lists(sockets(), min_size=1, max_size=6))
@settings(max_examples=400, deadline=None)
def test_bytecode_agrees_with_python(expression: Expression, found: list[Socket]) -> None:
    program = compile_expression(expression)
    assert kernel_audit(program)
    socket_filter = SocketFilter(expression)
    for sock in found:
        assert kernel_run(program, sock) == matches(socket_filter, sock), (str(expression), sock)


def test_bytecode_of_known_filters() -> None:
    def ops(program: bytes) -> list[tuple[int, int, int]]:
        found, at = [], 0
        while at < len(program):
            op = _OP.unpack_from(program, at)
            found.append(op)
            at += op[1]
        return found

    # dport = :443 is one host condition on any address; a false answer rejects (end + 4).
    assert ops(compile_expression(dport(443))) == [(8, 12, 16)]
    # sport >= :1 and sport < :100: the second test is negated, so its false branch accepts.
    program = compile_expression(sport(">=", 1) & sport("<", 100))
    assert ops(program) == [(2, 8, 24), (2, 8, 12), (1, 4, 8)]
    # a or b: a's true branch jumps over b.
    assert ops(compile_expression(dport(1) | dport(2))) == [(8, 12, 16), (1, 4, 16), (8, 12, 16)]


# -- Python evaluation, by the kernel's rules -------------------------------------------------


def tcp(
    local: str, lport: int, remote: str, rport: int, state: SocketState = S.ESTABLISHED
) -> Socket:
    family = Family.INET6 if ":" in local else Family.INET
    return Socket(
        Protocol.TCP,
        family,
        Endpoint(ip_address(local), lport),
        Endpoint(ip_address(remote), rport),
        state,
        1,
        0,
        0,
        0,
    )


def test_ipv4_networks_match_mapped_addresses_as_the_kernel_does() -> None:
    mapped = tcp("::ffff:127.0.0.1", 80, "::ffff:10.0.0.7", 5000)
    assert matches(SocketFilter(dst("10.0.0.0/8")), mapped)
    assert matches(SocketFilter(src("127.0.0.1", 80)), mapped)
    assert not matches(SocketFilter(dst("::1")), tcp("127.0.0.1", 1, "127.0.0.1", 2))
    assert not matches(SocketFilter(dst("0.0.0.0/0")), tcp("::1", 1, "::1", 2))
    assert matches(SocketFilter(dst()), tcp("::1", 1, "::1", 2))


def test_states_and_unix_sockets() -> None:
    listen = tcp("0.0.0.0", 22, "0.0.0.0", 0, S.LISTEN)
    assert matches(parse_socket_filter("state listening"), listen)
    assert not matches(parse_socket_filter("state connected"), listen)
    unix = UnixSocket("/run/x", "stream", S.CONNECTING, 5, 0, 1)
    # ss files a connecting unix socket under syn-sent; address predicates are false on it.
    assert matches(parse_socket_filter("state syn-sent"), unix)
    assert not matches(parse_socket_filter("dport = :1"), unix)
    assert matches(parse_socket_filter("not dport = :1"), unix)


def test_builders() -> None:
    assert dport(443) == PortMatch(Side.DESTINATION, Comparison.EQ, 443)
    assert sport(">=", 1024) == PortMatch(Side.SOURCE, Comparison.GE, 1024)
    assert dst("10.0.0.0/8", 53) == AddressMatch(Side.DESTINATION, IPv4Network("10.0.0.0/8"), 53)
    assert src(IPv6Address("::1")) == AddressMatch(Side.SOURCE, IPv6Network("::1/128"))
    made = (dport(443) | dport(80)) & ~dst("10.0.0.0/8")
    assert str(SocketFilter(made, ss_states("established"))) == (
        "state established ( dport = :443 or dport = :80 ) and not dst 10.0.0.0/8"
    )
    with pytest.raises(SocketQueryError, match="0-65535"):
        dport(70000)
    with pytest.raises(SocketQueryError, match="comparison"):
        dport("~", 1)
    with pytest.raises(SocketQueryError, match="bad address"):
        dst("nope")
    with pytest.raises(SocketQueryError, match="unknown socket state"):
        ss_states("nope")


def test_state_mask_uses_kernel_codes() -> None:
    assert state_mask(frozenset({S.ESTABLISHED, S.LISTEN})) == (1 << 1) | (1 << 10)
    assert state_mask(ss_states("syn-recv")) == 1 << 3  # the kernel adds request sockets
