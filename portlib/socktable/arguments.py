"""The checks and conversions of the socket functions' arguments (kinds, states, filters).

Shared by the public functions (``__init__.py``) and ``watch_sockets``; every bad
value becomes a SocketQueryError (or FilterSyntaxError) naming it.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from portlib.errors import SocketQueryError, UnknownService
from portlib.model import Family, Protocol, SocketState
from portlib.socktable.filterparse import parse_filter
from portlib.socktable.filters import AddressMatch, And, Expression, Or, Side, SocketFilter
from portlib.socktable.query import Table

_TCP4, _TCP6 = (Protocol.TCP, Family.INET), (Protocol.TCP, Family.INET6)
_UDP4, _UDP6 = (Protocol.UDP, Family.INET), (Protocol.UDP, Family.INET6)
_RAW4, _RAW6 = (Protocol.RAW, Family.INET), (Protocol.RAW, Family.INET6)

InetKind = Literal[
    "inet", "inet4", "inet6", "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "raw"
]  # fmt: skip

# kind -> (inet tables to read, whether to read unix sockets); the words of `ss -A/-f`.
KINDS: Mapping[str, tuple[tuple[Table, ...], bool]] = MappingProxyType(
    {
        "inet": ((_TCP4, _TCP6, _UDP4, _UDP6, _RAW4, _RAW6), False),
        "inet4": ((_TCP4, _UDP4, _RAW4), False),
        "inet6": ((_TCP6, _UDP6, _RAW6), False),
        "tcp": ((_TCP4, _TCP6), False),
        "tcp4": ((_TCP4,), False),
        "tcp6": ((_TCP6,), False),
        "udp": ((_UDP4, _UDP6), False),
        "udp4": ((_UDP4,), False),
        "udp6": ((_UDP6,), False),
        "raw": ((_RAW4, _RAW6), False),
        "unix": ((), True),
        "all": ((_TCP4, _TCP6, _UDP4, _UDP6, _RAW4, _RAW6), True),
    }
)

_PROTOCOLS: Mapping[str, Protocol] = MappingProxyType({p.value: p for p in Protocol})
_STATE_NAMES: Mapping[str, SocketState] = MappingProxyType(
    {s.value.lower(): s for s in SocketState}
    | {s.name.lower(): s for s in SocketState}
    | {s.name.lower().replace("_", "-"): s for s in SocketState}
)


# -- argument checks --------------------------------------------------------------------------


def check_kind(kind: str) -> tuple[tuple[Table, ...], bool]:
    found = KINDS.get(kind.lower()) if isinstance(kind, str) else None
    if found is None:
        raise SocketQueryError(f"unknown socket kind {kind!r}: use one of {', '.join(KINDS)}")
    return found


def check_state(state: SocketState | str | None) -> SocketState | None:
    if state is None or isinstance(state, SocketState):
        return state
    found = _STATE_NAMES.get(state.lower()) if isinstance(state, str) else None
    if found is None:
        names = ", ".join(s.value for s in SocketState)
        raise SocketQueryError(f"unknown socket state {state!r}: use one of {names}")
    return found


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise SocketQueryError(f"port must be an integer in 0-65535, not {port!r}")
    return port


def check_protocol(protocol: Protocol | str) -> Protocol:
    found = _PROTOCOLS.get(protocol.lower()) if isinstance(protocol, str) else None
    if found is None:
        raise SocketQueryError(f"unknown protocol {protocol!r}: use tcp, udp or raw")
    return found


def check_signal(sig: signal.Signals | int | str) -> signal.Signals:
    try:
        if isinstance(sig, str):
            name = sig.upper()
            return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        if isinstance(sig, bool):
            raise ValueError(sig)
        return signal.Signals(sig)
    except (KeyError, ValueError):
        raise SocketQueryError(
            f"unknown signal {sig!r}: use a name like TERM, KILL or HUP, or a number"
        ) from None


def service_port(name: str) -> int:
    """A service name's port for a filter; refused when TCP and UDP disagree (as ss does)."""
    from portlib.services import service_ports

    best: dict[Protocol, int] = {}
    for service in service_ports(name):  # each protocol's best entry comes first
        best.setdefault(service.protocol, service.port)
    if len(set(best.values())) > 1:
        tcp, udp = best[Protocol.TCP], best[Protocol.UDP]
        raise UnknownService(f"ambiguous service name {name!r}: {tcp}/tcp but {udp}/udp")
    return next(iter(best.values()))


def parse_socket_filter(text: str) -> SocketFilter:
    """ss's filter syntax as a SocketFilter (service names from portlib's registry).

    >>> import portlib
    >>> str(portlib.parse_socket_filter("state established '( dport = :https )'".replace("'", "")))
    'state established dport = :443'
    """
    return parse_filter(text, service_port=service_port)


def combined_filter(
    given: str | SocketFilter | None,
    state: SocketState | str | None = None,
    port: int | None = None,
) -> SocketFilter | None:
    """One filter from ``sockets()``'s ``filter``, ``state`` and ``port`` arguments."""
    if isinstance(given, str):
        found = parse_socket_filter(given)
    elif given is None or isinstance(given, SocketFilter):
        found = given or SocketFilter()
    else:
        raise SocketQueryError(f"filter must be ss filter text or a SocketFilter, not {given!r}")
    want_state = check_state(state)
    states = found.states
    if want_state is not None:
        states = (states if states is not None else frozenset(SocketState)) & {want_state}
    expression: Expression | None = found.expression
    if port is not None:
        either_end = Or(tuple(AddressMatch(side, None, check_port(port)) for side in Side))
        expression = either_end if expression is None else And((expression, either_end))
    if expression is None and states is None:
        return None
    return SocketFilter(expression, states)


__all__ = [
    "KINDS",
    "InetKind",
    "check_kind",
    "check_port",
    "check_protocol",
    "check_signal",
    "check_state",
    "combined_filter",
    "parse_socket_filter",
    "service_port",
]
