"""Pure classification of probe outcomes into nmap's (state, reason) words.

A TCP connect probe ends in one of: the handshake completed, an errno from the
kernel (``connect``/``SO_ERROR``), an ICMP error read from the socket's error
queue (``IP_RECVERR``), or silence until the timeout after every retry. These
tables say what each means. Local resource errors (no file descriptors, no
buffers, no ephemeral port) are not verdicts about the target at all: the
engine must retry that probe later with less concurrency.

Linux turns ICMP errors into errnos with ``icmp_err_convert`` (IPv4) and
``icmpv6_err_convert`` (IPv6): an IPv4 admin-prohibited (type 3 code 13) arrives
as ``EHOSTUNREACH``, like a plain host-unreachable, and IPv6's as ``EACCES``. So
the engine also asks for the ICMP message itself (``IP_RECVERR``) and
:func:`classify_icmp` names it exactly.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from portlib.model import PortState, Reason
from portlib.scanning.icmp import icmp_reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one probe says about a port."""

    state: PortState
    reason: Reason


OPEN = Verdict(PortState.OPEN, Reason.SYN_ACK)
CLOSED = Verdict(PortState.CLOSED, Reason.CONN_REFUSED)
SILENT = Verdict(PortState.FILTERED, Reason.NO_RESPONSE)
# A socket connected to itself (loopback, port in the ephemeral range): nothing
# listens there, and nmap, which never sees this, would report the refusal.
SELF_CONNECT = CLOSED


def _filtered(reason: Reason) -> Verdict:
    return Verdict(PortState.FILTERED, reason)


# errno from connect() / SO_ERROR -> verdict.
ERRNO_VERDICTS: dict[int, Verdict] = {
    0: OPEN,
    errno.EISCONN: OPEN,  # asking again after the handshake completed
    errno.ECONNREFUSED: CLOSED,  # RST (or ICMP port-unreachable) to our SYN
    errno.ECONNRESET: Verdict(PortState.CLOSED, Reason.RESET),
    errno.ECONNABORTED: Verdict(PortState.CLOSED, Reason.RESET),
    errno.ETIMEDOUT: SILENT,  # the kernel's own SYN retries ran out
    errno.EHOSTUNREACH: _filtered(Reason.HOST_UNREACH),
    errno.EHOSTDOWN: _filtered(Reason.HOST_UNREACH),
    errno.ENONET: _filtered(Reason.HOST_UNREACH),
    errno.ENETUNREACH: _filtered(Reason.NET_UNREACH),
    errno.ENETDOWN: _filtered(Reason.NET_UNREACH),
    errno.ENETRESET: _filtered(Reason.NET_UNREACH),
    errno.ENOPROTOOPT: _filtered(Reason.PROTO_UNREACH),  # ICMP protocol unreachable
    # IPv6 admin-prohibited / policy failure, or a local firewall rule.
    errno.EACCES: _filtered(Reason.ADMIN_PROHIBITED),
    errno.EPERM: _filtered(Reason.ADMIN_PROHIBITED),
}

# errnos that say "this machine is out of something", not "the port is ...".
RESOURCE_ERRNOS: frozenset[int] = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EADDRNOTAVAIL,  # no free ephemeral port for this destination
        errno.EADDRINUSE,
        errno.EAGAIN,  # connect: no ephemeral port (unix semantics) / backlog full
    }
)

# Still waiting: asking again says nothing yet.
PENDING_ERRNOS: frozenset[int] = frozenset({errno.EINPROGRESS, errno.EALREADY})


def classify_errno(code: int) -> Verdict | None:
    """The verdict for a connect errno; None for resource errors (retry, not a verdict).

    An errno in neither table is a local problem the engine cannot decide on;
    it raises ``KeyError`` so the engine can report it instead of guessing.
    """
    if code in RESOURCE_ERRNOS:
        return None
    return ERRNO_VERDICTS[code]


# Error-queue origins (linux/errqueue.h, SO_EE_ORIGIN_*).
ORIGIN_LOCAL = 1
ORIGIN_ICMP = 2
ORIGIN_ICMP6 = 3
_ORIGIN_VERSION = {ORIGIN_ICMP: 4, ORIGIN_ICMP6: 6}


@dataclass(frozen=True, slots=True)
class IcmpError:
    """One entry of a socket's error queue (``struct sock_extended_err``)."""

    errno: int
    origin: int
    type: int
    code: int


_EXTENDED_ERR = struct.Struct("=IBBBxII")


def parse_extended_err(data: bytes) -> IcmpError | None:
    """Decode the ``IP_RECVERR``/``IPV6_RECVERR`` control message; None if too short."""
    if len(data) < _EXTENDED_ERR.size:
        return None
    code_errno, origin, icmp_type, icmp_code, _info, _data = _EXTENDED_ERR.unpack_from(data)
    return IcmpError(code_errno, origin, icmp_type, icmp_code)


def classify_icmp(err: IcmpError) -> Verdict | None:
    """The verdict an ICMP error gives a TCP connect probe; None if it names none.

    The reason comes from the one ICMP table (``portlib.scanning.icmp``). A
    port-unreachable is what the kernel reports as ``ECONNREFUSED``: for a
    connect probe it is closed/conn-refused, as nmap's ``-sT`` calls it.
    """
    version = _ORIGIN_VERSION.get(err.origin)
    if version is None:
        return None
    reason = icmp_reason(version, err.type, err.code)
    if reason is None:
        return None
    if reason is Reason.PORT_UNREACH:
        return CLOSED
    return _filtered(reason)
