"""Pure: randomized probe order over a huge index space, without materializing it.

A scan probes every (host, port) pair; the scanner numbers them 0 .. size-1 and
asks :class:`ProbeOrder` for the order. Probing in a pseudo-random order spreads
the load over hosts and ports (no host sees a burst of consecutive ports), as
zmap does.

How: the walk ``x <- x * g mod p`` over the multiplicative group of a prime
field visits every element of ``1 .. p-1`` exactly once when ``g`` is a
primitive root. We pick the smallest usable prime ``p`` above the space, a
seed-chosen primitive root and start, and skip the few elements past the end
of the space. Each step is one multiplication and one modulo, so nothing is
stored and the cost per index is a fraction of a microsecond in CPython.

Shards: shard ``i`` of ``n`` owns the indices ``k`` with ``k % n == i`` after a
seed-keyed affine scramble ``k -> (a*k + b) mod size`` (``a`` coprime to
``size``, so it is a bijection). The n shards therefore partition the space
exactly, each shard knows its exact size, and each shard's share is spread
over the whole space rather than being a block of it. Within a shard the order
is again a cyclic-group walk.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Iterator
from functools import lru_cache

from portlib.errors import ScanError, SizeOverflowError


def _primes_below(limit: int) -> tuple[int, ...]:
    """Sieve of Eratosthenes (cheaper at import than trial division)."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\0\0"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return tuple(n for n, prime in enumerate(sieve) if prime)


_SMALL_PRIMES: tuple[int, ...] = _primes_below(4096)
# Miller-Rabin with these bases is exact below 3.3e24 (about 2**81); above that
# a composite passing all of them is not known to exist for non-adversarial inputs.
_MR_BASES: tuple[int, ...] = _SMALL_PRIMES[:25]
_MAX_SEED = 2**64


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for q in _SMALL_PRIMES[:60]:
        if n % q == 0:
            return n == q
    d, s = n - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime_factors(n: int) -> tuple[int, ...] | None:
    """The distinct prime factors of n if n is small primes times at most one big prime."""
    factors: list[int] = []
    for q in _SMALL_PRIMES:
        if n % q == 0:
            factors.append(q)
            while n % q == 0:
                n //= q
        if q * q > n:
            break
    if n == 1:
        return tuple(factors)
    if _is_prime(n):
        return (*factors, n)
    return None


@lru_cache(maxsize=64)
def _group_for(count: int) -> tuple[int, tuple[int, ...]]:
    """The smallest prime p > count whose p-1 we can factor, and those factors."""
    p = count + 1
    while True:
        if _is_prime(p):
            factors = _prime_factors(p - 1)
            if factors is not None:
                return p, factors
        p += 1


def _derive(seed: int, label: str, bound: int) -> int:
    """A number in range(bound) fixed by (seed, label): stable across Python versions."""
    digest = hashlib.blake2b(f"portlib-order:{seed}:{label}".encode(), digest_size=64).digest()
    return int.from_bytes(digest, "big") % bound


def _primitive_root(p: int, factors: tuple[int, ...], seed: int, label: str) -> int:
    if p <= 3:
        return p - 1  # the only generator of (Z/2)* and (Z/3)*
    attempt = 0
    while True:
        g = 2 + _derive(seed, f"{label}:g{attempt}", p - 3)
        if all(pow(g, (p - 1) // q, p) != 1 for q in factors):
            return g
        attempt += 1


class ProbeOrder:
    """Every index of ``range(size)`` exactly once, in a seeded pseudo-random order.

    >>> sorted(ProbeOrder(10, seed=7)) == list(range(10))
    True
    >>> list(ProbeOrder(10, seed=7)) == list(ProbeOrder(10, seed=7))
    True

    ``shard=(i, n)`` (0-based ``i``) yields only shard i's share; the n shards
    partition the space. ``count`` (and ``len()`` when it fits) is this shard's
    exact number of indices. Nothing proportional to ``size`` is ever stored.
    ``sequential=True`` (nmap's ``-r``) walks the indices in ascending order
    instead; shard i then takes ``i, i + n, i + 2n, ...``.

    >>> list(ProbeOrder(10, seed=7, shard=(1, 3), sequential=True))
    [1, 4, 7]
    """

    __slots__ = ("_a", "_b", "_count", "_index", "_prime", "_root", "_seed", "_sequential",
                 "_shards", "_size", "_start")  # fmt: skip

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shard: tuple[int, int] | None = None,
        sequential: bool = False,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ScanError(f"probe space size must be a non-negative integer, not {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
            raise ScanError(f"seed must be an integer in 0 .. 2**64-1, not {seed!r}")
        index, shards = _check_shard(shard)
        self._size = size
        self._seed = seed
        self._index = index
        self._shards = shards
        self._count = (size - index + shards - 1) // shards if index < size else 0
        self._sequential = sequential
        # The affine scramble that spreads each shard over the space (unused when n == 1).
        self._a, self._b = 1, 0
        if shards > 1 and size > 1:
            attempt = 0
            while True:
                a = 1 + _derive(seed, f"a{attempt}", size - 1)
                if math.gcd(a, size) == 1:
                    break
                attempt += 1
            self._a, self._b = a, _derive(seed, "b", size)
        self._prime, self._root, self._start = 2, 1, 1
        if self._count:
            label = f"shard{index}/{shards}"
            self._prime, factors = _group_for(self._count)
            self._root = _primitive_root(self._prime, factors, seed, label)
            self._start = 1 + _derive(seed, f"{label}:start", self._prime - 1)

    @property
    def size(self) -> int:
        """The whole space, all shards together."""
        return self._size

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def shard(self) -> tuple[int, int]:
        """(i, n): this is shard i (0-based) of n."""
        return (self._index, self._shards)

    @property
    def count(self) -> int:
        """How many indices this shard yields (exact, any size)."""
        return self._count

    def __len__(self) -> int:
        if self._count > sys.maxsize:
            raise SizeOverflowError(
                f"{self._count} probes do not fit len(); use ProbeOrder.count for the exact number"
            )
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __repr__(self) -> str:
        sequential = ", sequential=True" if self._sequential else ""
        return (
            f"ProbeOrder(size={self._size}, seed={self._seed}, "
            f"shard=({self._index}, {self._shards}){sequential})"
        )

    @property
    def sequential(self) -> bool:
        return self._sequential

    def __iter__(self) -> Iterator[int]:
        if self._sequential:
            return iter(range(self._index, self._size, self._shards))
        if self._shards == 1:
            return self._walk_whole()
        return self._walk_shard()

    # The two walks are written out in full: the loop body is the hot path of every
    # scan, so it uses locals only and calls no function per index.
    def _walk_whole(self) -> Iterator[int]:
        count = self._count
        p = self._prime
        g = self._root
        x = self._start
        left = count
        while left:
            if x <= count:  # x runs over 1 .. p-1; index x-1 must be < count
                yield x - 1
                left -= 1
            x = x * g % p

    def _walk_shard(self) -> Iterator[int]:
        count = self._count
        p = self._prime
        g = self._root
        x = self._start
        left = count
        size = self._size
        n = self._shards
        a = self._a
        offset = self._a * self._index + self._b  # a*(i + n*v) + b == offset + a*n*v
        step = a * n
        while left:
            if x <= count:
                yield (offset + step * (x - 1)) % size
                left -= 1
            x = x * g % p


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        index, shards = shard
    except (TypeError, ValueError):
        raise ScanError(f"shard must be a pair (i, n), not {shard!r}") from None
    if (
        not (isinstance(index, int) and isinstance(shards, int))
        or isinstance(index, bool)
        or isinstance(shards, bool)
    ):
        raise ScanError(f"shard must be a pair of integers (i, n), not {shard!r}")
    if shards < 1:
        raise ScanError(f"shard count must be at least 1, not {shards}")
    if not 0 <= index < shards:
        raise ScanError(f"shard index {index} is out of range 0-{shards - 1} for {shards} shards")
    return index, shards


_SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse the CLI's ``--shard I/N`` (1-based: ``1/4`` .. ``4/4``) into a 0-based (i, n).

    1-based because ``1/4`` reads as "the first of four"; the returned pair is
    what ``ProbeOrder(shard=...)`` and ``ScanWork.shard`` take.

    >>> parse_shard("1/4")
    (0, 4)
    """
    match = _SHARD_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ScanError(f"bad shard {text!r}: expected I/N, for example 1/4 (shard 1 of 4)")
    number, shards = int(match[1]), int(match[2])
    if shards < 1:
        raise ScanError(f"bad shard {text!r}: the number of shards must be at least 1")
    if not 1 <= number <= shards:
        raise ScanError(f"bad shard {text!r}: shards are numbered 1 to {shards}")
    return number - 1, shards


__all__ = ["ProbeOrder", "SizeOverflowError", "parse_shard"]
