"""Pure: how nmap's outputs order ports and fold the uninteresting majority away.

nmap lists every port of a host except those in an "ignored" state: a state
other than ``open`` shared by more than 25 of the host's ports (default
verbosity). Those are summarised instead ("Not shown: 997 closed tcp ports",
``<extraports>``, grepable's ``Ignored State``). The XML, grepable and human
outputs all use this one rule, so they agree on what is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from portlib.model import PortResult, PortState, Protocol, Reason

IGNORE_ABOVE = 25
"""A non-open state with more ports than this (per host) is summarised, as nmap does."""

# nmap walks a host's ports protocol by protocol (TCP, then UDP), each ascending.
_PROTOCOL_ORDER: dict[Protocol, int] = {Protocol.TCP: 0, Protocol.UDP: 1, Protocol.RAW: 2}


@dataclass(frozen=True, slots=True)
class ReasonGroup:
    """Ports of one ignored state that share a protocol and a reason."""

    reason: Reason
    protocol: Protocol
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IgnoredState:
    """One summarised state: how many ports, and why, grouped by reason and protocol."""

    state: PortState
    count: int
    reasons: tuple[ReasonGroup, ...]


@dataclass(frozen=True, slots=True)
class PortSummary:
    """A host's ports split into those listed one by one and the summarised states."""

    shown: tuple[PortResult, ...]
    ignored: tuple[IgnoredState, ...]


def port_order(result: PortResult) -> tuple[int, int]:
    """Sort key: protocol (TCP before UDP), then port number."""
    return (_PROTOCOL_ORDER.get(result.protocol, len(_PROTOCOL_ORDER)), result.port)


def summarise(ports: Sequence[PortResult], ignore_above: int = IGNORE_ABOVE) -> PortSummary:
    """Split ``ports`` (one host's) into shown ports and ignored states, nmap's way.

    >>> from ipaddress import ip_address
    >>> def closed(n): return PortResult(ip_address("127.0.0.1"), n, Protocol.TCP,
    ...                                   PortState.CLOSED, Reason.CONN_REFUSED)
    >>> s = summarise([closed(n) for n in range(1, 31)])
    >>> (len(s.shown), s.ignored[0].state.value, s.ignored[0].count)
    (0, 'closed', 30)
    """
    counts: dict[PortState, int] = {}
    for p in ports:
        counts[p.state] = counts.get(p.state, 0) + 1
    ignored_states = {
        state
        for state, count in counts.items()
        if state is not PortState.OPEN and count > ignore_above
    }
    ordered = sorted(ports, key=port_order)
    shown = tuple(p for p in ordered if p.state not in ignored_states)
    groups: dict[PortState, dict[tuple[Reason, Protocol], list[int]]] = {}
    for p in ordered:
        if p.state in ignored_states:
            groups.setdefault(p.state, {}).setdefault((p.reason, p.protocol), []).append(p.port)
    ignored = []
    for state, by_reason in groups.items():
        reasons = [
            ReasonGroup(reason, protocol, tuple(nums))
            for (reason, protocol), nums in by_reason.items()
        ]
        # The commonest reason first, as nmap's "Not shown: ... (conn-refused)" names it.
        reasons.sort(key=lambda g: (-len(g.ports), _PROTOCOL_ORDER.get(g.protocol, 9), g.reason))
        ignored.append(IgnoredState(state, counts[state], tuple(reasons)))
    ignored.sort(key=lambda s: (-s.count, s.state))
    return PortSummary(shown, tuple(ignored))


def compress_ports(ports: Iterable[int]) -> str:
    """Ports as nmap writes lists of them: ascending, runs folded into ranges.

    >>> compress_ports([80, 1, 2, 3, 1080, 443, 2])
    '1-3,80,443,1080'
    """
    nums = sorted(set(ports))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def expand_ports(spec: str) -> list[int]:
    """The inverse of :func:`compress_ports`; raises ``ValueError`` on anything else.

    >>> expand_ports("1-3,80")
    [1, 2, 3, 80]
    """
    ports: list[int] = []
    if not spec.strip():
        return ports
    for part in spec.split(","):
        first, sep, last = part.strip().partition("-")
        lo = _port_number(first)
        hi = _port_number(last) if sep else lo
        if hi < lo:
            raise ValueError(f"port range {part!r} runs backwards")
        ports.extend(range(lo, hi + 1))
    return ports


def _port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return int(text)
