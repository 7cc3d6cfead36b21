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

import os
import socket
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv6Address,
    ip_address,
)
from typing import TYPE_CHECKING, Any, Final

from portlib.errors import SizeOverflowError, TargetSpecError
from portlib.targetspec import (
    MAX_PATTERN_RANGES,
    V6_BASE,
    Part,
    address_to_key,
    first_cover,
    key_ranges,
    key_to_address,
    parse_token,
    spec_error,
    spec_texts,
)

if TYPE_CHECKING:
    from portlib.model import IPAddress


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
        return Target(key_to_address(key), self._names.get(key))

    def __iter__(self) -> Iterator[Target]:
        return self.iter_from(0)

    def iter_from(self, index: int) -> Iterator[Target]:
        """The targets from ``index`` on, in order (a resumed scan skips what it did
        without walking it: O(log ranges) to the first one)."""
        names = self._names
        block = bisect_right(self._cum, index) if index > 0 else 0
        skip = index - (self._cum[block - 1] if block else 0)
        for start, end in zip(self._starts[block:], self._ends[block:], strict=True):
            for key in range(start + skip, end + 1):
                yield Target(key_to_address(key), names.get(key))
            skip = 0

    def addresses(self) -> Iterator[IPv4Address | IPv6Address]:
        """The addresses alone, in order (cheaper than iterating Targets)."""
        for start, end in zip(self._starts, self._ends, strict=True):
            for key in range(start, end + 1):
                yield IPv4Address(key) if key < V6_BASE else IPv6Address(key - V6_BASE)

    def ranges(self) -> Iterator[tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]]:
        """(first, last) address of each contiguous run, in order."""
        for start, end in zip(self._starts, self._ends, strict=True):
            if start < V6_BASE <= end:  # a run may cross from 255.255.255.255 to ::
                yield key_to_address(start), key_to_address(V6_BASE - 1)
                yield key_to_address(V6_BASE), key_to_address(end)
            else:
                yield key_to_address(start), key_to_address(end)

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
        return self._has_key(address_to_key(item))

    def _has_key(self, key: int) -> bool:
        at = bisect_right(self._sorted_starts, key) - 1
        return at >= 0 and key <= self._sorted_ends[at]

    def hostname(self, address: IPAddress | str) -> str | None:
        """The name this address came from, if it came from one."""
        try:
            key = address_to_key(ip_address(address))
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


def _read_file(path: str | os.PathLike[str], role: str) -> list[tuple[str, str]]:
    """Tokens of a target file (``-iL``): whitespace separated, ``#`` starts a comment.

    At most ``limit`` bytes are read from any input (a file, a pipe, ``/dev/zero``), in
    chunks, so an input that never ends costs no more; a NUL byte means it is no text.
    """
    limit = 64 << 20  # millions of targets; a bigger list belongs in several files
    longest = 1024  # no address, range or host name is longer
    name = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else repr(path)
    chunks: list[bytes] = []
    problem = ""
    try:
        from_stdin = os.fspath(path) == "-"
        if from_stdin:
            if sys.stdin is None:
                raise OSError("there is no standard input")
            binary = getattr(sys.stdin, "buffer", None)  # a text stream set by a caller has none
            text_in = sys.stdin
            read = binary.read if binary is not None else lambda n: text_in.read(n).encode()
        else:
            stream = open(path, "rb")  # noqa: SIM115 - closed below, stdin is not
            read = stream.read
        try:
            size = 0
            while chunk := read(min(1 << 20, limit + 1 - size)):
                size += len(chunk)
                if b"\0" in chunk:
                    problem = "it holds NUL bytes, so it is not a text file of targets"
                elif size > limit:
                    problem = f"it is larger than {limit} bytes; split it into several files"
                if problem:
                    break
                chunks.append(chunk)
        finally:
            if not from_stdin:
                stream.close()
        lines = b"".join(chunks).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise TargetSpecError(f"cannot read {role} file {name!r}: {exc}") from None
    if problem:
        raise TargetSpecError(f"cannot read {role} file {name!r}: {problem}")
    tokens = []
    for number, line in enumerate(lines, 1):
        for token in line.partition("#")[0].split():
            if len(token) > longest:
                raise TargetSpecError(
                    f"bad {role} {token[:40]!r}... at {name}:{number}: longer than any"
                    f" address, range or host name ({len(token)} characters)"
                )
            tokens.append((token, f" at {name}:{number}"))
    return tokens


def _collect(
    spec: object,
    file: str | os.PathLike[str] | None,
    role: str,
) -> list[Part]:
    tokens = [(tok, "") for text in spec_texts(spec, role) for tok in text.split()]
    if file is not None:
        tokens += _read_file(file, role)
    parts: list[Part] = []
    for token, where in tokens:
        parts += parse_token(token, where, role)
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
    part: Part, infos: Iterable[tuple[Any, ...]], family: int | None, resolve_all: bool, role: str
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
        key = address_to_key(address)
        if key not in keys:
            keys.append(key)
    if not keys:
        wanted = f"IPv{family} " if family else ""
        raise spec_error(
            role, part.text, part.where, f"host name {part.name!r} has no {wanted}address"
        )
    return keys


def _resolve_error(
    part: Part, role: str, exc: BaseException, family: int | None
) -> TargetSpecError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    to = f" to an IPv{family} address" if family else ""
    return spec_error(
        role, part.text, part.where, f"cannot resolve host name {part.name!r}{to} ({reason})"
    )


def _query_family(family: int | None) -> int:
    return _FAMILIES[family]


def _resolve_sync(
    parts: list[Part], family: int | None, resolve_all: bool, role: str
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
    parts: list[Part], family: int | None, resolve_all: bool, role: str
) -> dict[str, list[int]]:
    import asyncio

    loop = asyncio.get_running_loop()
    named: dict[str, Part] = {}
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


def _assemble(
    parts: list[Part],
    excluded: list[Part],
    resolved: dict[str, list[int]],
    resolved_excluded: dict[str, list[int]],
    family: int | None,
) -> TargetSet:
    items: list[tuple[int, int, int]] = []
    names: dict[int, str] = {}
    for rank, part in enumerate(parts):
        for start, end in key_ranges(part, resolved, family, "target"):
            items.append((start, end, rank))
        if part.name is not None:
            for key in resolved[part.name]:
                names.setdefault(key, part.name)
    for part in excluded:
        for start, end in key_ranges(part, resolved_excluded, None, "exclusion"):
            items.append((start, end, -1))
    pieces = first_cover(items)
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
) -> tuple[list[Part], list[Part], int | None]:
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
