"""Pure: port specifications as nmap's ``-p`` reads them, parsed into a ``PortList``.

``parse_ports`` takes ``22,80,1000-2000``, ``-``, service names and the
``T:``/``U:`` prefixes (see it for the whole syntax); ``compress_ports`` writes
ports back as such a spec. Pure: service names come from the bundled registry.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, ne
from typing import Final

from portlib.errors import PortSpecError, UnknownService
from portlib.model import Protocol

_MAX_PORT: Final = 65535
_PORT_RANGE = re.compile(r"([0-9]*)-([0-9]*)")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+/-]*")
_PREFIX = re.compile(r"([A-Za-z]):(.*)", re.DOTALL)
_PREFIXES: Final = {"T": Protocol.TCP, "U": Protocol.UDP}
DEFAULT_TOP_PORTS: Final = 1000  # nmap's default: the most often open ports of each protocol
_UNSUPPORTED_PREFIXES: Final = {
    "S": "SCTP ports (S:) are not supported; use T: for TCP or U: for UDP",
    "P": "IP protocol numbers (P:) are not supported; use T: for TCP or U: for UDP",
}


@dataclass(frozen=True, slots=True)
class PortList:
    """Ports to probe per protocol, in the user's order, without duplicates.

    ``len()`` counts (protocol, port) pairs; an empty PortList is false.

    Example:

    >>> import portlib
    >>> ports = portlib.parse_ports("T:22,80,U:53")
    >>> ports.tcp, ports.udp, len(ports)
    ((22, 80), (53,), 3)
    """

    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()

    def for_protocol(self, protocol: Protocol | str) -> tuple[int, ...]:
        """The ports of one protocol (``"tcp"`` or ``"udp"``)."""
        if protocol == Protocol.TCP:
            return self.tcp
        if protocol == Protocol.UDP:
            return self.udp
        raise PortSpecError(f"unknown protocol {protocol!r}: use 'tcp' or 'udp'")

    @property
    def protocols(self) -> tuple[Protocol, ...]:
        """The protocols that have ports, TCP first."""
        return tuple(
            p for p, ports in ((Protocol.TCP, self.tcp), (Protocol.UDP, self.udp)) if ports
        )

    def __len__(self) -> int:
        return len(self.tcp) + len(self.udp)

    def __bool__(self) -> bool:
        return bool(self.tcp or self.udp)

    def to_spec(self) -> str:
        """A compact spec that parses back to the same ports (sorted): ``T:22,80-90,U:53``."""
        parts = []
        for prefix, ports in (("T:", self.tcp), ("U:", self.udp)):
            if ports:
                parts.append(prefix + compress_ports(ports))
        return ",".join(parts)


Ranges = tuple[tuple[int, int], ...]
"""Inclusive ``(first, last)`` runs of port numbers, ascending."""


def compress_ports(ports: Iterable[int]) -> str:
    """Ports as nmap writes lists of them: ascending, runs folded into ranges.

    >>> compress_ports([80, 1, 2, 3, 1080, 443, 2])
    '1-3,80,443,1080'
    """
    return ranges_text(ranges_of(ports))


def ranges_of(numbers: Iterable[int]) -> Ranges:
    """Distinct ``numbers`` as their runs (one C-level pass, no Python step per number).

    >>> ranges_of([5, 1, 2, 3, 80, 2])
    ((1, 3), (5, 5), (80, 80))
    """
    ordered = sorted(set(numbers))
    if not ordered:
        return ()
    # A run breaks after index i when the next number is not one more.
    gaps = map(ne, ordered[1:], map(add, ordered, repeat(1)))
    breaks = [i + 1 for i in compress(range(len(ordered) - 1), gaps)]
    firsts = [ordered[0], *map(ordered.__getitem__, breaks)]
    lasts = [*(ordered[i - 1] for i in breaks), ordered[-1]]
    return tuple(zip(firsts, lasts, strict=True))


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Runs merged where they overlap or touch.

    >>> merge_ranges([(5, 9), (1, 3), (4, 4), (20, 21)])
    ((1, 9), (20, 21))
    """
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def ranges_text(ranges: Iterable[tuple[int, int]]) -> str:
    """Runs as nmap writes a port list: ``1-21,23,25-79``.

    >>> ranges_text(((1, 3), (80, 80)))
    '1-3,80'
    """
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


class _BadPort(Exception):
    """Internal: why a port item is bad."""


def _port_number(text: str) -> int:
    value = int(text)
    if value > _MAX_PORT:
        raise _BadPort(f"port {value} is out of range 0-{_MAX_PORT}")
    return value


def _port_item(item: str, protocols: tuple[Protocol, ...]) -> dict[Protocol, range]:
    """One comma-free item (number, range or service name) -> ports per protocol."""
    if item.isascii() and item.isdigit():
        port = _port_number(item)
        return dict.fromkeys(protocols, range(port, port + 1))
    match = _PORT_RANGE.fullmatch(item)
    if match is not None:
        # An open start means 1: port 0 is scanned only when named, as in nmap.
        low = _port_number(match[1]) if match[1] else 1
        high = _port_number(match[2]) if match[2] else _MAX_PORT
        if low > high:
            raise _BadPort(f"range {item} is reversed (start > end)")
        return dict.fromkeys(protocols, range(low, high + 1))
    if all(c.isdigit() or c == "-" for c in item):
        raise _BadPort("not a port or a range like 1000-2000")
    if any(c in item for c in "*?["):
        raise _BadPort("wildcards in service names are not supported; name the services")
    if not _SERVICE_NAME.fullmatch(item):
        raise _BadPort("not a port, a range like 1000-2000, or a service name")
    from portlib.services import service_port

    found: dict[Protocol, range] = {}
    why = ""
    for protocol in protocols:
        try:
            port = service_port(item, protocol)
        except UnknownService as exc:
            why = why or str(exc)  # the registry's message suggests close names
            continue
        found[protocol] = range(port, port + 1)
    if not found:
        raise _BadPort(why)
    return found


def _in_order_once(ranges: list[range]) -> tuple[int, ...]:
    """The ports of ``ranges`` in the order given, each once (one range: no dedupe)."""
    if len(ranges) == 1:
        return tuple(ranges[0])  # "-" or "1-65535": the common -p-, in a fraction of the time
    return tuple(dict.fromkeys(itertools.chain.from_iterable(ranges)))


def _parse_port_text(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    chosen: dict[Protocol, list[range]] = {Protocol.TCP: [], Protocol.UDP: []}
    both = (Protocol.TCP, Protocol.UDP)
    protocols: tuple[Protocol, ...] = both
    prefix: str | None = None  # the last prefix, while it has no ports yet

    def bad(item: str, why: str) -> PortSpecError:
        context = f" in {text!r}" if item != text.strip() else ""
        return PortSpecError(f"bad port spec {item!r}{context}: {why}")

    if not text.strip():
        raise PortSpecError(
            "empty port specification: give ports like 22,80,1000-2000, T:80,U:53 or -"
        )
    for raw in text.split(","):
        item = raw.strip()
        match = _PREFIX.fullmatch(item)
        if match is not None:
            letter = match[1].upper()
            if prefix is not None:
                raise bad(prefix, f"protocol prefix {prefix!r} has no ports")
            if letter in _UNSUPPORTED_PREFIXES:
                raise bad(item, _UNSUPPORTED_PREFIXES[letter])
            if letter not in _PREFIXES:
                raise bad(item, f"unknown protocol prefix '{match[1]}:'; use T: or U:")
            protocols = (_PREFIXES[letter],)
            prefix = f"{match[1]}:"
            item = match[2].strip()
            if not item:
                continue
        elif not item:
            raise bad(text, "empty item (two commas in a row, or a comma at an end?)")
        try:
            found = _port_item(item, protocols)
        except _BadPort as exc:
            raise bad(raw.strip(), str(exc)) from None
        except ValueError as exc:  # int() of odd digits: report, never leak
            raise bad(raw.strip(), str(exc)) from None
        for protocol, ports in found.items():
            chosen[protocol].append(ports)
        prefix = None
    if prefix is not None:
        raise bad(prefix, f"protocol prefix {prefix!r} has no ports")
    return _in_order_once(chosen[Protocol.TCP]), _in_order_once(chosen[Protocol.UDP])


def parse_ports(spec: str | int | Iterable[int] | None = None) -> PortList:
    """Parse a port specification (nmap's ``-p``) into a PortList.

    Accepted: ``22``, ``22,80,1000-2000``, ``-`` (1-65535), ``1024-`` (1024-65535),
    ``-1024`` (1-1024), service names (``http,ssh``), and protocol prefixes
    that apply to the items after them: ``T:80,443,U:53,161``. Unprefixed ports
    are for TCP and UDP, as in nmap. Port 0 is included only when named
    (``0``, ``0-10``). Duplicates collapse; the order given is kept. ``spec`` may
    also be one int or an iterable of ints (both protocols), and None means
    the top 1000 ports of each protocol. Bad specs raise ``PortSpecError``.

    >>> parse_ports("T:80,443,U:53,161")
    PortList(tcp=(80, 443), udp=(53, 161))
    >>> parse_ports("22,ssh,21-23").tcp
    (22, 21, 23)
    """
    if spec is None:
        from portlib.services import top_ports

        return PortList(top_ports(DEFAULT_TOP_PORTS, "tcp"), top_ports(DEFAULT_TOP_PORTS, "udp"))
    if isinstance(spec, str):
        tcp, udp = _parse_port_text(spec)
        return PortList(tcp, udp)
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = (spec,)
    if isinstance(spec, bytes) or not isinstance(spec, Iterable):
        raise PortSpecError(f"ports must be a spec string, an int or ints, not {spec!r}")
    numbers: dict[int, None] = {}
    for item in spec:
        if isinstance(item, bool) or not isinstance(item, int):
            raise PortSpecError(f"bad port {item!r}: ports are integers 0-{_MAX_PORT}")
        if not 0 <= item <= _MAX_PORT:
            raise PortSpecError(f"bad port {item}: port {item} is out of range 0-{_MAX_PORT}")
        numbers[item] = None
    if not numbers:
        raise PortSpecError("empty port list: give at least one port")
    ports = tuple(numbers)
    return PortList(ports, ports)


__all__ = ["DEFAULT_TOP_PORTS", "PortList", "compress_ports", "parse_ports"]
