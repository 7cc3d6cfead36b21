"""lsof's selection of network files, for ``portlib who``: ``:8000``, ``tcp@127.0.0.1:80``.

A selector is lsof's ``-i`` address, ``[46][PROTOCOL][@ADDRESS][:PORT[-PORT]]``,
or the older ``PORT[/tcp|/udp]``. Like ``lsof -i :PORT``, a selector matches a
socket whose local *or* remote end has that address and port, in TCP and UDP
alike unless a protocol is named; several selectors add up. ``-s TCP:LISTEN``
keeps TCP sockets in those states only (and, as in lsof, no UDP ones);
``-s TCP:^LISTEN`` leaves those states out. The selection becomes one
:class:`~portlib.socktable.filters.SocketFilter` per table, which the kernel
applies. Pure: service names are resolved by a function the caller passes in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from types import MappingProxyType

from portlib.errors import PortlibError, SocketQueryError
from portlib.model import Family, Protocol, SocketState
from portlib.socktable.filters import (
    ALL_STATES,
    AddressMatch,
    And,
    Comparison,
    Expression,
    Or,
    PortMatch,
    Side,
    SocketFilter,
)

S = SocketState
Table = tuple[Protocol, Family]
INET_TABLES: tuple[Table, ...] = tuple(
    (p, f) for p in (Protocol.TCP, Protocol.UDP) for f in (Family.INET, Family.INET6)
)

# lsof's names for TCP states (its Linux dialect), and ours for each.
LSOF_TCP_STATES: Mapping[str, frozenset[SocketState]] = MappingProxyType(
    {
        "ESTABLISHED": frozenset({S.ESTABLISHED}),
        "SYN_SENT": frozenset({S.SYN_SENT}),
        "SYN_RECV": frozenset({S.SYN_RECV, S.NEW_SYN_RECV}),
        "FIN_WAIT1": frozenset({S.FIN_WAIT1}),
        "FIN_WAIT2": frozenset({S.FIN_WAIT2}),
        "TIME_WAIT": frozenset({S.TIME_WAIT}),
        "CLOSE": frozenset({S.CLOSE}),
        "CLOSE_WAIT": frozenset({S.CLOSE_WAIT}),
        "LAST_ACK": frozenset({S.LAST_ACK}),
        "LISTEN": frozenset({S.LISTEN}),
        "CLOSING": frozenset({S.CLOSING}),
    }
)
LSOF_STATE_NAME: Mapping[SocketState, str] = MappingProxyType(
    {state: name for name, states in LSOF_TCP_STATES.items() for state in states}
)

_LSOF_ADDRESS = re.compile(
    r"(?P<version>[46])?(?P<protocol>tcp|udp)?"
    r"(?:@(?P<host>\[[^\]]*\]|[^:@\[\]]+))?(?::(?P<port>[^:]+))?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``who`` argument: which protocol, family, address and port range (None: any)."""

    protocol: Protocol | None = None
    family: Family | None = None
    address: IPv4Address | IPv6Address | None = None
    ports: tuple[int, int] | None = None  # first, last

    def admits(self, table: Table) -> bool:
        protocol, family = table
        return self.protocol in (None, protocol) and self.family in (None, family)


@dataclass(frozen=True, slots=True)
class StateSelection:
    """lsof's ``-s TCP:...``: TCP states to keep (None: any) and states to leave out."""

    include: frozenset[SocketState] | None = None
    exclude: frozenset[SocketState] = frozenset()

    def tcp_states(self) -> frozenset[SocketState] | None:
        if self.include is None and not self.exclude:
            return None
        return (ALL_STATES if self.include is None else self.include) - self.exclude


def parse_selector(text: str, *, service_port: Callable[[str], int] | None = None) -> Selector:
    """``8000``, ``8000/udp``, ``:8000``, ``tcp:80``, ``@127.0.0.1``, ``udp@[::1]:53``, ``:1-9``."""
    spec = text.strip()
    number, slash, proto = spec.partition("/")
    if slash or (spec.isascii() and spec.isdigit()):
        protocol = proto.lower() if slash else None
        if protocol not in (None, "tcp", "udp"):
            raise SocketQueryError(f"bad port {text!r}: the protocol after '/' must be tcp or udp")
        first = _port_number(number, text)
        return Selector(None if protocol is None else Protocol(protocol), ports=(first, first))
    match = _LSOF_ADDRESS.fullmatch(spec)
    if not spec or match is None:
        raise SocketQueryError(
            f"bad address {text!r}: expected PORT[/tcp|/udp] or lsof's "
            "[46][tcp|udp][@ADDRESS][:PORT[-PORT]] (':8000', 'tcp@127.0.0.1:80')"
        )
    family = {"4": Family.INET, "6": Family.INET6, None: None}[match["version"]]
    protocol_text = match["protocol"]
    address = None
    if match["host"] is not None:
        address = parse_address(match["host"].strip("[]"), text)
        host_family = Family.INET if address.version == 4 else Family.INET6
        if family not in (None, host_family):
            version = "IPv6" if family is Family.INET6 else "IPv4"
            raise SocketQueryError(f"bad address {text!r}: {address} is not {version}")
        family = host_family
    ports = None if match["port"] is None else _port_range(match["port"], text, service_port)
    return Selector(
        None if protocol_text is None else Protocol(protocol_text.lower()), family, address, ports
    )


def _port_number(digits: str, text: str) -> int:
    if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) <= 65535:
        raise SocketQueryError(f"bad port {text!r}: expected a port in 1-65535")
    return int(digits)


def _port_range(spec: str, text: str, service_port: Callable[[str], int] | None) -> tuple[int, int]:
    first, dash, last = spec.partition("-")
    if dash and first.isdigit() and last.isdigit():
        low, high = _port_number(first, text), _port_number(last, text)
        if low > high:
            raise SocketQueryError(f"bad port range {text!r}: {low} is above {high}")
        return low, high
    if spec.isascii() and spec.isdigit():
        port = _port_number(spec, text)
        return port, port
    if service_port is None:
        raise SocketQueryError(f"bad port {text!r}: expected a port number")
    try:
        port = service_port(spec)
    except PortlibError as exc:
        raise SocketQueryError(f"bad port {text!r}: {exc}") from None
    return port, port


def parse_address(host: str, text: str | None = None) -> IPv4Address | IPv6Address:
    """An IP address (``127.0.0.1``, ``::1``), or SocketQueryError naming ``text``."""
    text = host if text is None else text
    try:
        return ip_address(host)
    except ValueError:
        raise SocketQueryError(
            f"bad address {text!r}: {host!r} is not an IP address (host names are not looked up)"
        ) from None


def parse_states(specs: Iterable[str]) -> StateSelection:
    """lsof's ``-s`` values: ``TCP:LISTEN``, ``TCP:LISTEN,ESTABLISHED``, ``TCP:^LISTEN``."""
    include: set[SocketState] | None = None
    exclude: set[SocketState] = set()
    for spec in specs:
        protocol, colon, names = spec.partition(":")
        if not colon or protocol.upper() != "TCP":
            raise SocketQueryError(
                f"bad state selection {spec!r}: expected TCP:STATE[,STATE...] (only TCP has states)"
            )
        for name in names.split(","):
            negated = name.startswith("^")
            states = LSOF_TCP_STATES.get(name.lstrip("^").upper())
            if states is None:
                raise SocketQueryError(
                    f"unknown TCP state {name!r} in {spec!r}: use {', '.join(LSOF_TCP_STATES)}"
                )
            if negated:
                exclude |= states
            else:
                include = (include or set()) | states
    return StateSelection(None if include is None else frozenset(include), frozenset(exclude))


def _port_test(side: Side, ports: tuple[int, int]) -> Expression:
    first, last = ports
    if first == last:
        return PortMatch(side, Comparison.EQ, first)
    return And((PortMatch(side, Comparison.GE, first), PortMatch(side, Comparison.LE, last)))


def _end(selector: Selector, side: Side) -> Expression | None:
    """The test one socket end must pass, or None when the selector names no address or port."""
    network = None if selector.address is None else ip_network(selector.address)
    ports = selector.ports
    if network is None:
        return None if ports is None else _port_test(side, ports)
    if ports is None or ports[0] == ports[1]:
        return AddressMatch(side, network, None if ports is None else ports[0])
    return And((AddressMatch(side, network), _port_test(side, ports)))


def selector_expression(selector: Selector, *, local_only: bool = False) -> Expression | None:
    """Either end (or, with ``local_only``, the local end) matching ``selector``; None: any."""
    local = _end(selector, Side.SOURCE)
    if local is None or local_only:
        return local
    remote = _end(selector, Side.DESTINATION)
    return Or((local, remote)) if remote is not None else local


def table_filters(
    selectors: Sequence[Selector],
    states: StateSelection = StateSelection(),
    *,
    local_only: bool = False,
    families: Iterable[Family] = (Family.INET, Family.INET6),
) -> dict[Table, SocketFilter]:
    """The filter for each TCP/UDP table the selection reads (tables left out match nothing)."""
    wanted_families = frozenset(families)
    found: dict[Table, SocketFilter] = {}
    for table in INET_TABLES:
        protocol, family = table
        if family not in wanted_families:
            continue
        relevant = [s for s in selectors if s.admits(table)]
        if selectors and not relevant:
            continue
        if protocol is not Protocol.TCP and states.include is not None:
            continue  # lsof: a TCP state list selects TCP sockets only
        tests = [selector_expression(s, local_only=local_only) for s in relevant]
        present = [t for t in tests if t is not None]
        # A selector with neither address nor port (`tcp`, `-p PID` alone) takes the whole table.
        expression = _any(present) if present and len(present) == len(tests) else None
        kept = states.tcp_states() if protocol is Protocol.TCP else None
        found[table] = SocketFilter(expression, kept)
    return found


def _any(tests: list[Expression]) -> Expression:
    return tests[0] if len(tests) == 1 else Or(tuple(tests))


__all__ = [
    "INET_TABLES",
    "LSOF_STATE_NAME",
    "LSOF_TCP_STATES",
    "Selector",
    "StateSelection",
    "parse_address",
    "parse_selector",
    "parse_states",
    "selector_expression",
    "table_filters",
]
