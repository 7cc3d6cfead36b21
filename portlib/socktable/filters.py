"""ss's socket filters as typed values: what ``state established '( dport = :443 )'`` means.

A :class:`SocketFilter` holds the states to keep and an expression over the
four values the kernel's inet_diag filter sees: the source (local) and
destination (remote) address and port. Expressions are built from
:class:`AddressMatch` (``dst 10.0.0.0/8``, ``src *:80``) and :class:`PortMatch`
(``dport >= :1024``), joined with ``&``, ``|`` and ``~``:

    >>> from portlib.socktable.filters import dport, dst, ss_states, SocketFilter
    >>> f = SocketFilter((dport(443) | dport(80)) & ~dst("10.0.0.0/8"), ss_states("established"))
    >>> str(f)
    'state established ( dport = :443 or dport = :80 ) and not dst 10.0.0.0/8'

:func:`matches` evaluates a filter in Python with the kernel's rules (used
where the kernel cannot filter: ``/proc`` and raw sockets); bytecode.py compiles
the same expression for the kernel. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from types import MappingProxyType
from typing import Union, cast

from portlib.errors import SocketQueryError
from portlib.model import Socket, SocketState, UnixSocket

S = SocketState
IPNetwork = IPv4Network | IPv6Network


class Side(StrEnum):
    """Which end of a socket a predicate looks at, in ss's words."""

    SOURCE = "src"  # the local end
    DESTINATION = "dst"  # the remote end


class Comparison(StrEnum):
    """How a port predicate compares: ss's operators."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class _Combinable:
    """``a & b``, ``a | b`` and ``~a`` for every expression node."""

    __slots__ = ()

    def __and__(self, other: Expression) -> And:
        return And(flatten(And, (cast("Expression", self), other)))

    def __or__(self, other: Expression) -> Or:
        return Or(flatten(Or, (cast("Expression", self), other)))

    def __invert__(self) -> Not:
        return Not(cast("Expression", self))


@dataclass(frozen=True, slots=True)
class AddressMatch(_Combinable):
    """``dst NET[:PORT]`` / ``src ...``: the address lies in ``network``, the port is ``port``.

    ``None`` matches anything (ss's ``*``). An IPv4 network also matches the
    IPv4-mapped addresses of IPv6 sockets, as the kernel's filter does.
    """

    side: Side
    network: IPNetwork | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.network is None:
            host = "*"
        elif self.network.prefixlen == self.network.max_prefixlen:
            host = str(self.network.network_address)
        else:
            host = str(self.network)
        if self.network is not None and self.network.version == 6 and self.port is not None:
            host = f"[{host}]"
        if self.port is not None:
            host = f"{'' if host == '*' else host}:{self.port}"
        return f"{self.side} {host}"


@dataclass(frozen=True, slots=True)
class PortMatch(_Combinable):
    """``dport >= :1024`` / ``sport = :22``: one end's port compared with ``port``."""

    side: Side
    op: Comparison
    port: int

    def __str__(self) -> str:
        return f"{self.side.value[0]}port {self.op} :{self.port}"


@dataclass(frozen=True, slots=True)
class Not(_Combinable):
    """``not TERM``."""

    term: Expression

    def __str__(self) -> str:
        return f"not {_grouped(self.term)}"


@dataclass(frozen=True, slots=True)
class And(_Combinable):
    """Every term holds (ss: ``and``, ``&``, ``&&`` or nothing between terms)."""

    terms: tuple[Expression, ...]

    def __str__(self) -> str:
        return " and ".join(_grouped(t) for t in self.terms)


@dataclass(frozen=True, slots=True)
class Or(_Combinable):
    """Some term holds (ss: ``or``, ``|``, ``||``)."""

    terms: tuple[Expression, ...]

    def __str__(self) -> str:
        return " or ".join(_grouped(t) for t in self.terms)


Expression = Union[AddressMatch, PortMatch, Not, And, Or]  # noqa: UP007 (a runtime alias)


def _grouped(term: Expression) -> str:
    # ss reads `and` and `or` left to right with equal weight: nested ones need brackets.
    return f"( {term} )" if isinstance(term, And | Or) else str(term)


def flatten(kind: type[And] | type[Or], terms: Iterable[Expression]) -> tuple[Expression, ...]:
    """The terms of an ``and`` (or ``or``), with nested ones of the same kind spread out."""
    flat: list[Expression] = []
    for term in terms:
        flat.extend(term.terms if isinstance(term, kind) else (term,))
    return tuple(flat)


# -- states -----------------------------------------------------------------------------------

# ss's state names (`ss state NAME`), each with the kernel states it stands for. Request
# sockets count as syn-recv (the kernel dumps them for that bit), as ss does.
_ALL = frozenset(
    {
        S.ESTABLISHED,
        S.SYN_SENT,
        S.SYN_RECV,
        S.NEW_SYN_RECV,
        S.FIN_WAIT1,
        S.FIN_WAIT2,
        S.TIME_WAIT,
        S.CLOSE,
        S.CLOSE_WAIT,
        S.LAST_ACK,
        S.LISTEN,
        S.CLOSING,
    }
)
_SYN_RECV = frozenset({S.SYN_RECV, S.NEW_SYN_RECV})
STATE_NAMES: Mapping[str, frozenset[SocketState]] = MappingProxyType(
    {
        "established": frozenset({S.ESTABLISHED}),
        "syn-sent": frozenset({S.SYN_SENT}),
        "syn-recv": _SYN_RECV,
        "syn-rcv": _SYN_RECV,
        "fin-wait-1": frozenset({S.FIN_WAIT1}),
        "fin-wait-2": frozenset({S.FIN_WAIT2}),
        "time-wait": frozenset({S.TIME_WAIT}),
        "unconnected": frozenset({S.CLOSE}),
        "closed": frozenset({S.CLOSE}),
        "close": frozenset({S.CLOSE}),
        "close-wait": frozenset({S.CLOSE_WAIT}),
        "last-ack": frozenset({S.LAST_ACK}),
        "listening": frozenset({S.LISTEN}),
        "closing": frozenset({S.CLOSING}),
        "bound-inactive": frozenset({S.BOUND_INACTIVE}),
        # ss's groups
        "all": _ALL,
        "connected": _ALL - {S.CLOSE, S.LISTEN},
        "synchronized": _ALL - {S.CLOSE, S.LISTEN, S.SYN_SENT},
        "bucket": _SYN_RECV | {S.TIME_WAIT},
        "big": _ALL - _SYN_RECV - {S.TIME_WAIT},
    }
)

# What `ss` shows by default: connected sockets, not listening, time-wait or syn-recv ones.
DEFAULT_STATES = _ALL - {S.LISTEN, S.CLOSE, S.TIME_WAIT} - _SYN_RECV
# `ss -l`: listening TCP sockets and bound, unconnected datagram ones.
LISTENING_STATES = frozenset({S.LISTEN, S.CLOSE})
ALL_STATES = _ALL

# Unix sockets have states of their own; ss files them under these TCP states.
_COUNTS_AS: Mapping[SocketState, SocketState] = MappingProxyType(
    {S.CONNECTING: S.SYN_SENT, S.DISCONNECTING: S.CLOSING}
)


def ss_states(*names: str) -> frozenset[SocketState]:
    """The states ss's names and groups stand for: ``ss_states("connected")``.

    Raises SocketQueryError for a name ss does not know.
    """
    found: set[SocketState] = set()
    for name in names:
        states = STATE_NAMES.get(name.lower()) if isinstance(name, str) else None
        if states is None:
            raise SocketQueryError(
                f"unknown socket state {name!r}: use one of {', '.join(STATE_NAMES)}"
            )
        found |= states
    return frozenset(found)


def in_states(state: SocketState, states: frozenset[SocketState]) -> bool:
    """Whether a socket in ``state`` passes a state filter (unix states by their TCP twin)."""
    return _COUNTS_AS.get(state, state) in states


# -- the filter --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocketFilter:
    """A whole ss filter: the states to keep (None: any) and an expression (None: any).

    ``str()`` gives the filter in ss's syntax, which parses back to an equal value.

    Example:

    >>> from portlib import SocketFilter
    >>> from portlib.socktable.filters import dport, ss_states
    >>> str(SocketFilter(dport(">=", 1024), ss_states("listening")))
    'state listening dport >= :1024'
    """

    expression: Expression | None = None
    states: frozenset[SocketState] | None = None

    def __str__(self) -> str:
        words = []
        if self.states is not None:
            words.append(_states_text(self.states))
        if self.expression is not None:
            words.append(str(self.expression))
        return " ".join(words)


def _states_text(states: frozenset[SocketState]) -> str:
    if not states:
        return "exclude all"
    for group in ("all", "connected", "synchronized", "bucket", "big"):
        if states == STATE_NAMES[group]:
            return f"state {group}"
    included = _state_words(states)
    if states <= _ALL:
        excluded = _state_words(_ALL - states)
        if excluded is not None and (included is None or len(excluded) < len(included)):
            return " ".join(f"exclude {name}" for name in excluded)
    if included is None:  # e.g. NEW-SYN-RECV alone: ss names it only with SYN-RECV
        included = [n for n, named in STATE_NAMES.items() if len(named) <= 2 and named & states]
    return " ".join(f"state {name}" for name in dict.fromkeys(included))


def _state_words(states: frozenset[SocketState]) -> list[str] | None:
    """ss's single-state names that make up exactly ``states`` (None if none can)."""
    chosen: list[str] = []
    covered: set[SocketState] = set()
    for name, named in STATE_NAMES.items():
        if len(named) <= 2 and named <= states and not named <= covered:
            chosen.append(name)
            covered |= named
    return chosen if covered == states else None


# -- builders ---------------------------------------------------------------------------------


def _port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise SocketQueryError(f"a port must be an integer in 0-65535, not {port!r}")
    return port


def _compare(side: Side, op_or_port: Comparison | str | int, port: int | None) -> PortMatch:
    if port is None:
        return PortMatch(side, Comparison.EQ, _port(op_or_port))
    try:
        op = Comparison(str(op_or_port))
    except ValueError:
        ops = " ".join(c.value for c in Comparison)
        raise SocketQueryError(f"unknown comparison {op_or_port!r}: use one of {ops}") from None
    return PortMatch(side, op, _port(port))


def dport(op_or_port: Comparison | str | int, port: int | None = None) -> PortMatch:
    """``dport(443)`` is ``dport = :443``; ``dport(">=", 1024)`` is ``dport >= :1024``."""
    return _compare(Side.DESTINATION, op_or_port, port)


def sport(op_or_port: Comparison | str | int, port: int | None = None) -> PortMatch:
    """``sport(22)`` is ``sport = :22``; ``sport("<", 1024)`` is ``sport < :1024``."""
    return _compare(Side.SOURCE, op_or_port, port)


def _network(address: str | IPv4Address | IPv6Address | IPNetwork | None) -> IPNetwork | None:
    if address is None:
        return None
    try:
        return ip_network(address, strict=False)
    except (ValueError, TypeError):
        raise SocketQueryError(
            f"bad address {address!r}: expected an IP address or ADDRESS/PREFIX"
        ) from None


def dst(
    address: str | IPv4Address | IPv6Address | IPNetwork | None = None, port: int | None = None
) -> AddressMatch:
    """``dst("10.0.0.0/8")``, ``dst("::1", 443)``, ``dst(port=53)``: the remote end."""
    return AddressMatch(Side.DESTINATION, _network(address), None if port is None else _port(port))


def src(
    address: str | IPv4Address | IPv6Address | IPNetwork | None = None, port: int | None = None
) -> AddressMatch:
    """``src("127.0.0.1")``, ``src(port=22)``: the local end."""
    return AddressMatch(Side.SOURCE, _network(address), None if port is None else _port(port))


# -- evaluation -------------------------------------------------------------------------------

Predicate = Callable[[Socket], bool]


def matches(socket_filter: SocketFilter, sock: Socket | UnixSocket) -> bool:
    """Whether ``sock`` passes ``socket_filter``, by the kernel's rules.

    On unix sockets every address and port predicate is false (they have neither).
    """
    return predicate(socket_filter)(sock)


def predicate(socket_filter: SocketFilter) -> Callable[[Socket | UnixSocket], bool]:
    """``matches`` for one filter and many sockets: the expression is turned into closures once."""
    states = socket_filter.states
    test = None if socket_filter.expression is None else _closure(socket_filter.expression)

    def keep(sock: Socket | UnixSocket) -> bool:
        if states is not None and not in_states(sock.state, states):
            return False
        if test is None:
            return True
        if isinstance(sock, Socket):
            return test(sock)
        return _on_unix(socket_filter.expression)  # type: ignore[arg-type]

    return keep


def _on_unix(expression: Expression) -> bool:
    if isinstance(expression, Not):
        return not _on_unix(expression.term)
    if isinstance(expression, And):
        return all(_on_unix(t) for t in expression.terms)
    if isinstance(expression, Or):
        return any(_on_unix(t) for t in expression.terms)
    return False


_PORT_TESTS: Mapping[Comparison, Callable[[int, int], bool]] = MappingProxyType(
    {
        Comparison.EQ: int.__eq__,
        Comparison.NE: int.__ne__,
        Comparison.LT: int.__lt__,
        Comparison.LE: int.__le__,
        Comparison.GT: int.__gt__,
        Comparison.GE: int.__ge__,
    }
)


def _closure(expression: Expression) -> Predicate:
    if isinstance(expression, PortMatch):
        compare, port = _PORT_TESTS[expression.op], expression.port
        if expression.side is Side.SOURCE:
            return lambda s: compare(s.local.port, port)
        return lambda s: compare(s.remote.port, port)
    if isinstance(expression, AddressMatch):
        return _address_closure(expression)
    if isinstance(expression, Not):
        inner = _closure(expression.term)
        return lambda s: not inner(s)
    terms = tuple(_closure(t) for t in expression.terms)
    if isinstance(expression, And):
        return lambda s: all(t(s) for t in terms)
    return lambda s: any(t(s) for t in terms)


def _address_closure(match: AddressMatch) -> Predicate:
    local = match.side is Side.SOURCE
    port, network = match.port, match.network

    def test(sock: Socket) -> bool:
        end = sock.local if local else sock.remote
        if port is not None and end.port != port:
            return False
        return network is None or address_in(end.address, network)

    return test


def address_in(address: IPv4Address | IPv6Address, network: IPNetwork) -> bool:
    """The kernel's host match: an IPv4 network also holds IPv4-mapped IPv6 addresses."""
    if address.version == network.version:
        return address in network
    if isinstance(address, IPv6Address) and isinstance(network, IPv4Network):
        mapped = address.ipv4_mapped
        return mapped is not None and mapped in network
    return False


__all__ = [
    "ALL_STATES",
    "DEFAULT_STATES",
    "LISTENING_STATES",
    "STATE_NAMES",
    "AddressMatch",
    "And",
    "Comparison",
    "Expression",
    "Not",
    "Or",
    "PortMatch",
    "Side",
    "SocketFilter",
    "address_in",
    "dport",
    "dst",
    "flatten",
    "in_states",
    "matches",
    "predicate",
    "sport",
    "src",
    "ss_states",
]
