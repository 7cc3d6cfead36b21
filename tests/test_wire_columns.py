"""Pure: probes built by columns (``BoundProbe.patch_many``) are the probes ``patch`` builds.

The send workers build a batch of probes with ``patch_many``; each probe of it
must be byte for byte what ``patch`` gives (checksums included), for every
kind, both families, and the edge values (port 0xFFFF, cookies whose sums
wrap, IPv4 marks and UDP checksums that would be zero).
"""

from __future__ import annotations

from array import array
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portlib.scanning.raw import templates
from portlib.scanning.raw.wire import BoundProbe, Probe, ProbeTemplate

ME4, TARGET4 = "192.0.2.1", "192.0.2.10"
ME6, TARGET6 = "2001:db8::1", "2001:db8::10"
SPORT = 45678


def bound(kind: Probe, me: str, target: str) -> BoundProbe:
    packet = templates.build_template(kind, ip_address(me), SPORT)
    return ProbeTemplate(packet, kind).bind(ip_address(target).packed)


BOUND = {
    (kind, family): bound(kind, *pair)
    for kind in Probe
    for family, pair in ((4, (ME4, TARGET4)), (6, (ME6, TARGET6)))
}


def one_by_one(probe: BoundProbe, dports: list[int], cookies: list[int]) -> bytes:
    return b"".join(bytes(probe.patch(d, c)) for d, c in zip(dports, cookies, strict=True))


EDGE_COOKIES = [0, 1, 0xFFFF, 0x10000, 0xFFFF0000, 0xFFFFFFFF, 0x0001FFFF]

probes_strategy = st.lists(
    st.tuples(st.integers(1, 65535), st.integers(0, 0xFFFFFFFF) | st.sampled_from(EDGE_COOKIES)),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("key", list(BOUND), ids=lambda k: f"{k[0].name}-v{k[1]}")
@given(pairs=probes_strategy)
def test_patch_many_equals_patch_for_each_probe(key: tuple[Probe, int], pairs: list) -> None:
    probe = BOUND[key]
    dports = [d for d, _ in pairs]
    cookies = [c for _, c in pairs]
    many = probe.patch_many(array("H", dports), array("I", cookies))
    assert bytes(many) == one_by_one(probe, dports, cookies)


@pytest.mark.parametrize("key", list(BOUND), ids=lambda k: f"{k[0].name}-v{k[1]}")
def test_patch_many_at_every_port_of_a_scan(key: tuple[Probe, int]) -> None:
    """All 65535 ports with cookies that sweep every low half: each zero case is hit."""
    probe = BOUND[key]
    dports = list(range(1, 65536))
    cookies = [(port * 0x9E3779B1) & 0xFFFF0000 | (port - 1) for port in dports]
    many = probe.patch_many(array("H", dports), array("I", cookies))
    assert bytes(many) == one_by_one(probe, dports, cookies)


def test_patch_many_leaves_patch_working() -> None:
    probe = BOUND[(Probe.SYN, 4)]
    before = bytes(probe.patch(80, 0x12345678))
    probe.patch_many(array("H", [1, 2]), array("I", [3, 4]))
    assert bytes(probe.patch(80, 0x12345678)) == before
