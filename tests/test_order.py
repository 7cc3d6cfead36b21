"""ProbeOrder: a seeded permutation of the probe space, and exact shards of it."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.errors import PortlibError, ScanError
from portlib.scanning.order import (
    ProbeOrder,
    SizeOverflowError,
    _group_for,
    _is_prime,
    _primitive_root,
    parse_shard,
)

seeds = st.integers(min_value=0, max_value=2**64 - 1)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 100, 256, 1009, 4096])
def test_every_index_exactly_once(size: int) -> None:
    for seed in (0, 1, 2**64 - 1):
        order = list(ProbeOrder(size, seed=seed))
        assert sorted(order) == list(range(size))
        assert len(order) == size


@settings(max_examples=150, deadline=None)
@given(size=st.integers(min_value=0, max_value=5000), seed=seeds)
def test_property_permutation(size: int, seed: int) -> None:
    order = ProbeOrder(size, seed=seed)
    produced = list(order)
    assert len(produced) == size == order.count == len(order)
    assert set(produced) == set(range(size))


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=3000),
    seed=seeds,
    shards=st.integers(min_value=1, max_value=12),
)
def test_property_shards_partition_exactly(size: int, seed: int, shards: int) -> None:
    seen: list[int] = []
    for index in range(shards):
        part = ProbeOrder(size, seed=seed, shard=(index, shards))
        produced = list(part)
        assert len(produced) == part.count  # each shard knows its exact size
        seen += produced
    # Every probe appears once across the shards, none twice.
    assert len(seen) == size
    assert sorted(seen) == list(range(size))


@settings(max_examples=50, deadline=None)
@given(size=st.integers(min_value=0, max_value=2000), seed=seeds)
def test_property_deterministic_per_seed(size: int, seed: int) -> None:
    assert list(ProbeOrder(size, seed=seed)) == list(ProbeOrder(size, seed=seed))
    assert list(ProbeOrder(size, seed=seed, shard=(1, 3))) == list(
        ProbeOrder(size, seed=seed, shard=(1, 3))
    )


def test_iterating_twice_gives_the_same_order() -> None:
    order = ProbeOrder(500, seed=42)
    assert list(order) == list(order)


def test_different_seeds_give_different_orders() -> None:
    orders = {tuple(ProbeOrder(1000, seed=seed)) for seed in range(20)}
    assert len(orders) == 20


def test_order_is_shuffled_not_sequential() -> None:
    order = list(ProbeOrder(10_000, seed=7))
    assert order != sorted(order)
    in_place = sum(1 for position, index in enumerate(order) if position == index)
    assert in_place < 100
    # Consecutive probes are rarely neighbours: a scan does not hammer one host's ports.
    neighbours = sum(1 for a, b in itertools.pairwise(order) if abs(a - b) == 1)
    assert neighbours < 100


def test_shards_differ_from_each_other_and_spread_over_the_space() -> None:
    size = 10_000
    first = list(ProbeOrder(size, seed=3, shard=(0, 4)))
    assert first != list(ProbeOrder(size, seed=3, shard=(1, 4)))
    # Not a contiguous block: the shard covers the whole space.
    assert min(first) < size // 10 and max(first) > size - size // 10


def test_one_shard_is_the_whole_order() -> None:
    assert list(ProbeOrder(300, seed=5, shard=(0, 1))) == list(ProbeOrder(300, seed=5))


def test_more_shards_than_probes() -> None:
    parts = [list(ProbeOrder(3, seed=1, shard=(i, 8))) for i in range(8)]
    assert sorted(itertools.chain.from_iterable(parts)) == [0, 1, 2]
    assert [len(p) for p in parts].count(0) == 5
    assert not ProbeOrder(3, seed=1, shard=(7, 8))


def test_huge_space_is_never_materialized() -> None:
    size = 2**64 * 65535  # an IPv6 /64 times every port
    tracemalloc.start()
    try:
        order = ProbeOrder(size, seed=9)
        first = list(itertools.islice(order, 1000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000
    assert order.count == size == order.size
    assert len(set(first)) == 1000
    assert all(0 <= i < size for i in first)
    with pytest.raises(SizeOverflowError, match="count"):
        len(order)
    assert bool(order)


def test_huge_shards_count_exactly() -> None:
    size = 2**128 * 65535 + 12345
    counts = [ProbeOrder(size, seed=1, shard=(i, 7)).count for i in range(7)]
    assert sum(counts) == size
    assert max(counts) - min(counts) <= 1
    sample = list(itertools.islice(ProbeOrder(size, seed=1, shard=(3, 7)), 100))
    assert len(set(sample)) == 100 and all(0 <= i < size for i in sample)


def test_size_overflow_error_is_a_portlib_and_overflow_error() -> None:
    assert issubclass(SizeOverflowError, PortlibError)
    assert issubclass(SizeOverflowError, OverflowError)


def test_accessors_and_repr() -> None:
    order = ProbeOrder(10, seed=3, shard=(1, 2))
    assert (order.size, order.seed, order.shard, order.count) == (10, 3, (1, 2), 5)
    assert repr(order) == "ProbeOrder(size=10, seed=3, shard=(1, 2))"
    assert not ProbeOrder(0, seed=0)
    assert list(ProbeOrder(0, seed=0)) == []
    assert list(ProbeOrder(1, seed=0)) == [0]


@pytest.mark.parametrize(
    ("shard", "fragment"),
    [
        ((4, 4), "out of range 0-3"),
        ((-1, 2), "out of range 0-1"),
        ((0, 0), "at least 1"),
        ("ab", "pair of integers"),
        ((1.0, 2), "pair of integers"),
        ((True, 2), "pair of integers"),
        ((1, 2, 3), "pair"),
        (5, "pair"),
    ],
)
def test_bad_shard(shard: object, fragment: str) -> None:
    with pytest.raises(ScanError, match=fragment):
        ProbeOrder(10, seed=1, shard=shard)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"size": -1, "seed": 1}, "size"),
        ({"size": 1.5, "seed": 1}, "size"),
        ({"size": 10, "seed": -1}, "seed"),
        ({"size": 10, "seed": 2**64}, "seed"),
        ({"size": 10, "seed": "x"}, "seed"),
    ],
)
def test_bad_size_or_seed(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ScanError, match=fragment):
        ProbeOrder(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"), [("1/4", (0, 4)), ("4/4", (3, 4)), ("1/1", (0, 1)), (" 2 / 3 ", (1, 3))]
)
def test_parse_shard_is_one_based(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected
    ProbeOrder(10, seed=0, shard=expected)  # what it returns is what ProbeOrder takes


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0/4", "numbered 1 to 4"),
        ("5/4", "numbered 1 to 4"),
        ("1/0", "at least 1"),
        ("a/b", "expected I/N"),
        ("1-4", "expected I/N"),
        ("", "expected I/N"),
        ("-1/4", "expected I/N"),
    ],
)
def test_parse_shard_errors(text: str, fragment: str) -> None:
    with pytest.raises(ScanError, match=fragment) as caught:
        parse_shard(text)
    assert repr(text) in str(caught.value)


def test_parse_shard_rejects_non_strings() -> None:
    with pytest.raises(ScanError):
        parse_shard(3)  # type: ignore[arg-type]


def test_primality_agrees_with_trial_division() -> None:
    def slow(n: int) -> bool:
        return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))

    assert [n for n in range(20_000) if _is_prime(n)] == [n for n in range(20_000) if slow(n)]
    # Carmichael numbers and strong pseudoprimes (to base 2; to every base up to 23).
    for composite in (561, 2047, 41041, 825265, 3215031751, 3825123056546413051):
        assert not _is_prime(composite)
    assert _is_prime(2**61 - 1) and _is_prime(2**89 - 1) and not _is_prime(2**67 - 1)


@pytest.mark.parametrize("count", [1, 2, 3, 10, 100, 1000, 6000])
def test_generator_is_a_primitive_root(count: int) -> None:
    p, factors = _group_for(count)
    assert p > count and _is_prime(p)
    g = _primitive_root(p, factors, seed=11, label="t")
    x, seen = 1, set()
    for _ in range(p - 1):
        x = x * g % p
        seen.add(x)
    assert seen == set(range(1, p))  # g generates the whole group


@given(st.integers(0, 500), st.integers(1, 9))
def test_property_sequential_shards_partition_in_order(size: int, shards: int) -> None:
    walks = [
        list(ProbeOrder(size, seed=3, shard=(i, shards), sequential=True)) for i in range(shards)
    ]
    assert all(walk == sorted(walk) for walk in walks)
    assert sorted(i for walk in walks for i in walk) == list(range(size))
    assert [len(w) for w in walks] == [
        ProbeOrder(size, seed=3, shard=(i, shards), sequential=True).count for i in range(shards)
    ]
