"""The pure outcome -> (state, reason) tables of the connect engine."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portlib.model import PortState, Reason
from portlib.scanning.connect.verdicts import (
    CLOSED,
    ERRNO_VERDICTS,
    OPEN,
    ORIGIN_ICMP,
    ORIGIN_ICMP6,
    ORIGIN_LOCAL,
    RESOURCE_ERRNOS,
    SELF_CONNECT,
    SILENT,
    IcmpError,
    Verdict,
    classify_errno,
    classify_icmp,
    parse_extended_err,
)

F = PortState.FILTERED


@pytest.mark.parametrize(
    ("code", "state", "reason"),
    [
        (0, PortState.OPEN, Reason.SYN_ACK),
        (errno.EISCONN, PortState.OPEN, Reason.SYN_ACK),
        (errno.ECONNREFUSED, PortState.CLOSED, Reason.CONN_REFUSED),
        (errno.ECONNRESET, PortState.CLOSED, Reason.RESET),
        (errno.ETIMEDOUT, F, Reason.NO_RESPONSE),
        (errno.EHOSTUNREACH, F, Reason.HOST_UNREACH),
        (errno.EHOSTDOWN, F, Reason.HOST_UNREACH),
        (errno.ENETUNREACH, F, Reason.NET_UNREACH),
        (errno.ENETDOWN, F, Reason.NET_UNREACH),
        (errno.EACCES, F, Reason.ADMIN_PROHIBITED),
        (errno.EPERM, F, Reason.ADMIN_PROHIBITED),
        (errno.ENOPROTOOPT, F, Reason.PROTO_UNREACH),
    ],
)
def test_errno_table(code: int, state: PortState, reason: Reason) -> None:
    assert classify_errno(code) == Verdict(state, reason)


@pytest.mark.parametrize("code", sorted(RESOURCE_ERRNOS))
def test_resource_errors_are_not_verdicts(code: int) -> None:
    assert classify_errno(code) is None
    assert code not in ERRNO_VERDICTS


def test_unknown_errno_is_not_guessed() -> None:
    with pytest.raises(KeyError):
        classify_errno(errno.EINVAL)


def test_named_verdicts() -> None:
    assert Verdict(PortState.OPEN, Reason.SYN_ACK) == OPEN
    assert Verdict(PortState.FILTERED, Reason.NO_RESPONSE) == SILENT
    assert SELF_CONNECT == CLOSED == Verdict(PortState.CLOSED, Reason.CONN_REFUSED)


@pytest.mark.parametrize(
    ("origin", "icmp_type", "code", "expected"),
    [
        (ORIGIN_ICMP, 3, 0, Verdict(F, Reason.NET_UNREACH)),
        (ORIGIN_ICMP, 3, 1, Verdict(F, Reason.HOST_UNREACH)),
        (ORIGIN_ICMP, 3, 2, Verdict(F, Reason.PROTO_UNREACH)),
        (ORIGIN_ICMP, 3, 3, CLOSED),
        (ORIGIN_ICMP, 3, 9, Verdict(F, Reason.NET_PROHIBITED)),
        (ORIGIN_ICMP, 3, 10, Verdict(F, Reason.HOST_PROHIBITED)),
        (ORIGIN_ICMP, 3, 13, Verdict(F, Reason.ADMIN_PROHIBITED)),
        (ORIGIN_ICMP, 11, 0, Verdict(F, Reason.TIME_EXCEEDED)),
        (ORIGIN_ICMP, 3, 4, Verdict(F, Reason.DEST_UNREACH)),  # a code nmap does not name
        (ORIGIN_ICMP, 0, 0, None),
        (ORIGIN_ICMP6, 1, 0, Verdict(F, Reason.NO_ROUTE)),
        (ORIGIN_ICMP6, 1, 1, Verdict(F, Reason.ADMIN_PROHIBITED)),
        (ORIGIN_ICMP6, 1, 3, Verdict(F, Reason.HOST_UNREACH)),
        (ORIGIN_ICMP6, 1, 4, CLOSED),
        (ORIGIN_ICMP6, 1, 5, Verdict(F, Reason.ADMIN_PROHIBITED)),
        (ORIGIN_ICMP6, 3, 0, Verdict(F, Reason.TIME_EXCEEDED)),
        (ORIGIN_ICMP6, 3, 13, Verdict(F, Reason.TIME_EXCEEDED)),
        (ORIGIN_ICMP6, 2, 0, None),  # packet too big
        (ORIGIN_LOCAL, 3, 13, None),  # not from an ICMP message
    ],
)
def test_icmp_table(origin: int, icmp_type: int, code: int, expected: Verdict | None) -> None:
    assert classify_icmp(IcmpError(errno.EHOSTUNREACH, origin, icmp_type, code)) == expected


def test_parse_extended_err() -> None:
    # struct sock_extended_err followed by the offender's sockaddr_in
    raw = struct.pack("=IBBBxII", errno.EHOSTUNREACH, 2, 3, 13, 0, 0) + bytes(16)
    assert parse_extended_err(raw) == IcmpError(errno.EHOSTUNREACH, 2, 3, 13)
    assert parse_extended_err(raw[:10]) is None


@given(st.binary(max_size=64))
def test_parse_extended_err_never_raises(data: bytes) -> None:
    err = parse_extended_err(data)
    if err is not None:
        verdict = classify_icmp(err)
        assert verdict is None or isinstance(verdict, Verdict)
