"""parse_targets: every accepted form, every error, and the lazy TargetSet.

Names never go to real DNS: ``localhost`` comes from /etc/hosts, and every
other name (under the reserved ``.test`` domain) from a patched getaddrinfo.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portlib.errors import PortlibError, SizeOverflowError, TargetSpecError
from portlib.targets import Target, TargetSet, parse_targets, parse_targets_async

FAKE_DNS = {
    "a.test": ["192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8::11"],
    "b.test": ["2001:db8::20"],
    "c.test": ["192.0.2.30"],
    "dup.test": ["192.0.2.1"],
}


def fake_getaddrinfo(
    host: str, port: object, family: int = 0, type: int = 0, *args: object
) -> list[tuple[Any, ...]]:
    answers = []
    for text in FAKE_DNS.get(host.lower(), []):
        address = ip_address(text)
        af = socket.AF_INET if address.version == 4 else socket.AF_INET6
        if family not in (0, af):
            continue
        sockaddr = (text, 0) if address.version == 4 else (text, 0, 0, 0)
        answers.append((af, socket.SOCK_STREAM, 6, "", sockaddr))
    if not answers:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return answers


@pytest.fixture
def fake_dns() -> Iterator[None]:
    with mock.patch("socket.getaddrinfo", fake_getaddrinfo):
        yield


def addrs(targets: TargetSet) -> list[str]:
    return [str(t.address) for t in targets]


# ------------------------------------------------------------------ accepted forms


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("192.0.2.1", ["192.0.2.1"]),
        ("2001:db8::1", ["2001:db8::1"]),
        ("::ffff:192.0.2.1", ["::ffff:c000:201"]),
        ("192.0.2.0/30", ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        ("192.0.2.5/30", ["192.0.2.4", "192.0.2.5", "192.0.2.6", "192.0.2.7"]),  # host bits
        ("192.0.2.9/32", ["192.0.2.9"]),
        ("2001:db8::/126", ["2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8::3"]),
        ("2001:db8::7/127", ["2001:db8::6", "2001:db8::7"]),
        ("192.0.2.1-4", ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]),
        ("192.0.2.254-192.0.3.1", ["192.0.2.254", "192.0.2.255", "192.0.3.0", "192.0.3.1"]),
        (
            "2001:db8::fe-2001:db8::101",
            ["2001:db8::fe", "2001:db8::ff", "2001:db8::100", "2001:db8::101"],
        ),
        ("2001:db8::1-3", ["2001:db8::1", "2001:db8::2", "2001:db8::3"]),
        ("192.0.2.1,3,5-7", ["192.0.2.1", "192.0.2.3", "192.0.2.5", "192.0.2.6", "192.0.2.7"]),
        ("192.0.2-3.1-2", ["192.0.2.1", "192.0.2.2", "192.0.3.1", "192.0.3.2"]),
        ("192.0.2.7,3,1", ["192.0.2.1", "192.0.2.3", "192.0.2.7"]),  # a part is ascending
        ("192.0.2.-2", ["192.0.2.0", "192.0.2.1", "192.0.2.2"]),
        ("192.0.2.253-", ["192.0.2.253", "192.0.2.254", "192.0.2.255"]),
        ("192.0.2,3.0", ["192.0.2.0", "192.0.3.0"]),
        ("192.0.2.1 192.0.2.3", ["192.0.2.1", "192.0.2.3"]),
        ("192.0.2.1\t\n 192.0.2.3", ["192.0.2.1", "192.0.2.3"]),
        ("192.0.2.1,192.0.2.3", ["192.0.2.1", "192.0.2.3"]),
        ("192.0.2.0/31,2001:db8::1", ["192.0.2.0", "192.0.2.1", "2001:db8::1"]),
        ("192.0.2.1, 192.0.2.3,", ["192.0.2.1", "192.0.2.3"]),
        ("192.0.2.5 192.0.2.1", ["192.0.2.5", "192.0.2.1"]),  # the user's order
        ("192.0.2.2 192.0.2.1-3 192.0.2.2", ["192.0.2.2", "192.0.2.1", "192.0.2.3"]),
        ("2001:db8::1 192.0.2.1", ["2001:db8::1", "192.0.2.1"]),
        ("192.000.002.010", ["192.0.2.10"]),  # decimal, as nmap reads it
    ],
)
def test_accepted_forms(spec: str, expected: list[str]) -> None:
    targets = parse_targets(spec)
    assert addrs(targets) == expected
    assert targets.size == len(expected) == len(targets)


def test_octet_star_and_dash_cover_the_octet() -> None:
    assert parse_targets("192.0.2.*") == parse_targets("192.0.2.0/24")
    assert parse_targets("192.0.2.-") == parse_targets("192.0.2.0/24")
    assert parse_targets("192.0.*.*").size == 65536


def test_iterable_spec_and_address_objects() -> None:
    targets = parse_targets(["192.0.2.1 192.0.2.2", IPv4Address("192.0.2.9"),
                             ip_network("2001:db8::/127")])  # fmt: skip
    assert addrs(targets) == ["192.0.2.1", "192.0.2.2", "192.0.2.9", "2001:db8::", "2001:db8::1"]
    assert addrs(parse_targets(IPv6Address("::1"))) == ["::1"]


def test_exclusions_of_every_kind() -> None:
    targets = parse_targets(
        "192.0.2.0/24", exclude="192.0.2.0 192.0.2.2-5,192.0.2.8/29 192.0.2.128-192.0.2.255"
    )
    expected = ["192.0.2.1", *(f"192.0.2.{i}" for i in range(6, 8)),
                *(f"192.0.2.{i}" for i in range(16, 128))]  # fmt: skip
    assert addrs(targets) == expected
    assert "192.0.2.3" not in targets and "192.0.2.1" in targets


def test_exclusion_list_and_octet_pattern() -> None:
    targets = parse_targets("192.0.2.1-10", exclude=["192.0.2.1,3,5", "2001:db8::1"])
    assert addrs(targets) == [f"192.0.2.{i}" for i in (2, 4, 6, 7, 8, 9, 10)]


def test_excluding_everything_gives_an_empty_set() -> None:
    targets = parse_targets("192.0.2.0/30", exclude="192.0.2.0/24")
    assert targets.size == 0 and not targets and list(targets) == []


def test_large_block_is_lazy() -> None:
    tracemalloc.start()
    try:
        targets = parse_targets("10.0.0.0/8")
        last = targets[-1]
        middle = targets[8_000_000]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # a 16-million-address list would take about a gigabyte
    assert targets.size == 2**24 == len(targets)
    assert last.address == IPv4Address("10.255.255.255")
    assert middle.address == IPv4Address(int(IPv4Address("10.0.0.0")) + 8_000_000)
    assert next(iter(targets)).address == IPv4Address("10.0.0.0")
    assert "10.1.2.3" in targets and "11.0.0.0" not in targets


def test_ipv6_block_larger_than_len() -> None:
    targets = parse_targets("2001:db8::/64")
    assert targets.size == 2**64
    with pytest.raises(SizeOverflowError, match=r"size"):
        len(targets)
    with pytest.raises(OverflowError):  # what len() callers expect
        len(targets)
    assert targets[-1].address == IPv6Address("2001:db8::ffff:ffff:ffff:ffff")
    assert targets[2**63].address == IPv6Address("2001:db8::8000:0:0:0")
    assert bool(targets)


def test_big_octet_patterns_stay_ranges() -> None:
    targets = parse_targets("10.0-255.0-255.1")  # 65,536 separate addresses
    assert targets.size == 65536
    assert targets[0].address == IPv4Address("10.0.0.1")
    assert targets[-1].address == IPv4Address("10.255.255.1")
    assert targets[257].address == IPv4Address("10.1.1.1")


# ------------------------------------------------------------------ TargetSet behaviour


def test_getitem_iteration_and_contains_agree() -> None:
    targets = parse_targets("192.0.2.9 2001:db8::/126 192.0.2.1-3 ::1", exclude="192.0.2.2")
    listed = list(targets)
    assert [targets[i] for i in range(targets.size)] == listed
    assert [targets[i - targets.size] for i in range(targets.size)] == listed
    assert list(targets.addresses()) == [t.address for t in listed]
    for target in listed:
        assert target in targets and target.address in targets and str(target.address) in targets
    assert "192.0.2.2" not in targets and "nonsense" not in targets and 42 not in targets


def test_getitem_errors() -> None:
    targets = parse_targets("192.0.2.1-3")
    with pytest.raises(IndexError):
        targets[3]
    with pytest.raises(IndexError):
        targets[-4]
    with pytest.raises(TypeError):
        targets["0"]  # type: ignore[index]
    with pytest.raises(TypeError):
        targets[0:2]  # type: ignore[index]


def test_ranges_and_repr() -> None:
    targets = parse_targets("192.0.2.9 192.0.2.1-3 192.0.2.4")
    assert [(str(a), str(b)) for a, b in targets.ranges()] == [
        ("192.0.2.9", "192.0.2.9"),
        ("192.0.2.1", "192.0.2.4"),
    ]
    assert repr(targets) == "TargetSet(size=5, ranges=[192.0.2.9, 192.0.2.1-192.0.2.4])"


def test_run_across_the_family_boundary_is_split_in_ranges() -> None:
    targets = parse_targets("255.255.255.255 ::")
    assert addrs(targets) == ["255.255.255.255", "::"]
    assert [(str(a), str(b)) for a, b in targets.ranges()] == [
        ("255.255.255.255", "255.255.255.255"),
        ("::", "::"),
    ]


def test_equality_and_hash() -> None:
    assert parse_targets("192.0.2.0/31") == parse_targets("192.0.2.0 192.0.2.1")
    assert hash(parse_targets("192.0.2.0/31")) == hash(parse_targets("192.0.2.0-1"))
    assert parse_targets("192.0.2.1 192.0.2.0") != parse_targets("192.0.2.0/31")  # order
    assert parse_targets("192.0.2.1") != "192.0.2.1"


def test_target_value() -> None:
    target = Target(IPv4Address("192.0.2.1"), "a.test")
    assert str(target) == "a.test (192.0.2.1)"
    assert str(Target(IPv4Address("192.0.2.1"))) == "192.0.2.1"
    with pytest.raises(AttributeError):
        target.hostname = "x"  # type: ignore[misc]


# ------------------------------------------------------------------ names


def test_localhost_resolves_live() -> None:
    targets = parse_targets("localhost", family=4)
    assert targets[0] == Target(IPv4Address("127.0.0.1"), "localhost")
    assert targets.hostname("127.0.0.1") == "localhost"


async def test_localhost_resolves_live_async() -> None:
    assert await parse_targets_async("localhost 127.0.0.2", family=4) == parse_targets(
        "localhost 127.0.0.2", family=4
    )


def test_name_first_address_of_each_family(fake_dns: None) -> None:
    targets = parse_targets("a.test")
    assert list(targets) == [
        Target(IPv4Address("192.0.2.10"), "a.test"),
        Target(IPv6Address("2001:db8::10"), "a.test"),
    ]


def test_name_family_and_resolve_all(fake_dns: None) -> None:
    assert addrs(parse_targets("a.test", family=4)) == ["192.0.2.10"]
    assert addrs(parse_targets("a.test", family=6)) == ["2001:db8::10"]
    assert addrs(parse_targets("a.test", resolve_all=True)) == FAKE_DNS["a.test"]
    assert addrs(parse_targets("a.test", family=4, resolve_all=True)) == FAKE_DNS["a.test"][:2]
    assert addrs(parse_targets("A.TEST.", family=socket.AF_INET)) == ["192.0.2.10"]


def test_names_and_literals_collapse(fake_dns: None) -> None:
    targets = parse_targets("192.0.2.1 dup.test c.test,192.0.2.30")
    assert addrs(targets) == ["192.0.2.1", "192.0.2.30"]
    # The address keeps the name it was also given under.
    assert targets[0].hostname == "dup.test"
    assert targets.hostname("192.0.2.30") == "c.test"
    assert targets.hostname("192.0.2.99") is None and targets.hostname("junk") is None


def test_name_with_prefix(fake_dns: None) -> None:
    targets = parse_targets("c.test/30")
    assert addrs(targets) == ["192.0.2.28", "192.0.2.29", "192.0.2.30", "192.0.2.31"]
    assert [t.hostname for t in targets] == [None, None, "c.test", None]


def test_names_in_exclusions(fake_dns: None) -> None:
    targets = parse_targets("192.0.2.8-12 2001:db8::10-12", exclude="a.test")
    # Exclusions drop every address the name has.
    assert addrs(targets) == ["192.0.2.8", "192.0.2.9", "192.0.2.12", "2001:db8::12"]
    excluded_name = parse_targets("c.test 192.0.2.1", exclude="c.test")
    assert addrs(excluded_name) == ["192.0.2.1"]
    assert excluded_name.hostname("192.0.2.30") is None


async def test_async_matches_sync(fake_dns: None) -> None:
    spec = "a.test b.test c.test/31 192.0.2.1-3"
    for kwargs in ({}, {"resolve_all": True}):
        expected = parse_targets(spec, exclude="192.0.2.2", **kwargs)  # type: ignore[arg-type]
        got = await parse_targets_async(spec, exclude="192.0.2.2", **kwargs)  # type: ignore[arg-type]
        assert got == expected
        assert list(got) == list(expected)
    assert await parse_targets_async("a.test b.test", family=6) == parse_targets(
        "a.test b.test", family=6
    )


async def test_async_resolves_concurrently_without_blocking_the_loop() -> None:
    # Each lookup waits until all three run at once AND the event loop has run a
    # task: a resolver that blocks the loop or goes one name at a time deadlocks,
    # and the barrier's timeout turns that into a failure instead of a hang.
    barrier = threading.Barrier(3, timeout=10)
    loop_ran = threading.Event()

    def slow_lookup(host: str, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        barrier.wait()
        if not loop_ran.wait(timeout=10):
            raise socket.gaierror(socket.EAI_AGAIN, "event loop was blocked")
        return fake_getaddrinfo(host, *args, **kwargs)

    async def mark() -> None:
        await asyncio.sleep(0)
        loop_ran.set()

    with mock.patch("socket.getaddrinfo", slow_lookup):
        marker = asyncio.create_task(mark())
        targets = await parse_targets_async("a.test b.test c.test", family=None)
        await marker
    assert addrs(targets) == ["192.0.2.10", "2001:db8::10", "2001:db8::20", "192.0.2.30"]


async def test_async_errors(fake_dns: None) -> None:
    with pytest.raises(TargetSpecError, match=r"'nope.test'.*cannot resolve"):
        await parse_targets_async("c.test nope.test")
    with pytest.raises(TargetSpecError, match=r"has no IPv4 address|cannot resolve"):
        await parse_targets_async("b.test", family=4)
    with pytest.raises(TargetSpecError, match=r"300"):
        await parse_targets_async("300.1.1.1")


# ------------------------------------------------------------------ files


def test_input_file(tmp_path: Any) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("# lab hosts\n192.0.2.1  192.0.2.2 # two\n\n2001:db8::1,192.0.2.3\n")
    assert addrs(parse_targets("192.0.2.9", input_file=path)) == [
        "192.0.2.9", "192.0.2.1", "192.0.2.2", "2001:db8::1", "192.0.2.3",
    ]  # fmt: skip
    assert addrs(parse_targets("", input_file=str(path))) == [
        "192.0.2.1", "192.0.2.2", "2001:db8::1", "192.0.2.3",
    ]  # fmt: skip


def test_input_file_error_names_file_and_line(tmp_path: Any) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("192.0.2.1\n# fine\n192.0.2.300\n")
    with pytest.raises(TargetSpecError) as caught:
        parse_targets([], input_file=path)
    message = str(caught.value)
    assert "'192.0.2.300'" in message and f"{path}:3" in message and "out of range" in message


def test_input_file_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("192.0.2.4\n192.0.2.5\n"))
    assert addrs(parse_targets("", input_file="-")) == ["192.0.2.4", "192.0.2.5"]


def test_exclude_file(tmp_path: Any) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text("192.0.2.0/30 # the first four\n192.0.2.5-6\n")
    assert addrs(parse_targets("192.0.2.0/29", exclude_file=path)) == ["192.0.2.4", "192.0.2.7"]


def test_missing_or_empty_files(tmp_path: Any) -> None:
    with pytest.raises(TargetSpecError, match=r"cannot read target file .*nope"):
        parse_targets("", input_file=tmp_path / "nope")
    with pytest.raises(TargetSpecError, match=r"cannot read exclusion file"):
        parse_targets("192.0.2.1", exclude_file=tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(TargetSpecError, match=r"empty target specification"):
        parse_targets("", input_file=empty)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TargetSpecError, match=r"cannot read target file"):
        parse_targets("", input_file=binary)


# ------------------------------------------------------------------ errors

BAD_SPECS = [
    ("300.1.1.1", "octet 300 is out of range 0-255"),
    ("192.0.2.0/33", "prefix length 33 is out of range 0-32"),
    ("2001:db8::/129", "prefix length 129 is out of range 0-128"),
    ("192.0.2.0/x", "prefix length 'x' is not a number"),
    ("192.0.2.0/", "prefix length '' is not a number"),
    ("a..b", "empty label"),
    ("192.0.2..1", "four dot-separated octets"),
    ("192.0..1", "empty octet"),
    ("1.2.3", "four dot-separated octets"),
    ("1.2.3.4.5", "four dot-separated octets"),
    ("192.0.2.9-192.0.2.1", "range start is after its end"),
    ("2001:db8::9-2001:db8::1", "range start is after its end"),
    ("2001:db8::9-1", "range start is after its end"),
    ("192.0.2.9-1", "octet range 9-1 is reversed"),
    ("192.0.2.1-2-3", "bad octet"),
    ("192.0.2.1,,3", "empty item"),
    ("192.0.2.**", "bad octet"),
    ("::zz", "not a valid IPv6 address"),
    ("fe80::1%eth0", "scoped IPv6"),
    ("2001:db8::1-zz", "not a valid IPv6 address"),
    ("-host", "not an address, range, CIDR block or host name"),
    ("host-", "not an address, range, CIDR block or host name"),
    ("bad!name", "not an address, range, CIDR block or host name"),
    ("ünïcode.test", "not an address, range, CIDR block or host name"),
    ("0x7f.1", "not a valid IPv4 address or host name"),
    ("a." + "b" * 64, "longer than 63 characters"),
    (".".join(["abcdefgh"] * 30), "longer than 253 characters"),
    ("host/200", "prefix length 200 is out of range 0-128"),
    ("0-255.0-255.0-255.1", "separate ranges"),
]


@pytest.mark.parametrize(("spec", "fragment"), BAD_SPECS)
def test_bad_specs_name_the_part(spec: str, fragment: str) -> None:
    with pytest.raises(TargetSpecError) as caught:
        parse_targets(f"192.0.2.1 {spec}")
    message = str(caught.value)
    assert f"bad target {spec!r}" in message  # the part, not the whole spec
    assert fragment in message


@pytest.mark.parametrize(("spec", "fragment"), BAD_SPECS[:6])
def test_bad_exclusions_name_the_part(spec: str, fragment: str) -> None:
    with pytest.raises(TargetSpecError, match=f"bad exclusion {spec!r}.*{fragment}"):
        parse_targets("192.0.2.1", exclude=spec)


@pytest.mark.parametrize("spec", ["", "   ", ",", [], ["", " "]])
def test_empty_spec(spec: Any) -> None:
    with pytest.raises(TargetSpecError, match=r"empty target specification"):
        parse_targets(spec)


def test_unresolvable_name(fake_dns: None) -> None:
    with pytest.raises(TargetSpecError, match=r"bad target 'nope.test': cannot resolve host name"):
        parse_targets("c.test nope.test")
    with pytest.raises(TargetSpecError, match=r"bad exclusion 'nope.test': cannot resolve"):
        parse_targets("c.test", exclude="nope.test")
    with pytest.raises(TargetSpecError, match=r"'b.test'.*IPv4"):
        parse_targets("b.test", family=4)
    with pytest.raises(TargetSpecError, match=r"'c.test/33'.*out of range 0-32 for IPv4"):
        parse_targets("c.test/33")


def test_resolver_odd_failures_become_target_errors() -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise UnicodeError("label too long")

    with mock.patch("socket.getaddrinfo", broken), pytest.raises(TargetSpecError, match=r"label"):
        parse_targets("x.test")

    def garbage(*args: Any, **kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("not-an-ip", 0)), (0, 0, 0, "", ())]

    with mock.patch("socket.getaddrinfo", garbage), pytest.raises(TargetSpecError, match=r"no "):
        parse_targets("x.test")


def test_family_mismatch_for_literals() -> None:
    with pytest.raises(TargetSpecError, match=r"bad target '::1': IPv6 target but family=4"):
        parse_targets("::1", family=4)
    with pytest.raises(TargetSpecError, match=r"bad target '192.0.2.0/24': IPv4 target"):
        parse_targets("192.0.2.0/24", family=6)
    # Exclusions of the other family are simply irrelevant.
    assert addrs(parse_targets("192.0.2.1", exclude="::1", family=4)) == ["192.0.2.1"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"spec": 42}, "string or an iterable"),
        ({"spec": b"192.0.2.1"}, "string or an iterable"),
        ({"spec": [42]}, "items must be strings"),
        ({"spec": "192.0.2.1", "exclude": 42}, "string or an iterable"),
        ({"spec": "192.0.2.1", "family": 5}, "family must be 4, 6 or None"),
    ],
)
def test_bad_argument_types(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TargetSpecError, match=fragment):
        parse_targets(**kwargs)


def test_error_is_a_value_error_too() -> None:
    with pytest.raises(ValueError):
        parse_targets("300.1.1.1")


# ------------------------------------------------------------------ properties


def never_resolves(*args: Any, **kwargs: Any) -> Any:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet="0123456789.,-*/: abcdef\t", max_size=40),
    )
)
def test_property_any_text_parses_or_raises_target_error(text: str) -> None:
    with mock.patch("socket.getaddrinfo", never_resolves):
        try:
            targets = parse_targets(text)
        except TargetSpecError:
            return
    assert isinstance(targets, TargetSet)
    assert targets.size >= 1
    if targets.size < 10_000:
        assert len(list(targets)) == targets.size


# Parts with a known address set inside 192.0.2.0/24 and 2001:db8::/120, so a
# plain-set model can say what the TargetSet must hold and in which order.
v4_octet = st.integers(min_value=0, max_value=255)
v6_low = st.integers(min_value=0, max_value=255)


@st.composite
def parts(draw: st.DrawFn) -> tuple[str, list[int]]:
    kind = draw(st.sampled_from(["v4", "v4range", "v4full", "v4cidr", "octets", "v6", "v6range",
                                 "v6cidr"]))  # fmt: skip
    a, b = sorted((draw(v4_octet), draw(v4_octet)))
    v4 = int(IPv4Address("192.0.2.0"))
    v6 = int(IPv6Address("2001:db8::")) + 2**32
    if kind == "v4":
        return f"192.0.2.{a}", [v4 + a]
    if kind == "v4range":
        return f"192.0.2.{a}-{b}", [v4 + i for i in range(a, b + 1)]
    if kind == "v4full":
        return f"192.0.2.{a}-192.0.2.{b}", [v4 + i for i in range(a, b + 1)]
    if kind == "v4cidr":
        prefix = draw(st.integers(min_value=24, max_value=32))
        net = ip_network(f"192.0.2.{a}/{prefix}", strict=False)
        return f"192.0.2.{a}/{prefix}", [int(x) for x in net]
    if kind == "octets":
        values = draw(st.lists(v4_octet, min_size=1, max_size=4))
        return "192.0.2." + ",".join(map(str, values)), sorted({v4 + x for x in values})
    if kind == "v6":
        return f"2001:db8::{a:x}", [v6 + a]
    if kind == "v6range":
        return f"2001:db8::{a:x}-{b:x}", [v6 + i for i in range(a, b + 1)]
    prefix = draw(st.integers(min_value=120, max_value=128))
    net = ip_network(f"2001:db8::{a:x}/{prefix}", strict=False)
    return f"2001:db8::{a:x}/{prefix}", [int(x) + 2**32 for x in net]


def key_to_str(key: int) -> str:
    return str(IPv4Address(key)) if key < 2**32 else str(IPv6Address(key - 2**32))


@settings(max_examples=200, deadline=None)
@given(
    included=st.lists(parts(), min_size=1, max_size=6),
    excluded=st.lists(parts(), max_size=3),
    separator=st.sampled_from([" ", ",", "\n", " , "]),
)
def test_property_matches_a_set_model(
    included: list[tuple[str, list[int]]],
    excluded: list[tuple[str, list[int]]],
    separator: str,
) -> None:
    gone = {key for _, keys in excluded for key in keys}
    expected: list[int] = []
    seen: set[int] = set()
    for _, keys in included:
        for key in keys:  # each part ascending, first appearance wins
            if key not in seen and key not in gone:
                seen.add(key)
                expected.append(key)
    spec = separator.join(text for text, _ in included)
    if separator.strip() == "," and any("," in text for text, _ in included):
        spec = " ".join(text for text, _ in included)  # commas would join octet lists
    targets = parse_targets(spec, exclude=[text for text, _ in excluded])
    want = [key_to_str(k) for k in expected]
    assert addrs(targets) == want
    assert targets.size == len(want)
    assert [str(targets[i].address) for i in range(targets.size)] == want
    for key in list(gone)[:20]:
        assert key_to_str(key) not in targets
    for text in want[:20]:
        assert text in targets


def test_error_family_root() -> None:
    assert issubclass(TargetSpecError, PortlibError)
