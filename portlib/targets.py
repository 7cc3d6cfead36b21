"""Target specifications, as nmap reads them, parsed into lazy typed values.

Targets (``parse_targets``): whitespace-separated parts, each one of

- an address: ``192.0.2.1``, ``2001:db8::1``
- a CIDR block, either family, host bits allowed as in nmap (``192.0.2.5/24`` is
  the whole /24): ``192.0.2.0/24``, ``2001:db8::/120``, ``localhost/30``
- a dash range: ``192.0.2.1-192.0.2.9``, ``2001:db8::1-2001:db8::ff``, and for
  IPv6 ``2001:db8::1-ff`` (the last 16-bit group)
- an IPv4 octet pattern, where each octet is a comma list of numbers and ranges:
  ``192.0.2.1-20``, ``192.0.2.1,3,5-7``, ``192.0.2-3.1-5``, ``192.0.2.*``,
  ``192.0.2.-9`` (0-9), ``192.0.2.250-`` (250-255)
- a host name (``localhost``), resolved with getaddrinfo.

Commas: inside an IPv4 octet pattern they list octet values (nmap's meaning);
anywhere else they separate targets, so ``localhost,192.0.2.7`` and
``192.0.2.0/24,2001:db8::1`` are two targets each.

Order and duplicates: targets come out in the order their parts were given, each
part ascending; an address given twice appears once, at its first place. Large
parts stay ranges: ``2001:db8::/32`` is one pair of integers, never a list.

Port specifications are ``portlib.portspec``.
"""

from __future__ import annotations

import heapq
import os
import re
import socket
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
)
from typing import TYPE_CHECKING, Any, Final

from portlib.errors import SizeOverflowError, TargetSpecError

if TYPE_CHECKING:
    from portlib.model import IPAddress

# Addresses of both families share one integer key space, so one sorted list of
# ranges serves both: IPv4 keys are the address, IPv6 keys sit above all of them.
_V6_BASE: Final = 1 << 32
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
_FAMILIES: Final = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}


@dataclass(frozen=True, slots=True)
class Target:
    """One host to probe; ``hostname`` is set when it came from a name.

    Example:

    >>> import portlib
    >>> portlib.parse_targets("192.0.2.7")[0]
    Target(address=IPv4Address('192.0.2.7'), hostname=None)
    """

    address: IPv4Address | IPv6Address
    hostname: str | None = None

    def __str__(self) -> str:
        if self.hostname:
            return f"{self.hostname} ({self.address})"
        return str(self.address)


def _key_to_address(key: int) -> IPv4Address | IPv6Address:
    if key < _V6_BASE:
        return IPv4Address(key)
    return IPv6Address(key - _V6_BASE)


def _address_to_key(address: IPAddress) -> int:
    if address.version == 4:
        return int(address)
    return int(address) + _V6_BASE


class TargetSet(Sequence[Target]):
    """An immutable, lazy sequence of targets: indexable, iterable, any size.

    ``size`` is exact for any set (``2**64`` for an IPv6 /64); ``len()`` works
    while the size fits a machine integer. ``ts[i]`` costs O(log ranges), so a
    randomized scan can pick targets by index without building a list.

    Example:

    >>> import portlib
    >>> targets = portlib.parse_targets("192.0.2.0/30")
    >>> targets.size, str(targets[1].address)
    (4, '192.0.2.1')
    """

    __slots__ = ("_cum", "_ends", "_names", "_size", "_sorted_ends", "_sorted_starts", "_starts")

    def __init__(
        self,
        blocks: Iterable[tuple[int, int]] = (),
        names: dict[int, str] | None = None,
    ) -> None:
        # blocks: disjoint inclusive key ranges in output order (see _assemble).
        starts: list[int] = []
        ends: list[int] = []
        cum: list[int] = []
        total = 0
        for start, end in blocks:
            if starts and ends[-1] + 1 == start:  # contiguous: one block iterates the same
                ends[-1] = end
                total += end - start + 1
                cum[-1] = total
                continue
            starts.append(start)
            ends.append(end)
            total += end - start + 1
            cum.append(total)
        self._starts = starts
        self._ends = ends
        self._cum = cum
        self._size = total
        order = sorted(range(len(starts)), key=starts.__getitem__)
        self._sorted_starts = [starts[i] for i in order]
        self._sorted_ends = [ends[i] for i in order]
        self._names: dict[int, str] = dict(names or {})

    @property
    def size(self) -> int:
        """The exact number of targets."""
        return self._size

    def __len__(self) -> int:
        if self._size > sys.maxsize:
            raise SizeOverflowError(
                f"{self._size} targets do not fit len(); use TargetSet.size for the exact number"
            )
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __getitem__(self, index: int) -> Target:  # type: ignore[override]
        if isinstance(index, slice) or not isinstance(index, int):
            raise TypeError("TargetSet indices must be integers")
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("TargetSet index out of range")
        block = bisect_right(self._cum, index)
        before = self._cum[block - 1] if block else 0
        key = self._starts[block] + index - before
        return Target(_key_to_address(key), self._names.get(key))

    def __iter__(self) -> Iterator[Target]:
        names = self._names
        for start, end in zip(self._starts, self._ends, strict=True):
            for key in range(start, end + 1):
                yield Target(_key_to_address(key), names.get(key))

    def addresses(self) -> Iterator[IPv4Address | IPv6Address]:
        """The addresses alone, in order (cheaper than iterating Targets)."""
        for start, end in zip(self._starts, self._ends, strict=True):
            for key in range(start, end + 1):
                yield IPv4Address(key) if key < _V6_BASE else IPv6Address(key - _V6_BASE)

    def ranges(self) -> Iterator[tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]]:
        """(first, last) address of each contiguous run, in order."""
        for start, end in zip(self._starts, self._ends, strict=True):
            if start < _V6_BASE <= end:  # a run may cross from 255.255.255.255 to ::
                yield _key_to_address(start), _key_to_address(_V6_BASE - 1)
                yield _key_to_address(_V6_BASE), _key_to_address(end)
            else:
                yield _key_to_address(start), _key_to_address(end)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Target):
            item = item.address
        if isinstance(item, str):
            try:
                item = ip_address(item)
            except ValueError:
                return False
        if not isinstance(item, IPv4Address | IPv6Address):
            return False
        return self._has_key(_address_to_key(item))

    def _has_key(self, key: int) -> bool:
        at = bisect_right(self._sorted_starts, key) - 1
        return at >= 0 and key <= self._sorted_ends[at]

    def hostname(self, address: IPAddress | str) -> str | None:
        """The name this address came from, if it came from one."""
        try:
            key = _address_to_key(ip_address(address))
        except ValueError:
            return None
        return self._names.get(key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TargetSet):
            return NotImplemented
        return (
            self._starts == other._starts
            and self._ends == other._ends
            and self._names == other._names
        )

    def __hash__(self) -> int:
        return hash((tuple(self._starts), tuple(self._ends)))

    def __repr__(self) -> str:
        shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in _take(self.ranges(), 4))
        more = ", ..." if len(self._starts) > 4 else ""
        return f"TargetSet(size={self._size}, ranges=[{shown}{more}])"


def _take(it: Iterator[tuple[IPAddress, IPAddress]], n: int) -> list[tuple[IPAddress, IPAddress]]:
    out: list[tuple[IPAddress, IPAddress]] = []
    for item in it:
        if len(out) == n:
            break
        out.append(item)
    return out


# ---------------------------------------------------------------- parsing (pure)


@dataclass(frozen=True, slots=True)
class _Part:
    """One target as written: literal key ranges, or a host name still to resolve."""

    text: str
    where: str
    ranges: tuple[tuple[int, int], ...] = ()
    name: str | None = None
    prefix: int | None = None  # name/prefix: the block around each resolved address


class _Bad(Exception):
    """Internal: why a token is bad; the caller adds which token and where."""


def _bad(role: str, token: str, where: str, why: str) -> TargetSpecError:
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
    if "%" in text:
        raise _Bad("scoped IPv6 addresses (with %zone) are not supported")
    try:
        return int(IPv6Address(text)) + _V6_BASE
    except ValueError as exc:
        raise _Bad(f"not a valid IPv6 address ({exc})") from None


def _cidr(key: int, prefix_text: str, version: int) -> tuple[int, int]:
    bits = _V4_BITS if version == 4 else _V6_BITS
    if not prefix_text.isdigit() or not prefix_text.isascii():
        raise _Bad(f"prefix length {prefix_text!r} is not a number")
    prefix = int(prefix_text)
    if prefix > bits:
        raise _Bad(f"prefix length {prefix} is out of range 0-{bits} for IPv{version}")
    base = _V6_BASE if version == 6 else 0
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


def _parse_single(token: str, where: str) -> _Part:
    """One comma-free token."""
    base, slash, prefix_text = token.partition("/")
    if slash:
        if ":" in base:
            return _Part(token, where, (_cidr(_v6_key(base), prefix_text, 6),))
        if _NUMERIC_V4.fullmatch(base):
            return _Part(token, where, (_cidr(_v4_key(base), prefix_text, 4),))
        if not prefix_text.isdigit() or not prefix_text.isascii():
            raise _Bad(f"prefix length {prefix_text!r} is not a number")
        if int(prefix_text) > _V6_BITS:
            raise _Bad(f"prefix length {prefix_text} is out of range 0-{_V6_BITS}")
        return _Part(token, where, name=_check_name(base), prefix=int(prefix_text))
    if ":" in token:
        first, dash, last = token.partition("-")
        if not dash:
            key = _v6_key(token)
            return _Part(token, where, ((key, key),))
        start = _v6_key(first)
        # 2001:db8::1-ff: the right side replaces the last 16-bit group.
        end = (start & ~0xFFFF) | int(last, 16) if _HEX_GROUP.fullmatch(last) else _v6_key(last)
        if start > end:
            raise _Bad("range start is after its end")
        return _Part(token, where, ((start, end),))
    if _PLAIN_V4.fullmatch(token):  # the common case, and -iL files hold many
        a, b, c, d = map(int, token.split("."))
        key = (a << 24) | (b << 16) | (c << 8) | d if max(a, b, c, d) < 256 else _v4_key(token)
        return _Part(token, where, ((key, key),))
    if _NUMERIC_V4.fullmatch(token):
        if token.count(".") == 3:
            return _Part(token, where, _octet_pattern(token))
        match = _FULL_V4_RANGE.fullmatch(token)
        if match is None:
            raise _Bad("an IPv4 address needs four dot-separated octets")
        start, end = _v4_key(match[1]), _v4_key(match[2])
        if start > end:
            raise _Bad("range start is after its end")
        return _Part(token, where, ((start, end),))
    return _Part(token, where, name=_check_name(token))


def _parse_token(token: str, where: str, role: str) -> list[_Part]:
    """A whitespace-free token: an octet pattern, or comma-separated targets."""
    token = token.strip(",")  # "192.0.2.1, 192.0.2.2" splits into "192.0.2.1," first
    if not token:
        return []
    try:
        if "," in token and not (_NUMERIC_V4.fullmatch(token) and token.count(".") == 3):
            return [_parse_single(piece, where) for piece in token.split(",") if piece]
        return [_parse_single(token, where)]
    except _Bad as exc:
        raise _bad(role, token, where, str(exc)) from None


def _spec_texts(spec: object, what: str) -> list[str]:
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


def _read_file(path: str | os.PathLike[str], role: str) -> list[tuple[str, str]]:
    """Tokens of a target file (``-iL``): whitespace separated, ``#`` starts a comment."""
    try:
        if os.fspath(path) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise TargetSpecError(f"cannot read {role} file {os.fsdecode(path)!r}: {exc}") from None
    tokens = []
    for number, line in enumerate(lines, 1):
        for token in line.partition("#")[0].split():
            tokens.append((token, f" at {os.fsdecode(path)}:{number}"))
    return tokens


def _collect(
    spec: object,
    file: str | os.PathLike[str] | None,
    role: str,
) -> list[_Part]:
    tokens = [(tok, "") for text in _spec_texts(spec, role) for tok in text.split()]
    if file is not None:
        tokens += _read_file(file, role)
    parts: list[_Part] = []
    for token, where in tokens:
        parts += _parse_token(token, where, role)
    return parts


def _check_family(family: int | None) -> int | None:
    if family == socket.AF_INET:
        return 4
    if family == socket.AF_INET6:
        return 6
    if family not in _FAMILIES:
        raise TargetSpecError(f"family must be 4, 6 or None, not {family!r}")
    return family


# ---------------------------------------------------------------- resolution (I/O)


def _pick(
    part: _Part, infos: Iterable[tuple[Any, ...]], family: int | None, resolve_all: bool, role: str
) -> list[int]:
    keys: list[int] = []
    seen_versions: set[int] = set()
    for info in infos:
        sockaddr = info[4]
        if not isinstance(sockaddr, tuple) or not sockaddr:
            continue
        try:
            address = ip_address(str(sockaddr[0]).partition("%")[0])
        except ValueError:
            continue
        if family is not None and address.version != family:
            continue
        if not resolve_all and address.version in seen_versions:
            continue
        seen_versions.add(address.version)
        key = _address_to_key(address)
        if key not in keys:
            keys.append(key)
    if not keys:
        wanted = f"IPv{family} " if family else ""
        raise _bad(role, part.text, part.where, f"host name {part.name!r} has no {wanted}address")
    return keys


def _resolve_error(
    part: _Part, role: str, exc: BaseException, family: int | None
) -> TargetSpecError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    to = f" to an IPv{family} address" if family else ""
    return _bad(
        role, part.text, part.where, f"cannot resolve host name {part.name!r}{to} ({reason})"
    )


def _query_family(family: int | None) -> int:
    return _FAMILIES[family]


def _resolve_sync(
    parts: list[_Part], family: int | None, resolve_all: bool, role: str
) -> dict[str, list[int]]:
    resolved: dict[str, list[int]] = {}
    for part in parts:
        if part.name is None or part.name in resolved:
            continue
        try:
            infos = socket.getaddrinfo(part.name, None, _query_family(family), socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as exc:
            raise _resolve_error(part, role, exc, family) from None
        resolved[part.name] = _pick(part, list(infos), family, resolve_all, role)
    return resolved


async def _resolve_async(
    parts: list[_Part], family: int | None, resolve_all: bool, role: str
) -> dict[str, list[int]]:
    import asyncio

    loop = asyncio.get_running_loop()
    named: dict[str, _Part] = {}
    for part in parts:
        if part.name is not None:
            named.setdefault(part.name, part)
    answers = await asyncio.gather(
        *(
            loop.getaddrinfo(name, None, family=_query_family(family), type=socket.SOCK_STREAM)
            for name in named
        ),
        return_exceptions=True,
    )
    resolved: dict[str, list[int]] = {}
    for (name, part), answer in zip(named.items(), answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, OSError | UnicodeError | ValueError):
                raise answer
            raise _resolve_error(part, role, answer, family)
        resolved[name] = _pick(part, list(answer), family, resolve_all, role)
    return resolved


# ---------------------------------------------------------------- assembly (pure)


def _key_ranges(
    part: _Part, resolved: dict[str, list[int]], family: int | None, role: str
) -> tuple[tuple[int, int], ...]:
    if part.name is None:
        if family is not None:
            for start, _ in part.ranges:
                version = 4 if start < _V6_BASE else 6
                if version != family:
                    raise _bad(
                        role, part.text, part.where, f"IPv{version} target but family={family}"
                    )
        return part.ranges
    keys = resolved[part.name]
    if part.prefix is None:
        return tuple((key, key) for key in keys)
    out = []
    for key in keys:
        version = 4 if key < _V6_BASE else 6
        try:
            out.append(_cidr(key, str(part.prefix), version))
        except _Bad as exc:
            raise _bad(role, part.text, part.where, str(exc)) from None
    return tuple(out)


def _first_cover(items: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
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


def _assemble(
    parts: list[_Part],
    excluded: list[_Part],
    resolved: dict[str, list[int]],
    resolved_excluded: dict[str, list[int]],
    family: int | None,
) -> TargetSet:
    items: list[tuple[int, int, int]] = []
    names: dict[int, str] = {}
    for rank, part in enumerate(parts):
        for start, end in _key_ranges(part, resolved, family, "target"):
            items.append((start, end, rank))
        if part.name is not None:
            for key in resolved[part.name]:
                names.setdefault(key, part.name)
    for part in excluded:
        for start, end in _key_ranges(part, resolved_excluded, None, "exclusion"):
            items.append((start, end, -1))
    pieces = _first_cover(items)
    pieces.sort(key=lambda piece: piece[2])  # stable: ascending within each part
    targets = TargetSet((start, end) for start, end, _ in pieces)
    # Names of excluded addresses are dropped, so hostname() answers only for members.
    targets._names = {key: name for key, name in names.items() if targets._has_key(key)}
    return targets


def _prepare(
    spec: str | Iterable[str],
    exclude: str | Iterable[str] | None,
    input_file: str | os.PathLike[str] | None,
    exclude_file: str | os.PathLike[str] | None,
    family: int | None,
) -> tuple[list[_Part], list[_Part], int | None]:
    family = _check_family(family)
    parts = _collect(spec, input_file, "target")
    if not parts:
        raise TargetSpecError(
            "empty target specification: give an address, CIDR block, range or host name"
            " (for example 192.0.2.0/24 or localhost)"
        )
    excluded = _collect(exclude, exclude_file, "exclusion")
    return parts, excluded, family


def parse_targets(
    spec: str | Iterable[str],
    exclude: str | Iterable[str] | None = None,
    *,
    input_file: str | os.PathLike[str] | None = None,
    exclude_file: str | os.PathLike[str] | None = None,
    family: int | None = None,
    resolve_all: bool = False,
) -> TargetSet:
    """Parse a target specification (see the module doc) into a lazy TargetSet.

    ``spec`` is a string of whitespace-separated parts, or an iterable of such
    strings. ``input_file`` adds the targets of a file (nmap's ``-iL``; ``-`` is
    stdin), ``exclude``/``exclude_file`` remove addresses (same syntax, names
    resolved too). ``family`` (4, 6 or None) limits names and literals to one
    family. A name yields its first address of each family asked for, or every
    address with ``resolve_all``. Blocks on name resolution: in async code use
    :func:`parse_targets_async`. Bad specs raise ``TargetSpecError``.

    >>> ts = parse_targets("192.0.2.1,3,5-7 192.0.2.0/30", exclude="192.0.2.6")
    >>> [str(t) for t in ts]
    ['192.0.2.1', '192.0.2.3', '192.0.2.5', '192.0.2.7', '192.0.2.0', '192.0.2.2']
    >>> parse_targets("2001:db8::/32").size
    79228162514264337593543950336
    """
    parts, excluded, family = _prepare(spec, exclude, input_file, exclude_file, family)
    resolved = _resolve_sync(parts, family, resolve_all, "target")
    resolved_excluded = _resolve_sync(excluded, None, True, "exclusion")
    return _assemble(parts, excluded, resolved, resolved_excluded, family)


async def parse_targets_async(
    spec: str | Iterable[str],
    exclude: str | Iterable[str] | None = None,
    *,
    input_file: str | os.PathLike[str] | None = None,
    exclude_file: str | os.PathLike[str] | None = None,
    family: int | None = None,
    resolve_all: bool = False,
) -> TargetSet:
    """:func:`parse_targets` for async code: names resolve concurrently in the loop's executor."""
    parts, excluded, family = _prepare(spec, exclude, input_file, exclude_file, family)
    resolved = await _resolve_async(parts, family, resolve_all, "target")
    resolved_excluded = await _resolve_async(excluded, None, True, "exclusion")
    return _assemble(parts, excluded, resolved, resolved_excluded, family)


__all__ = [
    "MAX_PATTERN_RANGES",
    "Target",
    "TargetSet",
    "parse_targets",
    "parse_targets_async",
]
