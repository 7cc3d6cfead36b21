"""One ICMP table for every engine: the same ICMP error gets the same reason under
-sT (the connect engine's error-queue classifier), -sS and -sU (the raw engine's
reply classifier), in nmap's words (portreasons: icmp_to_reason)."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6ParamProblem, ICMPv6TimeExceeded, IPv6

from portlib.model import PortState, Reason
from portlib.scanning.connect.verdicts import (
    CLOSED,
    ORIGIN_ICMP,
    ORIGIN_ICMP6,
    IcmpError,
    classify_icmp,
)
from portlib.scanning.icmp import icmp_reason
from portlib.scanning.raw.replies import Classifier
from portlib.scanning.raw.wire import Probe
from tests.test_wire import COOKIE, ME4, ME6, SPORT, TARGET4, TARGET6, probe

# nmap's words for every destination-unreachable code; anything unnamed is dest-unreach.
NMAP_V4 = {
    0: Reason.NET_UNREACH,
    1: Reason.HOST_UNREACH,
    2: Reason.PROTO_UNREACH,
    3: Reason.PORT_UNREACH,
    9: Reason.NET_PROHIBITED,
    10: Reason.HOST_PROHIBITED,
    13: Reason.ADMIN_PROHIBITED,
}
NMAP_V6 = {
    0: Reason.NO_ROUTE,
    1: Reason.ADMIN_PROHIBITED,
    2: Reason.BEYOND_SCOPE,
    3: Reason.HOST_UNREACH,
    4: Reason.PORT_UNREACH,
    5: Reason.ADMIN_PROHIBITED,
    6: Reason.REJECT_ROUTE,
}


def raw_reason(kind: Probe, version: int, layer: object) -> Reason | None:
    me, target = (ME4, TARGET4) if version == 4 else (ME6, TARGET6)
    quoted = probe(kind, me, target, 25)
    ip = IP(src=target, dst=me) if version == 4 else IPv6(src=target, dst=me)
    wire = bytes(ip / layer / (quoted[:28] if version == 4 else quoted))  # type: ignore[operator]
    event = Classifier(kind, SPORT, COOKIE).classify(wire)
    return None if event is None else event.reason


def connect_reason(version: int, icmp_type: int, code: int) -> Reason | None:
    origin = ORIGIN_ICMP if version == 4 else ORIGIN_ICMP6
    verdict = classify_icmp(IcmpError(errno.EHOSTUNREACH, origin, icmp_type, code))
    if verdict == CLOSED:
        return Reason.PORT_UNREACH  # nmap's -sT says conn-refused, as the kernel does
    return None if verdict is None else verdict.reason


@pytest.mark.parametrize("code", range(16))
def test_every_icmp4_unreachable_code_has_one_reason(code: int) -> None:
    expected = NMAP_V4.get(code, Reason.DEST_UNREACH)
    assert icmp_reason(4, 3, code) is expected
    assert raw_reason(Probe.SYN, 4, ICMP(type=3, code=code)) is expected
    assert raw_reason(Probe.UDP, 4, ICMP(type=3, code=code)) is expected
    assert connect_reason(4, 3, code) is expected


@pytest.mark.parametrize("code", range(8))
def test_every_icmp6_unreachable_code_has_one_reason(code: int) -> None:
    expected = NMAP_V6.get(code, Reason.DEST_UNREACH)
    assert icmp_reason(6, 1, code) is expected
    assert raw_reason(Probe.SYN, 6, ICMPv6DestUnreach(code=code)) is expected
    assert raw_reason(Probe.UDP, 6, ICMPv6DestUnreach(code=code)) is expected
    assert connect_reason(6, 1, code) is expected


def test_other_error_types_agree_too() -> None:
    assert raw_reason(Probe.SYN, 4, ICMP(type=11, code=0)) is Reason.TIME_EXCEEDED
    assert connect_reason(4, 11, 0) is Reason.TIME_EXCEEDED
    assert raw_reason(Probe.SYN, 6, ICMPv6TimeExceeded()) is Reason.TIME_EXCEEDED
    assert connect_reason(6, 3, 0) is Reason.TIME_EXCEEDED
    assert raw_reason(Probe.UDP, 6, ICMPv6ParamProblem(code=1)) is Reason.PARAM_PROBLEM
    assert connect_reason(6, 4, 1) is Reason.PARAM_PROBLEM
    # Not errors about a probe: an echo reply, an ICMPv6 packet-too-big.
    assert icmp_reason(4, 0, 0) is None and connect_reason(4, 0, 0) is None
    assert icmp_reason(6, 2, 0) is None and connect_reason(6, 2, 0) is None


def test_port_unreachable_states_stay_each_probe_kinds_own() -> None:
    """The reason is shared; the state is the probe kind's: UDP closed, SYN filtered."""
    udp = Classifier(Probe.UDP, SPORT, COOKIE).classify(
        bytes(
            IP(src=TARGET4, dst=ME4)
            / ICMP(type=3, code=3)
            / probe(Probe.UDP, ME4, TARGET4, 25)[:28]
        )
    )
    syn = Classifier(Probe.SYN, SPORT, COOKIE).classify(
        bytes(
            IP(src=TARGET4, dst=ME4)
            / ICMP(type=3, code=3)
            / probe(Probe.SYN, ME4, TARGET4, 25)[:28]
        )
    )
    assert udp is not None and udp.state is PortState.CLOSED
    assert syn is not None and syn.state is PortState.FILTERED
