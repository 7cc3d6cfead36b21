"""Pure: the grammar of nmap's target specifications, and the key space they map into.

A target token (an address, a CIDR block, a dash range, an IPv4 octet pattern or
a host name) parses into a ``Part``: ranges of integer keys, or a name still to
resolve. Addresses of both families share one integer key space, so one sorted
list of ranges serves both: IPv4 keys are the address, IPv6 keys sit above all
of them. ``first_cover`` turns the parts (and exclusions) into disjoint ranges,
each owned by the first part that named it. ``portlib.targets`` reads files,
resolves names and builds the ``TargetSet``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Final

from portlib.errors import TargetSpecError

if TYPE_CHECKING:
    from portlib.model import IPAddress

# Addresses of both families share one integer key space, so one sorted list of
# ranges serves both: IPv4 keys are the address, IPv6 keys sit above all of them.
V6_BASE: Final = 1 << 32


_V4_BITS: Final = 32


_V6_BITS: Final = 128


# An octet pattern like 10.0-255.0-255.1,3 becomes one range per run; beyond this
# many the pattern would cost real memory, so we refuse it and say what to use.
MAX_PATTERN_RANGES: Final = 1 << 18


_PLAIN_V4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")


_NUMERIC_V4 = re.compile(r"[0-9.,*\-]+")


_FULL_V4_RANGE = re.compile(r"([0-9]+(?:\.[0-9]+){3})-([0-9]+(?:\.[0-9]+){3})")


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


_HEX_GROUP = re.compile(r"[0-9a-fA-F]{1,4}")


def key_to_address(key: int) -> IPv4Address | IPv6Address:
    if key < V6_BASE:
        return IPv4Address(key)
    return IPv6Address(key - V6_BASE)


def address_to_key(address: IPAddress) -> int:
    if address.version == 4:
        return int(address)
    return int(address) + V6_BASE


@dataclass(frozen=True, slots=True)
class Part:
    """One target as written: literal key ranges, or a host name still to resolve."""

    text: str
    where: str
    ranges: tuple[tuple[int, int], ...] = ()
    name: str | None = None
    prefix: int | None = None  # name/prefix: the block around each resolved address


class _Bad(Exception):
    """Internal: why a token is bad; the caller adds which token and where."""


def spec_error(role: str, token: str, where: str, why: str) -> TargetSpecError:
    return TargetSpecError(f"bad {role} {token!r}{where}: {why}")


def _parse_octet(text: str) -> list[tuple[int, int]]:
    if not text:
        raise _Bad("empty octet (two dots in a row?)")
    runs: list[tuple[int, int]] = []
    for item in text.split(","):
        if item in ("*", "-"):
            runs.append((0, 255))
            continue
        if not item:
            raise _Bad(f"empty item in octet list {text!r}")
        low_text, dash, high_text = item.partition("-")
        if "*" in item or "-" in high_text or (dash and not (low_text or high_text)):
            raise _Bad(f"bad octet {item!r}")
        low = _octet_value(low_text) if low_text else 0
        high = (_octet_value(high_text) if high_text else 255) if dash else low
        if low > high:
            raise _Bad(f"octet range {item} is reversed (start > end)")
        runs.append((low, high))
    runs.sort()
    merged: list[tuple[int, int]] = []
    for low, high in runs:
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def _octet_value(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise _Bad(f"octet {text!r} is not a number")
    value = int(text)
    if value > 255:
        raise _Bad(f"octet {value} is out of range 0-255")
    return value


def _octet_pattern(text: str) -> tuple[tuple[int, int], ...]:
    """An IPv4 octet pattern (``192.0.2-3.1,3,5-7``) as ascending key ranges."""
    groups = text.split(".")
    if len(groups) != 4:
        raise _Bad("an IPv4 address needs four dot-separated octets")
    octets = [_parse_octet(group) for group in groups]
    # Trailing octets that cover 0-255 merge into the runs of the octet before them.
    last = 3
    while last > 0 and octets[last] == [(0, 255)]:
        last -= 1
    shift = 8 * (3 - last)
    count = len(octets[last])
    for runs in octets[:last]:
        count *= sum(high - low + 1 for low, high in runs)
    if count > MAX_PATTERN_RANGES:
        raise _Bad(
            f"the pattern splits into {count} separate ranges (more than {MAX_PATTERN_RANGES});"
            " write it as CIDR blocks or dash ranges"
        )
    prefixes = [0]
    for runs in octets[:last]:
        prefixes = [
            (p << 8) | v for p in prefixes for low, high in runs for v in range(low, high + 1)
        ]
    fill = (1 << shift) - 1
    out = []
    for prefix in prefixes:
        base = prefix << (8 * (4 - last))
        for low, high in octets[last]:
            out.append((base | (low << shift), base | (high << shift) | fill))
    return tuple(out)


# host:port or [v6]:port, which people paste from URLs and ss
_WITH_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]+):\d+")


def _v4_key(text: str) -> int:
    groups = text.split(".")
    if len(groups) != 4:
        raise _Bad("an IPv4 address needs four dot-separated octets")
    key = 0
    for group in groups:
        if not group:
            raise _Bad("empty octet (two dots in a row?)")
        key = (key << 8) | _octet_value(group)
    return key


def _v6_key(text: str) -> int:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]  # [::1], as URLs write IPv6 addresses
    if "%" in text:
        raise _Bad("scoped IPv6 addresses (with %zone) are not supported")
    try:
        return int(IPv6Address(text)) + V6_BASE
    except ValueError as exc:
        if _WITH_PORT.fullmatch(text):
            raise _Bad("a target takes no port; give ports with -p (ports=)") from None
        raise _Bad(f"not a valid IPv6 address ({exc})") from None


def _cidr(key: int, prefix_text: str, version: int) -> tuple[int, int]:
    bits = _V4_BITS if version == 4 else _V6_BITS
    if not prefix_text.isdigit() or not prefix_text.isascii():
        raise _Bad(f"prefix length {prefix_text!r} is not a number")
    prefix = int(prefix_text)
    if prefix > bits:
        raise _Bad(f"prefix length {prefix} is out of range 0-{bits} for IPv{version}")
    base = V6_BASE if version == 6 else 0
    host_mask = (1 << (bits - prefix)) - 1
    value = key - base
    return base + (value & ~host_mask), base + (value | host_mask)


def _check_name(name: str) -> str:
    bare = name[:-1] if name.endswith(".") else name
    if not bare:
        raise _Bad("empty host name")
    if len(bare) > 253:
        raise _Bad("host name longer than 253 characters")
    labels = bare.split(".")
    for label in labels:
        if not label:
            raise _Bad("empty label in host name (two dots in a row?)")
        if not _LABEL.fullmatch(label):
            if len(label) > 63:
                raise _Bad(f"host name label {label[:20]!r}... is longer than 63 characters")
            raise _Bad(
                f"not an address, range, CIDR block or host name (label {label!r} may only"
                " hold letters, digits, '-' and '_', and not start or end with '-')"
            )
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # getaddrinfo would read names like 0x7f.1 as numeric addresses: refuse them.
        raise _Bad("not a valid IPv4 address or host name")
    return bare


def _parse_single(token: str, where: str) -> Part:
    """One comma-free token."""
    base, slash, prefix_text = token.partition("/")
    if slash:
        if ":" in base:
            return Part(token, where, (_cidr(_v6_key(base), prefix_text, 6),))
        if _NUMERIC_V4.fullmatch(base):
            return Part(token, where, (_cidr(_v4_key(base), prefix_text, 4),))
        if not prefix_text.isdigit() or not prefix_text.isascii():
            raise _Bad(f"prefix length {prefix_text!r} is not a number")
        if int(prefix_text) > _V6_BITS:
            raise _Bad(f"prefix length {prefix_text} is out of range 0-{_V6_BITS}")
        return Part(token, where, name=_check_name(base), prefix=int(prefix_text))
    if ":" in token:
        first, dash, last = token.partition("-")
        if not dash:
            key = _v6_key(token)
            return Part(token, where, ((key, key),))
        start = _v6_key(first)
        # 2001:db8::1-ff: the right side replaces the last 16-bit group.
        end = (start & ~0xFFFF) | int(last, 16) if _HEX_GROUP.fullmatch(last) else _v6_key(last)
        if start > end:
            raise _Bad("range start is after its end")
        return Part(token, where, ((start, end),))
    if _PLAIN_V4.fullmatch(token):  # the common case, and -iL files hold many
        a, b, c, d = map(int, token.split("."))
        key = (a << 24) | (b << 16) | (c << 8) | d if max(a, b, c, d) < 256 else _v4_key(token)
        return Part(token, where, ((key, key),))
    if _NUMERIC_V4.fullmatch(token):
        if token.count(".") == 3:
            return Part(token, where, _octet_pattern(token))
        match = _FULL_V4_RANGE.fullmatch(token)
        if match is None:
            raise _Bad("an IPv4 address needs four dot-separated octets")
        start, end = _v4_key(match[1]), _v4_key(match[2])
        if start > end:
            raise _Bad("range start is after its end")
        return Part(token, where, ((start, end),))
    return Part(token, where, name=_check_name(token))


def parse_token(token: str, where: str, role: str) -> list[Part]:
    """A whitespace-free token: an octet pattern, or comma-separated targets."""
    token = token.strip(",")  # "192.0.2.1, 192.0.2.2" splits into "192.0.2.1," first
    if not token:
        return []
    try:
        if "," in token and not (_NUMERIC_V4.fullmatch(token) and token.count(".") == 3):
            return [_parse_single(piece, where) for piece in token.split(",") if piece]
        return [_parse_single(token, where)]
    except _Bad as exc:
        raise spec_error(role, token, where, str(exc)) from None


def spec_texts(spec: object, what: str) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, IPv4Address | IPv6Address | IPv4Network | IPv6Network):
        return [str(spec)]
    if isinstance(spec, bytes) or not isinstance(spec, Iterable):
        raise TargetSpecError(f"{what} must be a string or an iterable of strings, not {spec!r}")
    texts = []
    for item in spec:
        if isinstance(item, IPv4Address | IPv6Address | IPv4Network | IPv6Network):
            item = str(item)
        if not isinstance(item, str):
            raise TargetSpecError(f"{what} items must be strings, not {item!r}")
        texts.append(item)
    return texts


def key_ranges(
    part: Part, resolved: dict[str, list[int]], family: int | None, role: str
) -> tuple[tuple[int, int], ...]:
    if part.name is None:
        if family is not None:
            for start, _ in part.ranges:
                version = 4 if start < V6_BASE else 6
                if version != family:
                    raise spec_error(
                        role, part.text, part.where, f"IPv{version} target but family={family}"
                    )
        return part.ranges
    keys = resolved[part.name]
    if part.prefix is None:
        return tuple((key, key) for key in keys)
    out = []
    for key in keys:
        version = 4 if key < V6_BASE else 6
        try:
            out.append(_cidr(key, str(part.prefix), version))
        except _Bad as exc:
            raise spec_error(role, part.text, part.where, str(exc)) from None
    return tuple(out)


def first_cover(items: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Split (start, end, rank) ranges into disjoint pieces, each owned by its lowest rank.

    A sweep over the starts with a heap of the ranges covering the current
    point: O(n log n). Rank -1 (an exclusion) owns its points and drops them.
    """
    items.sort()
    pieces: list[tuple[int, int, int]] = []
    active: list[tuple[int, int]] = []  # (rank, end)
    i, n = 0, len(items)
    pos = 0
    while i < n or active:
        if not active:
            pos = max(pos, items[i][0])
        while i < n and items[i][0] <= pos:
            heapq.heappush(active, (items[i][2], items[i][1]))
            i += 1
        while active and active[0][1] < pos:
            heapq.heappop(active)
        if not active:
            continue
        rank, end = active[0]
        stop = min(end, items[i][0] - 1) if i < n else end
        if rank >= 0:
            if pieces and pieces[-1][2] == rank and pieces[-1][1] + 1 == pos:
                pieces[-1] = (pieces[-1][0], stop, rank)
            else:
                pieces.append((pos, stop, rank))
        pos = stop + 1
    return pieces
